"""Local HTTP servers speaking the documented APIs of the online CAD providers, for
contract tests. They check what the provider's documentation requires of a client
(bearer authentication, routes, JSON bodies) and answer with the documented shapes.

- Zoo: ``POST /ai/text-to-cad/{output_format}`` → a ``text_to_cad`` object, ``queued``;
  ``GET /user/text-to-cad/{id}`` → ``in_progress`` once, then ``completed`` with the STEP
  base64-encoded under ``outputs`` and KCL under ``code`` (``failed`` with ``error`` for
  prompts containing "impossible"); ``POST /file/conversion/step/stl`` → a completed
  ``FileConversion`` with the STL under ``outputs``.
- Tripo (API v3): ``POST /v3/generation/text-to-model`` (``prompt`` required) or
  ``POST /v3/generation/image-to-model`` (``input``: an image URL, a ``file_token`` or a
  task id, required) → ``{code: 0, data: {task_id}}``;
  ``GET /v3/tasks/{id}`` → ``running`` once, then ``success`` with ``output.model_url``;
  the URL serves a GLB. Envelopes are ``{code, data}``; errors ``{code != 0, message}``.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).parents[1] / "data" / "contract"
STEP = (DATA / "cube20.step").read_bytes()
STL = (DATA / "cube20.stl").read_bytes()
GLB = (DATA / "cube20.glb").read_bytes()
NOW = "2026-11-27T12:00:00Z"


@dataclass
class Recorded:
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


class _Handler(BaseHTTPRequestHandler):
    token: str
    recorded: Recorded

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.token}"

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class _ZooHandler(_Handler):
    def _text_to_cad(self, job_id: str, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "text_to_cad",
            "id": job_id,
            "conversation_id": str(uuid.uuid4()),
            "created_at": NOW,
            "updated_at": NOW,
            "user_id": str(uuid.UUID(int=7)),
            "model": "cad",
            "model_version": "contract-1",
            "output_format": "step",
            "prompt": self.recorded.prompts[job_id],
            "status": status,
            **extra,
        }

    def do_POST(self) -> None:
        if not self._authorised():
            self._send(401, {"error_code": "unauthorized", "message": "bad token"})
            return
        raw = self._body()
        if self.path == "/ai/text-to-cad/step":
            body = json.loads(raw or b"{}")
            self.recorded.requests.append(("POST", self.path, body))
            if not isinstance(body.get("prompt"), str) or not body["prompt"]:
                self._send(400, {"error_code": "bad_request", "message": "prompt is required"})
                return
            job_id = str(uuid.uuid4())
            self.recorded.prompts[job_id] = body["prompt"]
            self._send(201, self._text_to_cad(job_id, "queued"))
        elif self.path == "/file/conversion/step/stl":
            self.recorded.requests.append(("POST", self.path, {"bytes": len(raw)}))
            if raw != STEP:
                self._send(400, {"error_code": "bad_request", "message": "not our STEP"})
                return
            self._send(
                201,
                {
                    "id": str(uuid.uuid4()),
                    "created_at": NOW,
                    "updated_at": NOW,
                    "user_id": str(uuid.UUID(int=7)),
                    "src_format": "step",
                    "output_format": "stl",
                    "status": "completed",
                    "outputs": {"output.stl": _b64(STL)},
                },
            )
        else:
            self._send(404, {"error_code": "not_found", "message": self.path})

    def do_GET(self) -> None:
        if not self._authorised():
            self._send(401, {"error_code": "unauthorized", "message": "bad token"})
            return
        prefix = "/user/text-to-cad/"
        job_id = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
        if job_id not in self.recorded.prompts:
            self._send(404, {"error_code": "not_found", "message": self.path})
            return
        self.recorded.requests.append(("GET", self.path, None))
        polls = self.recorded.polls[job_id] = self.recorded.polls.get(job_id, 0) + 1
        if polls == 1:
            self._send(200, self._text_to_cad(job_id, "in_progress"))
        elif "impossible" in self.recorded.prompts[job_id]:
            self._send(200, self._text_to_cad(job_id, "failed", error="could not make that"))
        else:
            self._send(
                200,
                self._text_to_cad(
                    job_id,
                    "completed",
                    code="const cube = startSketchOn(XY) |> square(20) |> extrude(20)",
                    kcl_version="1.0",
                    outputs={"source.step": _b64(STEP)},
                ),
            )


class _TripoHandler(_Handler):
    def do_POST(self) -> None:
        if not self._authorised():
            self._send(401, {"code": 1002, "message": "Authentication failed"})
            return
        body = json.loads(self._body() or b"{}")
        self.recorded.requests.append(("POST", self.path, body))
        if self.path not in ("/v3/generation/text-to-model", "/v3/generation/image-to-model"):
            self._send(404, {"code": 2000, "message": "not found"})
            return
        if self.path.endswith("text-to-model") and not body.get("prompt"):
            self._send(400, {"code": 2002, "message": "prompt is required"})
            return
        image = body.get("input")
        if self.path.endswith("image-to-model") and not (isinstance(image, str) and image):
            self._send(400, {"code": 2002, "message": "input is required"})
            return
        task_id = f"task-{uuid.uuid4().hex[:8]}"
        self.recorded.prompts[task_id] = str(body.get("prompt", body.get("input", "")))
        self._send(200, {"code": 0, "data": {"task_id": task_id}})

    def do_GET(self) -> None:
        if self.path.startswith("/files/"):
            self.recorded.requests.append(("GET", self.path, None))
            self._send(200, GLB, "model/gltf-binary")
            return
        if not self._authorised():
            self._send(401, {"code": 1002, "message": "Authentication failed"})
            return
        task_id = self.path.removeprefix("/v3/tasks/").split("?")[0]
        if task_id not in self.recorded.prompts:
            self._send(404, {"code": 2001, "message": "task not found"})
            return
        self.recorded.requests.append(("GET", self.path, None))
        polls = self.recorded.polls[task_id] = self.recorded.polls.get(task_id, 0) + 1
        kind = "image_to_model" if self.recorded.prompts[task_id].startswith("http") else None
        base: dict[str, Any] = {
            "task_id": task_id,
            "type": kind or "text_to_model",
            "input": {},
            "create_time": 1_790_000_000,
        }
        if polls == 1:
            data = {**base, "status": "running", "progress": 40, "output": {}}
        else:
            port = self.server.server_address[1]
            url = f"http://127.0.0.1:{port}/files/{task_id}.glb"
            data = {**base, "status": "success", "progress": 100, "output": {"model_url": url}}
        self._send(200, {"code": 0, "data": data})


@dataclass
class ContractServer:
    url: str
    recorded: Recorded


@contextmanager
def _serve(handler: type[_Handler], token: str) -> Iterator[ContractServer]:
    recorded = Recorded()
    bound = type("Bound", (handler,), {"token": token, "recorded": recorded})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ContractServer(f"http://127.0.0.1:{server.server_address[1]}", recorded)
    finally:
        server.shutdown()
        server.server_close()


def zoo_server(token: str) -> Any:
    return _serve(_ZooHandler, token)


def tripo_server(token: str) -> Any:
    return _serve(_TripoHandler, token)
