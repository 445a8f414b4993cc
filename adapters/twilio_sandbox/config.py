"""Sandbox settings: its Twilio account, its numbers, the scripted parties, delivery modes."""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# Fixed, recognisable test credentials (never real ones): "AC" + 32 hex, and a 32-hex token.
DEFAULT_ACCOUNT_SID = "AC" + hashlib.sha256(b"twilio-sandbox-account").hexdigest()[:32]
DEFAULT_AUTH_TOKEN = hashlib.sha256(b"twilio-sandbox-auth-token").hexdigest()[:32]


class Behaviour(StrEnum):
    """What a scripted party does when the sandbox dials it."""

    ANSWER = "answer"
    """Rings, answers after ``answer_after_s`` (no-answer if that exceeds the ring timeout)."""
    BUSY = "busy"
    """Returns busy at once."""
    NO_ANSWER = "no_answer"
    """Rings until the ring timeout: no-answer."""
    FAIL = "fail"
    """The call fails (unreachable number)."""
    SILENT = "silent"
    """The REST create succeeds, then nothing: no callbacks at all, never answers."""


class PartyConfig(BaseModel):
    """A scripted callee (a counselor, a call-taker), addressed by phone number."""

    model_config = ConfigDict(extra="forbid")

    behaviour: Behaviour = Behaviour.ANSWER
    answer_after_s: float = Field(default=1.0, ge=0)
    hangup_after_s: float | None = Field(default=None, gt=0)
    """Seconds after answering at which the party hangs up (None: stays until the call ends)."""
    digits: list[str] = Field(default_factory=list)
    """Answers to the ``<Gather>`` verbs of an outbound call's TwiML, one string per Gather."""


class NumberConfig(BaseModel):
    """A sandbox-owned number (the bridge line) and its voice webhook settings."""

    model_config = ConfigDict(extra="forbid")

    voice_url: str
    voice_method: str = "POST"
    voice_fallback_url: str | None = None
    voice_fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"


class SandboxConfig(BaseModel):
    """Everything the sandbox needs; every field has a default that works for a local run."""

    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(default=DEFAULT_ACCOUNT_SID, pattern=r"^AC[0-9a-f]{32}$")
    auth_token: str = DEFAULT_AUTH_TOKEN
    numbers: dict[str, NumberConfig] = Field(default_factory=dict)
    parties: dict[str, PartyConfig] = Field(default_factory=dict)
    default_party: PartyConfig = Field(default_factory=PartyConfig)
    """How a number with no scripted party behaves: answer after 1 s."""
    duplicate_callbacks: bool = False
    """Deliver every status callback twice (same idempotency token)."""
    shuffle_callbacks: bool = False
    """Hold status callbacks for ``shuffle_window_s`` and deliver each batch in random order."""
    shuffle_window_s: float = Field(default=0.2, gt=0)
    deliver_via: dict[str, str] = Field(default_factory=dict)
    """Sign against the public prefix (key) but deliver to the local one (value)."""
    time_scale: float = Field(default=1.0, gt=0)
    """Multiplies every simulated duration (ringing, answer/hang-up delays, Pause, Gather and
    ring timeouts). 0.05 runs a 20 s ring timeout in 1 s. Webhook HTTP timeouts are not scaled."""
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    conference_join_grace_s: float = Field(default=2.0, ge=0)
    """A Participants create naming a conference that is not live yet waits this long (real
    seconds) for it: the TwiML that dials the caller in may still be in flight."""
    participants_create_conference: bool = False
    """Real Twilio creates a conference when the Participants API names an unknown friendly name.
    The sandbox answers 404 instead unless this is set."""
    participant_create_hold_s: float = Field(default=0.0, ge=0)
    """A slow provider: real seconds a Participants create waits before it is carried out. A
    create whose client hung up meanwhile is dropped, as if its request never arrived."""
    participant_create_reply_delay_s: float = Field(default=0.0, ge=0)
    """Real seconds between carrying out a Participants create and answering it: a client that
    dies meanwhile has dialed, but never learned the call id."""
    rest_unavailable: bool = False
    """Every REST request answers 503 (an outage of Twilio's API); calls go on meanwhile."""


class ConfigUpdate(BaseModel):
    """Body of ``PUT /sandbox/config``: the delivery modes that may change at run time."""

    model_config = ConfigDict(extra="forbid")

    duplicate_callbacks: bool | None = None
    shuffle_callbacks: bool | None = None
    shuffle_window_s: float | None = Field(default=None, gt=0)
    deliver_via: dict[str, str] | None = None
    time_scale: float | None = Field(default=None, gt=0)
    participant_create_hold_s: float | None = Field(default=None, ge=0)
    participant_create_reply_delay_s: float | None = Field(default=None, ge=0)
    rest_unavailable: bool | None = None


class InboundCall(BaseModel):
    """Body of ``POST /sandbox/calls``: a scripted caller dialing a sandbox number."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", pattern=r"^\+[1-9][0-9]{1,14}$")
    to: str
    digits: list[str] = Field(default_factory=list)
    hangup_after_s: float | None = Field(default=None, gt=0)
