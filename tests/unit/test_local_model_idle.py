"""The embedded local model is unloaded when idle (issue 14) and loads again on demand."""

from __future__ import annotations

import time
from pathlib import Path

from kittylab.adapters.llm.llama import EmbeddedLlama


class _Loaded:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_an_idle_model_is_unloaded_and_a_recently_used_one_kept() -> None:
    model = EmbeddedLlama(Path("/nonexistent.gguf"))
    loaded = _Loaded()
    model._llm = loaded
    model._prefix_key = "lab"
    assert model.release_idle(600) is False  # just used (constructed)
    assert model._llm is loaded
    model._last_used = time.monotonic() - 601
    assert model.release_idle(600) is True
    assert model._llm is None and model._prefix_key is None
    assert loaded.closed


def test_a_model_in_use_is_left_loaded() -> None:
    model = EmbeddedLlama(Path("/nonexistent.gguf"))
    model._llm = _Loaded()
    model._last_used = time.monotonic() - 10_000
    with model._lock:  # a request is reading
        assert model.release_idle(1) is False
    assert model._llm is not None
