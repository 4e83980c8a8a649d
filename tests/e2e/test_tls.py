"""HTTPS for the lab (issue 13): ``kittylab tls init`` makes a lab CA and a certificate,
``kittylab serve`` serves HTTPS with it beyond loopback and refuses plain HTTP there unless
told, and a real client that trusts the lab CA (as a tablet that installed it) talks to
it; from outside the trusted networks, over that real socket, a token can only read."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.e2e import test_serve
from tests.e2e.test_serve import KITTYLAB, ROOT, _cli, _free_port

env = test_serve.env  # the fixture: a fresh data dir, the embedded PostgreSQL and broker


def _outward_address() -> str | None:
    """An address of this machine that is not loopback (the one a tablet would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_tls_init_makes_a_lab_ca_and_a_server_certificate_with_private_keys(
    env: dict[str, str],
) -> None:
    made = _cli(env, "tls", "init", "--host", "lab.example", "--host", "192.168.1.50")
    assert made.returncode == 0, made.stderr
    folder = Path(env["KITTYLAB_DATA_DIR"]) / "tls"
    assert "created the lab CA" in made.stdout and str(folder / "ca.pem") in made.stdout
    for key in ("ca-key.pem", "server-key.pem"):
        assert (folder / key).stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    cert = x509.load_pem_x509_certificate((folder / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "lab.example"} <= set(names.get_values_for_type(x509.DNSName))
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} >= {
        "127.0.0.1",
        "192.168.1.50",
    }
    ca_before = (folder / "ca.pem").read_bytes()

    again = _cli(env, "tls", "init", "--host", "lab2.example")
    assert again.returncode == 0, again.stderr
    assert "kept the lab CA" in again.stdout
    assert (folder / "ca.pem").read_bytes() == ca_before  # tablets keep trusting it
    bad = _cli(env, "tls", "init", "--host", "not a host!")
    assert bad.returncode != 0 and "host" in bad.stderr


def test_serve_beyond_loopback_refuses_plain_http_and_says_how(env: dict[str, str]) -> None:
    started = time.monotonic()
    refused = _cli(env, "serve", "--host", "0.0.0.0", "--port", str(_free_port()))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = refused.stderr
    assert "plain HTTP" in message
    assert "kittylab tls init" in message and "--insecure-http" in message
    assert "KITTYLAB_HTTP__TLS_CERT" in message
    # Refused before the database or anything else was started.
    assert time.monotonic() - started < 30
    assert not (Path(env["KITTYLAB_DATA_DIR"]) / "postgres").exists()


def test_a_plain_mqtt_broker_beyond_loopback_is_refused_at_start(env: dict[str, str]) -> None:
    refused = _cli(
        {**env, "KITTYLAB_MQTT__URL": "mqtt://kittylab:secret@broker.lab.example:1883"},
        "serve",
        "--port",
        str(_free_port()),
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "mqtts://" in refused.stderr and "KITTYLAB_MQTT__ALLOW_PLAIN_MQTT" in refused.stderr
    assert "secret" not in refused.stderr  # the URL's password is never repeated


def test_serve_speaks_https_with_the_lab_certificate_and_a_remote_token_only_reads(
    env: dict[str, str],
) -> None:
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address beyond loopback")
    made = _cli(env, "tls", "init", "--host", outward)
    assert made.returncode == 0, made.stderr
    ca = Path(env["KITTYLAB_DATA_DIR"]) / "tls" / "ca.pem"
    # Only loopback is the lab's network here: the outward address plays the internet.
    env = {**env, "KITTYLAB_HTTP__TRUSTED_NETWORKS": '["127.0.0.0/8", "::1/128"]'}
    assert _cli(env, "lab", "apply", "examples/lab.yaml").returncode == 0
    token = _cli(env, "users", "token", "olivia").stdout.strip()
    port = _free_port()
    log = Path(env["KITTYLAB_DATA_DIR"]).parent / "serve-tls.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*KITTYLAB, "serve", "--host", "0.0.0.0", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    lab_ca = ssl.create_default_context(cafile=str(ca))
    try:
        local = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()[-4000:]
            try:
                if httpx.get(local + "/readyz", verify=lab_ca, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.3)
        assert f"KittyLab listening on https://0.0.0.0:{port}" in log.read_text()

        # A client that does not trust the lab CA refuses the server; plain HTTP gets nothing.
        with pytest.raises(httpx.ConnectError):
            httpx.get(local + "/readyz", timeout=5)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)

        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=local, verify=lab_ca, headers=headers) as inside:
            page = inside.get("/api/devices", params={"limit": 100}).json()
            devices = {d["externalId"]: d["id"] for d in page["items"]}
            lights = devices["welding-lights"]
            assert (
                inside.post(
                    f"/api/device/{lights}/command", json={"intent": "light_on"}
                ).status_code
                == 202
            )
        # The CLI on the server host trusts the lab CA from the data dir.
        listed = _cli({**env, "KITTYLAB_URL": local, "KITTYLAB_TOKEN": token}, "devices")
        assert listed.returncode == 0, listed.stderr
        assert "welding" in listed.stdout.lower()
        remote = f"https://{outward}:{port}"
        with httpx.Client(base_url=remote, verify=lab_ca, headers=headers) as outside:
            assert outside.get("/api/devices").status_code == 200
            refused = outside.post(f"/api/device/{lights}/command", json={"intent": "light_on"})
            assert refused.status_code == 403, refused.text
            assert refused.json()["type"].endswith("/outside-trusted-networks")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
