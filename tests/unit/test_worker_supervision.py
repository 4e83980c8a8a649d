import asyncio
from typing import Any

from kittylab.worker.run import WorkerState, supervise_worker


def test_stopping_wins_when_the_workers_own_shutdown_fails() -> None:
    """Cancelled while the database is gone, the worker's shutdown raises instead of
    re-raising the cancellation: the supervisor must stop, not restart it."""

    class ShutdownFailed(Exception):
        pass

    async def runner(*_: Any, **__: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ShutdownFailed("could not unregister the worker") from None

    async def scenario() -> WorkerState:
        state = WorkerState()
        task = asyncio.create_task(
            supervise_worker(None, None, state, concurrency=1, runner=runner)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.05)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the supervisor kept running after it was cancelled"
        return state

    state = asyncio.run(scenario())
    assert state.restarts == 0
    assert state.running is False


def test_a_worker_that_ends_on_its_own_is_restarted() -> None:
    runs = 0

    async def runner(*_: Any, **__: Any) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ConnectionError("listener lost the database")
        await asyncio.sleep(3600)

    async def scenario() -> WorkerState:
        state = WorkerState()
        task = asyncio.create_task(
            supervise_worker(
                None, None, state, concurrency=1, max_backoff_seconds=0.01, runner=runner
            )  # type: ignore[arg-type]
        )
        for _ in range(200):
            if runs >= 3 and state.running:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return state

    state = asyncio.run(scenario())
    assert runs == 3
    assert state.restarts == 2
