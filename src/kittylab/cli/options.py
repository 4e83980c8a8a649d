"""Options shared by the commands that talk to a running server.

Help texts avoid square brackets: Typer renders help as Rich markup, where ``[env X]`` is
read as a style tag and silently dropped (the help then said "Server URL .").
"""

from __future__ import annotations

from typing import Annotated

import typer

from kittylab.cli.client import DEFAULT_URL

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help=f"Server URL (default: $KITTYLAB_URL, else {DEFAULT_URL})."),
]
