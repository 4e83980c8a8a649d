"""Plain HTTP and plain MQTT are refused beyond loopback unless a setting says so; TLS
takes the lab's certificate and CA from ``kittylab tls init`` (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from kittylab import bootstrap
from kittylab.adapters import tls
from kittylab.adapters.tls import ServerCertificate, TlsRequired
from kittylab.config import HttpSettings, MqttSettings, Settings


def _settings(tmp_path: Path, **sections: object) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **sections)  # type: ignore[call-arg, arg-type]


def _init(tmp_path: Path) -> tls.LabTls:
    lab = tls.lab_tls(tmp_path)
    tls.init(lab, ["localhost", "127.0.0.1"])
    return lab


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_serves_plain_http_as_the_quick_start_does(tmp_path: Path, host: str) -> None:
    _init(tmp_path)  # even with the lab's certificate made: the quick start's URL stays http
    assert bootstrap.http_certificate(_settings(tmp_path), host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "lab.example"])
def test_beyond_loopback_plain_http_is_refused_and_the_message_says_how(
    tmp_path: Path, host: str
) -> None:
    with pytest.raises(TlsRequired) as refused:
        bootstrap.http_certificate(_settings(tmp_path), host)
    message = str(refused.value)
    assert "kittylab tls init" in message and "--insecure-http" in message
    assert "KITTYLAB_HTTP__TLS_CERT" in message and "KITTYLAB_HTTP__ALLOW_PLAIN_HTTP" in message


def test_beyond_loopback_https_takes_the_lab_certificate_or_the_given_one(
    tmp_path: Path,
) -> None:
    lab = _init(tmp_path)
    assert bootstrap.http_certificate(_settings(tmp_path), "0.0.0.0") == lab.server
    given = HttpSettings(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    chosen = bootstrap.http_certificate(_settings(tmp_path, http=given), "127.0.0.1")
    assert chosen == ServerCertificate(tmp_path / "c.pem", tmp_path / "k.pem")


def test_plain_http_beyond_loopback_only_when_allowed(tmp_path: Path) -> None:
    allowed = _settings(tmp_path, http=HttpSettings(allow_plain_http=True))
    assert bootstrap.http_certificate(allowed, "0.0.0.0") is None


def test_a_certificate_without_its_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="together"):
        HttpSettings(tls_cert=Path("/c.pem"))
    with pytest.raises(ValueError, match="together"):
        MqttSettings(embedded_tls_key=Path("/k.pem"))


def _mqtt(url: str, **more: object) -> MqttSettings:
    return MqttSettings(url=SecretStr(url), **more)  # type: ignore[arg-type]


def test_a_plain_broker_beyond_loopback_is_refused_without_repeating_its_password(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, mqtt=_mqtt("mqtt://svc:hunter2@broker.lab:1883"))
    with pytest.raises(TlsRequired) as refused:
        bootstrap.broker_address(settings)
    assert "mqtts://" in str(refused.value) and "hunter2" not in str(refused.value)
    assert "KITTYLAB_MQTT__ALLOW_PLAIN_MQTT" in str(refused.value)
    allowed = _settings(tmp_path, mqtt=_mqtt("mqtt://broker.lab", allow_plain_mqtt=True))
    assert not bootstrap.broker_address(allowed).tls
    local = _settings(tmp_path, mqtt=_mqtt("mqtt://127.0.0.1:1883"))
    assert bootstrap.broker_address(local).host == "127.0.0.1"


def test_an_mqtts_broker_is_verified_with_the_lab_ca_or_the_given_one(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mqtt=_mqtt("mqtts://broker.lab"))
    assert bootstrap.broker_address(settings).ca_file is None  # the system's CAs only
    lab = _init(tmp_path)
    address = bootstrap.broker_address(settings)
    assert address.tls and address.port == 8883 and address.ca_file == lab.ca_cert
    given = _settings(tmp_path, mqtt=_mqtt("mqtts://broker.lab", ca_file=tmp_path / "x.pem"))
    assert bootstrap.broker_address(given).ca_file == tmp_path / "x.pem"


def test_the_embedded_broker_beyond_loopback_listens_with_tls_or_not_at_all(
    tmp_path: Path,
) -> None:
    wide = _settings(tmp_path, mqtt=MqttSettings(embedded_host="0.0.0.0"))
    with pytest.raises(TlsRequired, match="kittylab tls init"):
        bootstrap.embedded_broker(wide)
    lab = _init(tmp_path)
    broker = bootstrap.embedded_broker(wide)
    assert broker is not None and broker.certificate == lab.server
    assert broker.url.startswith("mqtts://")
    ours = bootstrap.broker_address(wide)  # our own clients: over loopback, verified
    assert (ours.host, ours.tls, ours.ca_file) == ("127.0.0.1", True, lab.ca_cert)
    local = bootstrap.embedded_broker(_settings(tmp_path))
    assert local is not None and local.certificate is None  # loopback: the quick start
