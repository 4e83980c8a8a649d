"""Who may use the fabrication routes, and the store their files go to."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from kittylab.api.auth import require
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.principal import Principal
from kittylab.records.ports import ArtifactStore

PrintCaller = Annotated[
    Principal, Depends(require(Role.OPERATOR, Role.ENGINEER, Role.SAFETY, Role.ADMIN))
]
# Detectors use machine tokens scoped `monitor` (domain.machine_scopes), owned by one of
# these roles; operators and safety leads report by eye.
MonitorCaller = Annotated[Principal, Depends(require(Role.OPERATOR, Role.SAFETY, Role.ADMIN))]


def artifact_store(c: Container) -> ArtifactStore:
    return c.artifacts
