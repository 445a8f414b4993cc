"""Every setting of the gateway, read once from the environment (prefix ``GATEWAY_``).

Names follow DESIGN.md §8. A bad value stops the gateway at start with the setting's name and
what is wrong with it, never later on a call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.core.phone import PhoneNumber
from gateway.core.redis_client import check_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    workers: Annotated[int, Field(ge=1)] = 1
    """Processes ``serve`` runs on ``host:port`` (``--workers`` overrides it); one per core is
    typical. Above 1, gunicorn keeps that many aiohttp workers on one listening socket and
    replaces any that dies; they share all state through Redis."""
    redis_url: str | None = None
    """Redis: ``redis://``, ``rediss://``, ``unix://``, or a Sentinel set as
    ``redis+sentinel://host:port[,host:port]/<service>[/<db>]``, or a Redis Cluster as
    ``redis+cluster://host:port[,host:port]``. Unset: ``serve`` starts an
    embedded redis-server under ``state_dir``."""
    config_dir: Path = Path("config")
    state_dir: Path = Path(".state")
    public_base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8080")
    """The URL Twilio uses to reach the gateway; webhook signatures are checked against it."""
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_base_url: AnyHttpUrl = AnyHttpUrl("https://api.twilio.com")
    bridge_number: PhoneNumber | None = None
    """The Twilio number callers are conferenced to: E.164 (or a US national number)."""
    sandbox: bool | None = None
    """Run against the built-in Twilio sandbox. Unset: yes when no Twilio credentials are set."""

    log_level: str = "INFO"
    retention_days: Annotated[float, Field(gt=0, le=3650)] = 30
    """How long terminal transfer records and their audit trails are kept in Redis."""
    bridge_code_ttl_s: Annotated[int, Field(ge=5, le=3600)] = 300
    audit_maxlen: Annotated[int, Field(ge=10)] = 1000
    """Approximate cap on one transfer's audit stream (``XADD MAXLEN ~``)."""
    timer_poll_s: Annotated[float, Field(gt=0, le=10)] = 0.25
    timer_lease_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    ring_grace_s: Annotated[float, Field(ge=0, le=60)] = 5.0
    """The gateway's own ring timer fires this long after the destination's ring timeout, in
    case the telephony provider never reports the outcome."""
    connected_check_s: Annotated[float, Field(gt=0, le=86_400)] = 1800.0
    """How often a connected transfer's conference is checked with the telephony provider, so a
    lost conference-end callback cannot keep a destination's capacity taken forever."""
    code_tries: Annotated[int, Field(ge=1, le=10)] = 3
    twilio_timeout_s: Annotated[float, Field(gt=0, le=30)] = 10.0
    notice_timeout_s: Annotated[float, Field(gt=0, le=30)] = 3.0
    handback_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    """How many times the PSAP's handback line is dialed before the handback fails."""
    handback_retry_delay_s: Annotated[float, Field(ge=0, le=300)] = 5.0
    """Pause between a busy / unanswered handback dial and the next one."""
    handback_ring_timeout_s: Annotated[int, Field(ge=5, le=600)] = 30
    """How long the handback line rings per attempt (Twilio accepts 5 to 600 s)."""
    handback_confirm_timeout_s: Annotated[int, Field(ge=1, le=7 * 86_400)] = 1800
    """A handback without a contact confirmation this long after it was made is flagged
    ``unconfirmed`` and the 988 center is told."""
    cad_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    cad_retry_base_s: Annotated[float, Field(gt=0, le=600)] = 2.0
    """First CAD redelivery delay; doubled after each failure up to ``cad_retry_max_s``."""
    cad_retry_max_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    cad_max_attempts: Annotated[int, Field(ge=1, le=1000)] = 50
    """CAD deliveries tried before the EIDO is given up on (kept, flagged, logged)."""
    sandbox_port: Annotated[int, Field(ge=0, le=65535)] = 8081
    # ---- consoles (gateway.console) ----
    console_session_idle_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 4 * 3600
    """A console session ends this long after its last use (sign in again)."""
    console_session_max_s: Annotated[int, Field(ge=60, le=30 * 86_400)] = 12 * 3600
    """...and this long after sign-in, however busy (one shift)."""
    redis_socket_timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 64
    """Requests one process works on at once; the rest wait (``/twilio/voice`` is refused at
    once when they would, so Twilio takes its fallback URL)."""
    admission_wait_s: Annotated[float, Field(gt=0, le=14)] = 10.0
    """Longest a request waits for its turn (Twilio gives up on a webhook after 15 s)."""
    redis_max_connections: Annotated[int, Field(ge=1, le=10_000)] = 64
    """Connections one process keeps to Redis; more commands than this wait for one."""
    body_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    """Longest wait for a whole request body; a slower one gets 408 (Twilio itself gives up on
    a webhook after 15 s)."""

    # ---- live events (GET /v1/events, gateway.events) ----
    events_heartbeat_s: Annotated[float, Field(gt=0, le=60)] = 15.0
    """A comment line is written on every open event stream this often, so proxies keep it."""
    events_max_streams: Annotated[int, Field(ge=1, le=100_000)] = 500
    """Event streams one process keeps open at once; past it a new one gets 429."""
    events_max_streams_per_key: Annotated[int, Field(ge=1, le=10_000)] = 5
    """Event streams one API key may hold open on one process; past it a new one gets 429."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None or not value:
            return None
        check_url(value)  # a malformed Sentinel or Cluster URL fails here, at start
        return value

    @model_validator(mode="after")
    def _bridge_number_with_twilio(self) -> Settings:
        if not self.sandbox_enabled and self.bridge_number is None:
            raise ValueError(
                "GATEWAY_BRIDGE_NUMBER is required with Twilio credentials: the E.164 number "
                "callers are conference-transferred to"
            )
        return self

    @property
    def sandbox_enabled(self) -> bool:
        if self.sandbox is not None:
            return self.sandbox
        return not (self.twilio_account_sid and self.twilio_auth_token)

    @property
    def retention_s(self) -> int:
        return max(1, round(self.retention_days * 86_400))

    def public_url(self, path: str) -> str:
        """The public URL of ``path`` (which starts with ``/``), as Twilio sees it."""
        return str(self.public_base_url).rstrip("/") + path
