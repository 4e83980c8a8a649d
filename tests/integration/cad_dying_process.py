"""A process that starts an offline CAD job and is stuck in the middle of the build, for a
test to kill as a crash or a restart would:

    python -m tests.integration.cad_dying_process DATABASE_URL STORE_DIR PROMPT

It prints ``building <job id>`` once the job is ``running`` and the build has begun."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kittylab.adapters.cad.analyzer import MeshAnalyzer
from kittylab.adapters.db.engine import Database, make_engine
from kittylab.adapters.db.tables import CADJob
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.cad.planning import PolicyMode
from kittylab.cad.ports import ProviderOutput, ProviderRequest
from kittylab.cad.runs import AlertSettings, CadService, GenerateRequest
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CADJobStatus, CADProvider


class _StuckBuild:
    name = CADProvider.CADQUERY
    offline = True

    def __init__(self, database: Database) -> None:
        self.database = database

    def unavailable_reason(self) -> str | None:
        return None

    def needs_spec(self) -> bool:
        return True

    def needs_image(self) -> bool:
        return False

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        with self.database.unit_of_work() as session:
            job = session.query(CADJob).filter(CADJob.status == CADJobStatus.RUNNING).one()
            print(f"building {job.id}", flush=True)
        time.sleep(3600)
        raise AssertionError("the test kills this process first")


def main() -> None:
    url, store, prompt = sys.argv[1:4]
    database = Database(make_engine(url, pool_size=1))
    cad = CadService(
        database,
        FolderArtifactStore(Path(store)),
        [_StuckBuild(database)],
        MeshAnalyzer((256.0, 256.0, 256.0)),
        queue=None,
        alerts=None,
        alert_settings=AlertSettings(),
        clock=utcnow,
    )
    cad.generate(GenerateRequest(prompt, PolicyMode.OFFLINE, requested_by=None))


if __name__ == "__main__":
    main()
