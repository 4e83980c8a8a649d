"""Settings, read once from the environment (``KITTYLAB_…``, nested with ``__``) and an
optional ``.env`` file. Every setting is documented in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kittylab.domain.enums import NotificationChannel


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("kittylab", appauthor=False))


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_concurrent_requests: int = Field(
        512, ge=16, description="Connections served at once; beyond it new ones get 503."
    )


class PresenceSettings(BaseModel):
    ttl_seconds: int = Field(900, ge=1, description="How long a presence observation counts.")


class SessionSettings(BaseModel):
    inactivity_ttl_seconds: int = Field(
        24 * 3600, ge=60, description="A conversation idle this long is removed."
    )


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

    enabled: bool = Field(True, description="`kittylab serve` runs the simulated devices.")
    tick_seconds: float = Field(1.0, gt=0, le=60)
    report_interval_seconds: float = Field(
        10.0, gt=0, description="How often each simulated device reports its state."
    )
    reload_interval_seconds: float = Field(
        30.0, gt=0, description="How often the fleet picks up lab changes."
    )


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


class TelemetrySettings(BaseModel):
    retention_days: int = Field(30, ge=1, description="Telemetry older than this is deleted.")
    purge_batch_size: int = Field(
        5000, ge=1, le=100_000, description="Rows deleted per transaction by the purge."
    )


class CadSettings(BaseModel):
    """CAD generation: the offline CadQuery workers, scoring, alerts and online providers."""

    workers: int = Field(1, ge=1, le=16, description="Warm CadQuery worker processes.")
    prewarm: bool = Field(
        True, description="`kittylab serve` starts a worker at once instead of on first use."
    )
    build_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    build_cpu_seconds: float = Field(60.0, gt=0, le=3600)
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
    freecad_command: str = Field(
        "freecadcmd", description="FreeCAD's command-line binary; missing: freecad unavailable."
    )
    triposr_command: str | None = Field(
        None, description="Local TripoSR run, with {image} and {out} placeholders."
    )
    instantmesh_command: str | None = Field(
        None, description="Local InstantMesh run, with {image} and {out} placeholders."
    )
    external_timeout_seconds: float = Field(900.0, gt=0, le=7200)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KITTYLAB_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL; unset starts an embedded server in the data dir."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = True
    http: HttpSettings = HttpSettings()
    presence: PresenceSettings = PresenceSettings()
    sessions: SessionSettings = SessionSettings()
    jobs: JobSettings = JobSettings()
    notify: NotifySettings = NotifySettings()
    simulator: SimulatorSettings = SimulatorSettings()
    devices: DeviceSettings = DeviceSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    cad: CadSettings = CadSettings()

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
