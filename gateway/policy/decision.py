"""The decision's vocabulary: what a routing decision is made from and what it says
(DESIGN.md §5). Routing owns these; transfers and the API carry them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

import langcodes
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from gateway.core.phone import E164


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


def _psap_id_may_be_left_out(schema: dict[str, Any]) -> None:
    """In the API's schema ``psap_id`` is optional: a ``psap`` key's org fills it in."""
    schema["required"] = [name for name in schema.get("required", []) if name != "psap_id"]


class DecisionRequest(BaseModel):
    """What a decision is made from (DESIGN.md §5).

    Unknown fields are refused (422 naming each, with the closest known name, DESIGN.md §9):
    a misspelt ``callback_number`` or ``transfers_so_far`` must not vanish. The screening
    answers are strict."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_extra=_psap_id_may_be_left_out
    )

    psap_id: str = Field(min_length=1, max_length=64)
    """The PSAP the call is at. A ``psap`` key may leave it out (its own org); given, it must
    be that org (403 otherwise). Any other key gives it."""
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
