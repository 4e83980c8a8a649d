"""deploy/: the alerting rules and dashboards, proven with Debian's real Prometheus scraping a
live `kittylab serve` with the demo lab (issue 15)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.test_serve import ROOT, Server, _cli, _free_port, server_env

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "kittylab.rules.yml"


def _tool(name: str) -> str:
    found = shutil.which(name)
    # Installed by scripts/install-system-deps.sh, which the test command runs.
    assert found is not None, f"{name} is missing: run scripts/install-system-deps.sh"
    return found


def _dashboards() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kittylab_dashboards", DEPLOY / "grafana" / "dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_shipped_config_and_rules_pass_promtool_and_their_unit_tests() -> None:
    promtool = _tool("promtool")
    for args in (
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        ["test", "rules", str(DEPLOY / "prometheus" / "tests" / "kittylab.rules.test.yml")],
    ):
        checked = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_committed_dashboards_are_what_the_generator_builds() -> None:
    built = _dashboards().build()
    assert set(built) == {p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    for name, content in built.items():
        committed = (DEPLOY / "grafana" / "dashboards" / name).read_text()
        assert committed == content, f"{name} is stale: run deploy/grafana/dashboards.py"


def _panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every panel target."""
    found = []
    for name, content in _dashboards().build().items():
        for panel in json.loads(content)["panels"]:
            for target in panel.get("targets") or []:
                found.append((name, panel["title"], target["expr"]))
    assert len(found) >= 15
    return found


@pytest.fixture
def lab_server(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env = server_env(tmp_path)
    applied = _cli(env, "lab", "apply", "examples/lab.yaml")
    assert applied.returncode == 0, applied.stderr
    token = _cli(env, "users", "token", "ada").stdout.strip()
    server = Server(env, _free_port())
    try:
        server.wait_ready()
        yield server, {"Authorization": f"Bearer {token}"}
    finally:
        if server.process.poll() is None:
            # A graceful stop: the server stops its embedded PostgreSQL (a kill would
            # leave that running after the test).
            server.stop()


@pytest.fixture
def prometheus(tmp_path: Path, lab_server: tuple[Server, dict[str, str]]) -> Iterator[str]:
    server, _ = lab_server
    config = tmp_path / "prometheus.yml"
    shutil.copy(RULES, tmp_path / "kittylab.rules.yml")
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    # The shipped file, pointed at this server and scraping fast enough for a test.
    shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    shipped["rule_files"] = ["kittylab.rules.yml"]
    shipped["scrape_configs"][0]["static_configs"][0]["targets"] = [server.url.split("//")[1]]
    config.write_text(yaml.safe_dump(shipped))
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(url + "/-/ready", timeout=1).status_code == 200, 30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"not within {within} s (last error: {last})")


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_a_live_server_and_every_panel_and_rule_has_data(
    lab_server: tuple[Server, dict[str, str]], prometheus: str
) -> None:
    server, auth = lab_server
    # A little traffic: a look at the devices, a command confirmed by the device, a
    # conversation turn.
    devices = httpx.get(server.url + "/api/devices?limit=100", headers=auth, timeout=10).json()
    lights = next(d for d in devices["items"] if d["externalId"] == "bench-lights")
    sent = httpx.post(
        f"{server.url}/api/device/{lights['id']}/command",
        headers=auth,
        json={"intent": "light_on"},
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    command_url = f"{server.url}/api/commands/{sent.json()['commandId']}"
    _until(lambda: httpx.get(command_url, headers=auth, timeout=5).json()["status"] == "acked", 30)
    turn = httpx.post(
        server.url + "/api/query",
        headers=auth,
        json={"channel": "cli", "input": {"text": "turn off the bench lights"}},
        timeout=30,
    )
    assert turn.status_code in (200, 202), turn.text

    # Scraped after the traffic, with the lab's gauges read from the database.
    _until(lambda: _query(prometheus, 'kittylab_devices{state="online"}'), 30)
    _until(lambda: _query(prometheus, "kittylab_query_requests_total"), 30)
    _until(lambda: _query(prometheus, "kittylab_device_command_confirm_seconds_count > 0"), 30)
    online = sum(float(s["value"][1]) for s in _query(prometheus, "kittylab_devices"))
    assert online == 18  # the demo lab, every device in one state or another
    assert _query(prometheus, "kittylab_audit_chain_intact")[0]["value"][1] == "1"

    time.sleep(2)  # two more scrapes, so every rate() has two samples after the traffic
    empty = []
    for dashboard, title, expr in _panel_queries():
        # Grafana's $__rate_interval: at least four scrape intervals.
        result = _query(prometheus, re.sub(r"\$__rate_interval", "1m", expr))
        if not result:
            empty.append(f"{dashboard}: {title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)

    rules = httpx.get(prometheus + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = [rule for group in rules for rule in group["rules"]]
    assert len(loaded) == 10
    assert all(rule["health"] == "ok" for rule in loaded), loaded
    alerts = httpx.get(prometheus + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"] == []
