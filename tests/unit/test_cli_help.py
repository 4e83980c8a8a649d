"""The CLI's help is read by people at a terminal: what it says must survive Rich markup."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kittylab.cli.main import app

SERVER_COMMANDS = [
    ["stop"],
    ["devices"],
    ["send"],
    ["print"],
    ["jobs"],
    ["locks", "place"],
    ["presence", "checkin"],
    ["approve"],
]


@pytest.mark.parametrize("command", SERVER_COMMANDS, ids=" ".join)
def test_the_url_option_says_where_its_default_comes_from(command: list[str]) -> None:
    # Typer renders help as Rich markup: "[env KITTYLAB_URL]" was taken for a style tag
    # and dropped, leaving "Server URL ." on every command that talks to a server.
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "KITTYLAB_URL" in result.output
    assert "Server URL ." not in result.output
