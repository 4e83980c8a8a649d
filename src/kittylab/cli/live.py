"""Showing a view once or keeping it live in the terminal."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console, RenderableType
from rich.live import Live

REFRESH_SECONDS = 2.0


def show(console: Console, render: Callable[[], RenderableType], *, watch: bool) -> None:
    """Print ``render()`` once, or (``watch``) redraw it in place every two seconds until
    Ctrl-C."""
    if not watch:
        console.print(render())
        return
    try:
        with Live(render(), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(REFRESH_SECONDS)
                live.update(render(), refresh=True)
    except KeyboardInterrupt:
        pass
