"""The transfer and the facts it carries, as the API shows them (DESIGN.md §3, §5, §6)."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, get_args

import langcodes
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from gateway.phone import E164
from gateway.states import TransferState


class CallerType(StrEnum):
    FIRST_PERSON = "first_person"
    """The person in crisis is the caller."""
    THIRD_PARTY = "third_party"
    """Someone calling about the person in crisis."""
    UNKNOWN = "unknown"


class DestinationKind(StrEnum):
    CENTER_988 = "988_center"
    LOCAL_CLINICIAN = "local_clinician"


class Action(StrEnum):
    TRANSFER = "transfer"
    STAY_WITH_911 = "stay_with_911"


ExclusionFlag = Literal[
    "weapons",
    "violence",
    "medical_emergency",
    "attempt_in_progress",
    "severe_intoxication",
    "officer_requested",
    "imminent_risk",
]
"""The screening answers that, ``true``, keep a call with 911 in every valid policy."""
ScreeningFlag = Literal[ExclusionFlag, "consent_to_transfer"]

EXCLUSION_FLAGS: tuple[str, ...] = get_args(ExclusionFlag)
SCREENING_FLAGS: tuple[str, ...] = get_args(ScreeningFlag)


class Screening(BaseModel):
    """The call-taker's answers: ``True``, ``False`` or ``None`` (not asked) — strictly JSON
    booleans: ``"yes"`` or ``0`` is a 422, never a guess."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    weapons: bool | None = None
    violence: bool | None = None
    medical_emergency: bool | None = None
    attempt_in_progress: bool | None = None
    severe_intoxication: bool | None = None
    officer_requested: bool | None = None
    imminent_risk: bool | None = None
    consent_to_transfer: bool | None = None

    def flag(self, name: str) -> bool | None:
        value: bool | None = getattr(self, name)
        return value


BCP47 = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$"
"""The shape of a BCP 47 language tag (RFC 5646 §2.1): letters, then ``-``-separated subtags."""


def known_language(tag: str) -> str:
    """``tag`` unchanged when every subtag is in the IANA Language Subtag Registry (as
    ``langcodes`` holds it: ``zz`` is not); else ``ValueError``.
    Applied after the ``BCP47`` pattern, so it only ever narrows what the pattern admits."""
    if not langcodes.tag_is_valid(tag):
        raise ValueError(f"{tag!r} is not a valid BCP 47 language tag (IANA subtag registry)")
    return tag


LanguageTag = Annotated[str, StringConstraints(pattern=BCP47), AfterValidator(known_language)]
"""A caller's language: a well-formed BCP 47 tag whose subtags are registered, as given (tags
are compared in canonical form by ``gateway.policy.models.language_distance``)."""


class DecisionRequest(BaseModel):
    """What a decision is made from (DESIGN.md §5).

    Other call facts an integration sends alongside are accepted and ignored — but never
    silently: ``ignored_fields`` names them in the answer, so a misspelled
    ``transfers_so_far`` shows up at once. The screening answers are strict."""

    model_config = ConfigDict(frozen=True, extra="allow")

    @property
    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})

    psap_id: str = Field(min_length=1, max_length=64)
    caller_type: CallerType
    screening: Screening
    language: LanguageTag = "en"
    transfers_so_far: int = Field(default=0, ge=0, le=100)
    tags: list[str] = Field(default_factory=list, max_length=20)
    at: AwareDatetime | None = None
    """The instant schedules are evaluated at; now when absent."""


class DestinationRef(BaseModel):
    """A destination as a decision names it."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: DestinationKind
    name: str
    number: E164


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: Action
    destinations: list[DestinationRef] = Field(default_factory=list)
    ring_timeout_s: int
    reasons: list[str] = Field(default_factory=list)
    policy_version: int


AttemptOutcome = Literal[
    "answered", "busy", "no_answer", "failed", "timeout", "cancelled", "caller_left"
]


class Attempt(BaseModel):
    """One destination dialed for a transfer. ``outcome`` is ``None`` while it rings."""

    destination_id: str
    started_at: AwareDatetime
    outcome: AttemptOutcome | None = None
    ended_at: AwareDatetime | None = None
    call_sid: str | None = None


class DispositionOutcome(StrEnum):
    """How a connected transfer ended, as the 988 center or clinicians record it (§4)."""

    RESOLVED_BY_PHONE = "resolved_by_phone"
    MOBILE_CRISIS_DISPATCHED = "mobile_crisis_dispatched"
    HANDED_BACK_TO_911 = "handed_back_to_911"
    REFERRED = "referred"
    CALLER_DISCONNECTED = "caller_disconnected"
    OTHER = "other"


class Disposition(BaseModel):
    """The outcome of a connected transfer; recorded once, by the connected destination's org."""

    outcome: DispositionOutcome
    police_involved: bool
    destination_id: str
    recorded_at: AwareDatetime


STORE_FIELDS = frozenset({"state", "version", "created_at", "updated_at", "tx"})
"""Hash fields the store writes as plain strings; every other field is JSON-encoded. (``tx`` is
the token of the last write, read only by the scripts: a retried write is recognised by it.)"""


class Transfer(BaseModel):
    """A transfer as stored and as ``GET /v1/transfers/{id}`` shows it."""

    id: str
    state: TransferState
    version: int
    psap_id: str
    caller_type: CallerType
    language: str = "en"
    screening: Screening = Field(default_factory=Screening)
    tags: list[str] = Field(default_factory=list)
    transfers_so_far: int = 0
    decision: Decision
    attempts: list[Attempt] = Field(default_factory=list)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    connected_destination_id: str | None = None
    connected_at: AwareDatetime | None = None
    released_at: AwareDatetime | None = None
    bridge_expires_at: AwareDatetime | None = None
    callback_number: E164 | None = None
    """Personal data: shown to the PSAP and the destinations, never logged; expires with the
    record."""
    psap_call_sid: str | None = None
    """The bridge-line leg carrying the caller and the call-taker. The gateway never ends it."""
    bridge_code_digest: str | None = Field(default=None, exclude=True)
    report_day: str | None = Field(default=None, exclude=True)
    """The PSAP-local date the call was considered: every report counter of this transfer
    counts on that day."""
    destination_orgs: dict[str, str] = Field(default_factory=dict, exclude=True)
    """Destination id → the org acting for it, as configured when the call was decided."""
    disposition: Disposition | None = None
    """Written once, atomically, by ``POST /v1/transfers/{id}/disposition``."""

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @classmethod
    def from_redis(cls, transfer_id: str, raw: dict[str, str]) -> Self:
        data: dict[str, Any] = {"id": transfer_id}
        for field, value in raw.items():
            data[field] = value if field in STORE_FIELDS else json.loads(value)
        return cls.model_validate(data)


def encode_fields(**fields: Any) -> dict[str, str]:
    """Values as the store keeps them: each one JSON, so a field reads back with its type."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if isinstance(value, BaseModel):
            out[name] = value.model_dump_json()
        elif isinstance(value, datetime):
            out[name] = json.dumps(value.isoformat())
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            out[name] = "[" + ",".join(v.model_dump_json() for v in value) + "]"
        else:
            out[name] = json.dumps(value)
    return out
