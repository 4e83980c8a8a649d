"""Settings, read once from the environment (``KITTYLAB_…``, nested with ``__``) and an
optional ``.env`` file. Every setting is documented in docs/configuration.md."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


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
    frontier: FrontierSettings = FrontierSettings()
    mcp_servers: list[McpServerSettings] = Field(default_factory=list)


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
    query: QuerySettings = QuerySettings()

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
