"""The CLI's client of a running KittyLab server (``KITTYLAB_URL``, ``KITTYLAB_TOKEN``,
``KITTYLAB_CA_FILE`` for an ``https://`` server signed by the lab CA).

Problem details from the server become ``ApiProblem`` with the server's own message and
field; an unreachable server is ``ServerUnreachable``. Neither carries the token.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from kittylab.adapters.tls import client_context, lab_tls
from kittylab.config import default_data_dir
from kittylab.domain.errors import InfrastructureError, KittyLabError

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 10.0


def server_trust() -> ssl.SSLContext:
    """How the CLI verifies an ``https://`` server: the system's CAs, plus the lab CA from
    ``KITTYLAB_CA_FILE`` or, on the server host, ``kittylab tls init``'s in the data dir."""
    named = os.environ.get("KITTYLAB_CA_FILE")
    if named:
        return client_context(Path(named))
    data_dir = os.environ.get("KITTYLAB_DATA_DIR")
    lab = lab_tls(Path(data_dir) if data_dir else default_data_dir())
    return client_context(lab.ca_cert if lab.has_ca else None)


class ApiProblem(KittyLabError):
    def __init__(self, status: int, detail: str, field: str | None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{detail}{where} [HTTP {status}]")
        self.status = status
        self.field = field


class ServerUnreachable(InfrastructureError):
    pass


class NoToken(KittyLabError):
    pass


class ApiClient:
    def __init__(
        self, url: str | None = None, token: str | None = None, *, http: httpx.Client | None = None
    ) -> None:
        """``http``: an already-built client to send through (tests pass FastAPI's
        ``TestClient``, the whole CLI then runs against the app with no server); the
        token is added to its headers."""
        self.url = (url or os.environ.get("KITTYLAB_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("KITTYLAB_TOKEN")
        if not token:
            raise NoToken(
                "no API token: set KITTYLAB_TOKEN (get one with `kittylab users token NAME`)"
            )
        self._http = http or httpx.Client(
            base_url=self.url, timeout=TIMEOUT_SECONDS, verify=server_trust()
        )
        self._http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, json=body)

    def put_file(self, path: str, file: Path) -> Any:
        """Stream ``file`` as the raw body of a PUT (uploads are not loaded into memory)."""
        with file.open("rb") as body:
            return self._call(
                "PUT",
                path,
                content=iter(lambda: body.read(1 << 16), b""),
                headers={
                    "content-type": "application/octet-stream",
                    "content-length": str(file.stat().st_size),
                },
                timeout=600,
            )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"cannot reach KittyLab at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                problem = response.json()
                detail, field = (
                    str(problem.get("detail") or problem.get("title")),
                    problem.get("field"),
                )
            except ValueError:
                detail, field = response.text[:200] or response.reason_phrase, None
            raise ApiProblem(response.status_code, detail, field)
        return response.json() if response.content else None

    def all_items(self, path: str, **params: Any) -> list[Any]:
        """Every item of a paginated list."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.get(path, limit=100, cursor=cursor, **params)
            items.extend(page["items"])
            cursor = page.get("nextCursor")
            if not cursor:
                return items
