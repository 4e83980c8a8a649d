"""Run a real job worker in a test until a condition holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kittylab.worker.run import build_job_app, run_worker
from kittylab.worker.tasks import JobContext


def run_worker_until(
    database_url: str, context: JobContext, done: Callable[[], bool], timeout: float = 30
) -> None:
    """Run a waiting worker until ``done()`` holds, then stop it as ``kittylab serve`` does."""

    async def main() -> None:
        app = build_job_app(database_url)
        async with app.open_async():
            worker = asyncio.create_task(run_worker(app, context, concurrency=2))
            try:
                async with asyncio.timeout(timeout):
                    while not await asyncio.to_thread(done):
                        if worker.done():
                            worker.result()  # surfaces a crashed worker
                        await asyncio.sleep(0.1)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    asyncio.run(main())
