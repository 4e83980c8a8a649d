"""Zoo (KittyCAD) text-to-CAD through the ``kittycad`` SDK.

1. ``POST /ai/text-to-cad/step`` with ``{"prompt": …}`` starts a generation (the SDK 1.8
   has no method for it, so the request goes through the SDK's own authenticated HTTP
   client and its answer is read with the SDK's ``TextToCadResponse`` model);
2. ``GET /user/text-to-cad/{id}`` (``client.ml.get_text_to_cad_part_for_user``) is polled
   until the status is ``completed`` or ``failed``; the STEP arrives base64-encoded in
   ``outputs`` and the KCL source in ``code``;
3. ``POST /file/conversion/step/stl`` (``client.file.create_file_conversion``) meshes the
   STEP for scoring and printing.

Every call has the client's timeout and the whole generation a deadline. SDK and HTTP
errors become ``ProviderUnavailable`` (cannot reach or authenticate) or
``CadBuildFailed``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from kittycad import KittyCAD
from kittycad.exceptions import KittyCADError
from kittycad.models.api_call_status import ApiCallStatus
from kittycad.models.file_export_format import FileExportFormat
from kittycad.models.file_import_format import FileImportFormat
from kittycad.models.text_to_cad_response import TextToCadResponse
from pydantic import ValidationError

from kittylab.adapters.cad.worker import CadBuildFailed
from kittylab.cad.errors import ProviderUnavailable
from kittylab.cad.ports import ProviderOutput, ProviderRequest
from kittylab.domain.enums import ArtifactType, CADProvider


class ZooProvider:
    name = CADProvider.ZOO
    offline = False

    def __init__(
        self,
        token: str | None,
        *,
        base_url: str = "https://api.zoo.dev",
        request_timeout_seconds: float = 30.0,
        deadline_seconds: float = 600.0,
        poll_seconds: float = 2.0,
    ) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.request_timeout_seconds = request_timeout_seconds
        self.deadline_seconds = deadline_seconds
        self.poll_seconds = poll_seconds

    def unavailable_reason(self) -> str | None:
        return None if self.token else "no Zoo API token is configured"

    def needs_spec(self) -> bool:
        return False

    def needs_image(self) -> bool:
        return False

    def _client(self) -> KittyCAD:
        assert self.token is not None
        return KittyCAD(
            token=self.token, base_url=self.base_url, timeout=self.request_timeout_seconds
        )

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        if self.token is None:
            raise ProviderUnavailable("no Zoo API token is configured")
        client = self._client()
        try:
            return self._generate(client, request, work_dir)
        except KittyCADError as exc:
            status = getattr(exc, "status_code", None)
            if status in (401, 403):
                raise ProviderUnavailable(f"Zoo refused the token (HTTP {status})") from exc
            raise CadBuildFailed(f"Zoo answered an error: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"cannot reach Zoo: {type(exc).__name__}") from exc
        except ValidationError as exc:
            raise CadBuildFailed("Zoo's answer does not match its documented shape") from exc
        finally:
            client.close()

    def _generate(
        self, client: KittyCAD, request: ProviderRequest, work_dir: Path
    ) -> ProviderOutput:
        created = client.get_http_client().post(
            f"{self.base_url}/ai/text-to-cad/{FileExportFormat.STEP.value}",
            headers=client.get_headers(),
            json={"prompt": request.prompt},
        )
        if created.status_code in (401, 403):
            raise ProviderUnavailable(f"Zoo refused the token (HTTP {created.status_code})")
        if not created.is_success:
            raise CadBuildFailed(f"Zoo did not start the generation (HTTP {created.status_code})")
        job = TextToCadResponse.model_validate(created.json()).root
        deadline = time.monotonic() + self.deadline_seconds
        while job.status not in (ApiCallStatus.COMPLETED, ApiCallStatus.FAILED):
            if time.monotonic() > deadline:
                raise CadBuildFailed(f"Zoo did not finish within {self.deadline_seconds:g} s")
            time.sleep(self.poll_seconds)
            job = client.ml.get_text_to_cad_part_for_user(id=str(job.id)).root
        if job.status == ApiCallStatus.FAILED:
            raise CadBuildFailed(f"Zoo could not generate the part: {job.error or 'no reason'}")
        outputs = getattr(job, "outputs", None) or {}
        step_bytes = next((bytes(v) for k, v in outputs.items() if k.endswith(".step")), None)
        if step_bytes is None:
            raise CadBuildFailed("Zoo's completed job holds no STEP output")
        step = work_dir / "part.step"
        step.write_bytes(step_bytes)
        converted = client.file.create_file_conversion(
            src_format=FileImportFormat.STEP, output_format=FileExportFormat.STL, body=step_bytes
        )
        meshes = converted.outputs or {}
        stl_bytes = next((bytes(v) for k, v in meshes.items() if k.endswith(".stl")), None)
        if converted.status != ApiCallStatus.COMPLETED or stl_bytes is None:
            raise CadBuildFailed("Zoo did not convert the STEP to STL")
        stl = work_dir / "part.stl"
        stl.write_bytes(stl_bytes)
        code = getattr(job, "code", None)
        return ProviderOutput(
            files={ArtifactType.STEP: step, ArtifactType.STL: stl},
            model_version=f"zoo {job.model_version}",
            solid_valid=None,
            parametric=True,
            metadata={
                "zoo": {
                    "id": str(job.id),
                    "kcl": code,
                    "kcl_version": getattr(job, "kcl_version", None),
                }
            },
        )
