"""Tripo text- or image-to-3D through the official ``tripo3d`` SDK (API v3).

``text_to_model`` (``POST /v3/generation/text-to-model``) — or ``image_to_model``
(``POST /v3/generation/image-to-model``) when the request's references include an image URL
(``https://…``; Tripo fetches it) — starts a task; ``wait_for_task`` polls
``GET /v3/tasks/{id}`` until it ends; the signed model URL (GLB) is downloaded and
converted to STL with trimesh. Mesh only: no STEP. The SDK is asynchronous; the provider
runs it on its own event loop under an overall deadline. SDK errors become
``ProviderUnavailable`` (unreachable, refused key) or ``CadBuildFailed``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import trimesh
from tripo3d import TripoClient
from tripo3d.exceptions import TripoAPIError, TripoError, TripoRequestError
from tripo3d.models import TaskStatus

from kittylab.adapters.cad.worker import CadBuildFailed
from kittylab.cad.errors import ProviderUnavailable
from kittylab.cad.ports import ProviderOutput, ProviderRequest
from kittylab.domain.enums import ArtifactType, CADProvider

MODEL_VERSION = "v2.5-20250123"
AUTHENTICATION_FAILED = 1002
"""Tripo's business code for a refused key: the SDK raises it as ``TripoAPIError`` (from
the error body) rather than as an HTTP 401."""


class TripoProvider:
    name = CADProvider.TRIPO
    offline = False

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str = "https://openapi.tripo3d.ai",
        deadline_seconds: float = 600.0,
        poll_seconds: float = 2.0,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url
        self.deadline_seconds = deadline_seconds
        self.poll_seconds = poll_seconds

    def unavailable_reason(self) -> str | None:
        if not self.api_key:
            return "no Tripo API key is configured"
        if not self.api_key.startswith("tsk_"):
            return "the Tripo API key must start with tsk_"
        return None

    def needs_spec(self) -> bool:
        return False

    def needs_image(self) -> bool:
        return False

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        reason = self.unavailable_reason()
        if reason is not None:
            raise ProviderUnavailable(reason)
        try:
            return asyncio.run(
                asyncio.wait_for(self._generate(request, work_dir), self.deadline_seconds)
            )
        except TimeoutError as exc:
            raise CadBuildFailed(
                f"Tripo did not finish within {self.deadline_seconds:g} s"
            ) from exc
        except TripoAPIError as exc:
            if exc.code == AUTHENTICATION_FAILED:
                raise ProviderUnavailable(f"Tripo refused the key (code {exc.code})") from exc
            raise CadBuildFailed(f"Tripo answered an error: {exc}"[:300]) from exc
        except TripoRequestError as exc:
            if exc.status_code in (401, 403):
                raise ProviderUnavailable(
                    f"Tripo refused the key (HTTP {exc.status_code})"
                ) from exc
            if exc.status_code == 0 or exc.status_code >= 500:
                raise ProviderUnavailable(f"cannot reach Tripo: {exc}"[:300]) from exc
            raise CadBuildFailed(f"Tripo refused the request: {exc}"[:300]) from exc
        except TripoError as exc:
            raise CadBuildFailed(f"Tripo failed: {exc}"[:300]) from exc
        except OSError as exc:
            raise ProviderUnavailable(f"cannot reach Tripo: {type(exc).__name__}") from exc

    async def _generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        client = TripoClient(api_key=self.api_key, v3_base_url=self.base_url)
        try:
            images = [r for r in request.references if r.startswith(("http://", "https://"))]
            if images:
                task_id = await client.image_to_model(images[0], model_version=MODEL_VERSION)
            else:
                task_id = await client.text_to_model(request.prompt, model_version=MODEL_VERSION)
            task = await client.wait_for_task(task_id, polling_interval=self.poll_seconds)
            if task.status is not TaskStatus.SUCCESS:
                raise CadBuildFailed(
                    f"Tripo task ended {task.status.value}: {task.error_msg or 'no reason given'}"
                )
            url = task.output.model_url or task.output.pbr_model or task.output.model
            if not url:
                raise CadBuildFailed("Tripo's finished task has no model URL")
            glb = work_dir / "model.glb"
            await client.download_file(url, glb)
        finally:
            await client.close()
        stl = work_dir / "part.stl"
        try:
            mesh = trimesh.load(str(glb), force="mesh")
            mesh.export(str(stl))  # type: ignore[no-untyped-call]
        except Exception as exc:  # trimesh raises many types for a bad file
            raise CadBuildFailed(
                f"Tripo's model is not a readable mesh: {type(exc).__name__}"
            ) from exc
        return ProviderOutput(
            files={ArtifactType.STL: stl},
            model_version=f"tripo {MODEL_VERSION}",
            solid_valid=None,
            parametric=False,
            metadata={"tripo": {"task_id": task_id, "mode": "image" if images else "text"}},
        )
