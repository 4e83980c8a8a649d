"""When a print's first layer is behind it. Pure.

A good first layer is the best single predictor of a print that will finish, and the
data model records it as a ``first_layer_ok`` monitor event. No driver reports layers in
the normalized state (``device_state.PrinterState``), so the printer's progress stands in
for them: a print that is printing at or past ``progress_threshold`` (5 % by default,
``monitoring.first_layer_progress``) has laid its first layer — for a typical part of
50-300 layers the first is 0.3-2 % of the G-code, and the margin covers the slower
first-layer speed. "OK" is the absence of a failure alert until then; the watcher that
asks decides that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kittylab.domain.device_state import PrinterPhase, printer_phase


def first_layer_done(state: Mapping[str, Any], progress_threshold: float) -> bool:
    """Whether ``state`` shows a printing printer whose first layer is laid."""
    if printer_phase(state) is not PrinterPhase.PRINTING:
        return False
    progress = state.get("progress")
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        return False
    return progress >= progress_threshold
