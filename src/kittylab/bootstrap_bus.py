"""The bus half of the composition root (``bootstrap``): the broker's address, the
process's MQTT client with its own identity, and the lab's command-signing key.

Apart from ``bootstrap`` so that the simulator process (``kittylab simulate``) is wired
without importing every adapter: it speaks MQTT and nothing else, and stays small (about
a third of the server's memory once running). ``bootstrap`` re-exports everything here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kittylab.adapters.bus import command_key
from kittylab.adapters.bus.credentials import SIMULATOR_USERNAME, Identities
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus, parse_broker_url
from kittylab.adapters.tls import ServerCertificate, TlsRequired, lab_tls, listener_certificate
from kittylab.config import Settings
from kittylab.domain.bus_acl import IdentityKind
from kittylab.domain.errors import ValidationFailed
from kittylab.safety.command_signature import (
    CommandSigner,
    CommandVerifier,
    parse_public_key_text,
)


def broker_address(settings: Settings) -> BrokerAddress:
    """The configured broker, or the embedded one ``kittylab serve`` runs (no credentials:
    ``message_bus`` adds the process's own). A ``mqtts://`` broker is verified with the
    system's CAs and the lab CA (``KITTYLAB_MQTT__CA_FILE``, or ``kittylab tls init``'s).
    ``TlsRequired`` for plain MQTT beyond loopback unless ``allow_plain_mqtt``: the bus
    carries every identity's password and every device command."""
    mqtt = settings.mqtt
    ca_file = mqtt.ca_file or _lab_ca(settings)
    if mqtt.url is not None:
        address = parse_broker_url(mqtt.url.get_secret_value())
        if not address.tls and address.beyond_loopback and not mqtt.allow_plain_mqtt:
            raise TlsRequired(
                f"KITTYLAB_MQTT__URL: the broker {address.host} is beyond loopback; reach it "
                "over TLS (mqtts://, its certificate signed by the lab CA of `kittylab tls "
                "init` or KITTYLAB_MQTT__CA_FILE), or set KITTYLAB_MQTT__ALLOW_PLAIN_MQTT=true "
                "to send passwords and commands in the clear"
            )
        return replace(address, ca_file=ca_file) if address.tls else address
    tls = embedded_broker_certificate(settings) is not None
    host = mqtt.embedded_host
    if host in ("0.0.0.0", ""):  # noqa: S104  (a listener's wildcard, not a bind)
        host = "127.0.0.1"  # a wildcard listener: our own clients come in over loopback
    elif host == "::":
        host = "::1"
    return BrokerAddress(host, mqtt.embedded_port, tls=tls, ca_file=ca_file if tls else None)


def _lab_ca(settings: Settings) -> Path | None:
    lab = lab_tls(settings.data_dir)
    return lab.ca_cert if lab.has_ca else None


def embedded_broker_certificate(settings: Settings) -> ServerCertificate | None:
    """The certificate of the embedded broker's TLS listener: the configured one, or beyond
    loopback the lab's; ``TlsRequired`` beyond loopback with neither (unless allowed)."""
    mqtt = settings.mqtt
    given = (
        ServerCertificate(mqtt.embedded_tls_cert, mqtt.embedded_tls_key)
        if mqtt.embedded_tls_cert is not None and mqtt.embedded_tls_key is not None
        else None
    )
    return listener_certificate(
        mqtt.embedded_host,
        given=given,
        lab=lab_tls(settings.data_dir),
        allow_plain=mqtt.allow_plain_mqtt,
        refusal=f"KITTYLAB_MQTT__EMBEDDED_HOST: the embedded MQTT broker would listen on "
        f"{mqtt.embedded_host}, beyond loopback, without TLS; run `kittylab tls init` (or set "
        "KITTYLAB_MQTT__EMBEDDED_TLS_CERT and _KEY), or set KITTYLAB_MQTT__ALLOW_PLAIN_MQTT=true "
        "to send passwords and commands in the clear",
    )


def bus_identities_file(settings: Settings) -> Path:
    return settings.mqtt.identities_file or settings.data_dir / "mqtt" / "identities.json"


def bus_identities(settings: Settings) -> Identities:
    """The lab's bus identities, with KittyLab's own (service, worker, simulator) created
    on first use and saved (mode 0600)."""
    identities = Identities.load(bus_identities_file(settings))
    simulator = identities.entries.get(SIMULATOR_USERNAME)
    if identities.ensure_own(simulator.identity.devices if simulator else ()):
        identities.save()
    return identities


_BUS_KINDS = {"worker": IdentityKind.WORKER, "simulator": IdentityKind.SIMULATOR}


def message_bus(settings: Settings, role: str) -> MqttBus:
    """The process's MQTT client. It connects as the user of the broker URL when the URL
    names one, otherwise as KittyLab's own identity for ``role`` (``worker``,
    ``simulator``; anything else is the service) from the identities file."""
    address = broker_address(settings)
    if address.username is None:
        own = bus_identities(settings).own(_BUS_KINDS.get(role, IdentityKind.SERVICE))
        address = replace(address, username=own.username, password=own.password)
    return MqttBus(address, settings.mqtt, role=role)


def command_key_file(settings: Settings) -> Path:
    return settings.mqtt.command_key_file or settings.data_dir / "mqtt" / "command-signing.key"


def command_signer(settings: Settings) -> CommandSigner:
    """What signs every ``cmd`` this process publishes: the lab's command-signing key
    (created on first use, mode 0600)."""
    key = command_key.load_or_create(command_key_file(settings))
    return CommandSigner(key, ttl_seconds=settings.mqtt.command_ttl_seconds)


def command_verifier(settings: Settings) -> CommandVerifier:
    """The simulated devices' check of the commands they receive: the public half of the
    lab's command-signing key, given to them here as firmware is given it."""
    return CommandVerifier(command_signer(settings).public_key)


def simulator_verifier(settings: Settings, public_key: str | None) -> CommandVerifier:
    """The simulator process's check of the commands it receives: the public key given
    (``ed25519:<base64>``, as firmware is given it), else the public half the lab's key
    file has beside it (``command-signing.pub``); the private key is never read."""
    if public_key is None:
        path = command_key.public_key_file(command_key_file(settings))
        try:
            public_key = path.read_text()
        except OSError:
            raise ValidationFailed(
                "command_key",
                f"{path} cannot be read; pass --command-key (`kittylab mqtt command-key` "
                "prints it)",
            ) from None
    return CommandVerifier(parse_public_key_text(public_key))
