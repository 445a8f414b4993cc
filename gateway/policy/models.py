"""The routing policy as frozen models: PSAPs, destinations, rules (DESIGN.md §2, §5).

A ``PolicyDocument`` is what ``config/`` holds and what ``GET/PUT /v1/admin/routing`` carries:
``{"psaps": [...], "destinations": [...], "policy": {...}}``. Field-level checks live here
(E.164 numbers, IANA timezones, well-formed schedules, the safety invariant of one policy);
checks across sections (references between them) live in ``gateway.policy.loader``.

The safety invariant: a call with an exclusion flag set is never sent anywhere but 911. The
engine's gate runs before any rule, and a policy cannot weaken the gate:

- ``exclusions`` must list every one of ``MANDATORY_EXCLUSIONS`` (the flags every program keeps
  with 911, DOMAIN.md "the safety gate");
- no rule may match on an exclusion flag being ``true`` (such a rule exists only to route an
  excluded call, so the whole policy is rejected).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from gateway.models import BCP47, SCREENING_FLAGS, CallerType, DestinationKind, DestinationRef
from gateway.phone import E164

MANDATORY_EXCLUSIONS: tuple[str, ...] = (
    "weapons",
    "violence",
    "medical_emergency",
    "attempt_in_progress",
    "severe_intoxication",
    "officer_requested",
    "imminent_risk",
)
"""Any of these ``true`` keeps the call with 911, in every valid policy."""

DEFAULT_RING_TIMEOUT_S = 20
"""Vibrant's national-backup goal: 95% answered within 20 s (DOMAIN.md)."""
MAX_HOP_LIMIT = 2
"""A caller speaks to at most three telecommunicators (560 CMR 5.10): the call-taker plus two."""

ExclusionFlag = Literal[
    "weapons",
    "violence",
    "medical_emergency",
    "attempt_in_progress",
    "severe_intoxication",
    "officer_requested",
    "imminent_risk",
]
ScreeningFlag = Literal[
    "weapons",
    "violence",
    "medical_emergency",
    "attempt_in_progress",
    "severe_intoxication",
    "officer_requested",
    "imminent_risk",
    "consent_to_transfer",
]
assert set(SCREENING_FLAGS) == set(MANDATORY_EXCLUSIONS) | {"consent_to_transfer"}

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
"""PSAP, destination and rule ids: lower-case letters, digits, ``.``, ``_``, ``-``."""
Org = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Language = Annotated[str, StringConstraints(pattern=BCP47, max_length=35)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA timezone name") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    local = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    if (parts.scheme == "https" or (parts.scheme == "http" and local)) and parts.hostname:
        return value
    raise ValueError("must be an https:// URL (http:// only for localhost)")


Timezone = Annotated[str, AfterValidator(_timezone)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


def language_matches(spoken: str, wanted: str) -> bool:
    """``es`` serves ``es-MX`` and the other way round: compare primary subtags."""
    return spoken.split("-")[0].lower() == wanted.split("-")[0].lower()


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Frozen):
    """Open on ``days`` from ``start`` (inclusive) to ``end`` (exclusive), local ``HH:MM``.

    ``end`` may be ``24:00``; it must come after ``start`` (a span across midnight is two
    windows).
    """

    days: tuple[Day, ...] = Field(min_length=1)
    start: str
    end: str

    @model_validator(mode="after")
    def _well_formed(self) -> Window:
        for label, clock in (("start", self.start), ("end", self.end)):
            if not _CLOCK.match(clock):
                raise ValueError(f"{label} {clock!r} must be HH:MM (00:00 to 24:00)")
        if _minutes(self.end) <= _minutes(self.start):
            raise ValueError(
                f"end {self.end} must be after start {self.start} "
                "(split a span across midnight into two windows)"
            )
        if len(set(self.days)) != len(self.days):
            raise ValueError("days must not repeat")
        return self

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return DAYS[local.weekday()] in self.days and _minutes(self.start) <= minute < _minutes(
            self.end
        )


class Psap(_Frozen):
    id: Id
    name: Name
    timezone: Timezone
    """IANA name; every schedule is evaluated in this PSAP's local time."""
    handback_number: E164
    """The line the gateway dials to reach a call-taker for a 988 → 911 handback."""
    cad_url: HttpUrl | None = None
    """Receives each handback's EIDO as a signed JSON POST; absent: EIDOs are only kept."""
    cad_secret_env: EnvName | None = None
    """Name of the environment variable holding the CAD signing secret (never the secret)."""
    fallback_destination: Id
    """Dialed by ``/twilio/fallback`` when the gateway cannot reach Redis."""

    @model_validator(mode="after")
    def _cad_secret_with_url(self) -> Psap:
        if self.cad_url is not None and self.cad_secret_env is None:
            raise ValueError("cad_url needs cad_secret_env (EIDOs to CAD are always signed)")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Destination(_Frozen):
    id: Id
    kind: DestinationKind
    name: Name
    number: E164
    org: Org
    """The organization whose API keys act for this destination."""
    languages: tuple[Language, ...] = Field(min_length=1)
    hours: tuple[Window, ...] | None = Field(default=None, min_length=1)
    """Weekly hours in the deciding PSAP's local time; absent: open 24/7."""
    max_concurrent: int | None = Field(default=None, ge=1, le=10_000)
    """Ringing plus connected transfers it takes at once; absent: no limit."""
    notify_url: HttpUrl | None = None
    """Receives the signed transfer context (screen pop) before the counselor answers."""
    notify_secret_env: EnvName | None = None
    """Name of the environment variable holding the signing secret (never the secret)."""

    @model_validator(mode="after")
    def _secret_with_url(self) -> Destination:
        if self.notify_url is not None and self.notify_secret_env is None:
            raise ValueError("notify_url needs notify_secret_env (notices are always signed)")
        return self

    def is_open(self, at: datetime, zone: ZoneInfo) -> bool:
        if self.hours is None:
            return True
        local = at.astimezone(zone)
        return any(window.contains(local) for window in self.hours)

    def speaks(self, language: str) -> bool:
        return any(language_matches(spoken, language) for spoken in self.languages)

    def ref(self) -> DestinationRef:
        return DestinationRef(id=self.id, kind=self.kind, name=self.name, number=self.number)


class Match(_Frozen):
    """When a rule applies. Every condition given must hold; an absent one matches anything."""

    caller_types: tuple[CallerType, ...] = ()
    """Any of these caller types."""
    tags: tuple[Tag, ...] = ()
    """Every one of these tags is on the request."""
    languages: tuple[Language, ...] = ()
    """The caller's language is one of these (primary subtag)."""
    screening: dict[ScreeningFlag, bool | None] = Field(default_factory=dict)
    """Each flag has exactly this answer. Never ``true`` for an exclusion flag."""
    while_open: tuple[Id, ...] = ()
    """Every one of these destinations is within its hours at the decision's instant."""

    @model_validator(mode="after")
    def _never_route_exclusions(self) -> Match:
        routed = [f for f, v in self.screening.items() if v is True and f in MANDATORY_EXCLUSIONS]
        if routed:
            raise ValueError(
                "a rule may not match on an exclusion flag being true ("
                + ", ".join(routed)
                + "): a call with an exclusion flag set always stays with 911"
            )
        return self


class Rule(_Frozen):
    id: Id
    description: str | None = Field(default=None, max_length=500)
    match: Match = Field(default_factory=Match)
    chain: tuple[Id, ...] = Field(min_length=1, max_length=10)
    """Destinations to try, in order (before hours, capacity and language preference)."""
    ring_timeout_s: int = Field(default=DEFAULT_RING_TIMEOUT_S, ge=5, le=600)
    """How long each destination rings (Twilio accepts 5 to 600 s)."""

    @model_validator(mode="after")
    def _distinct_chain(self) -> Rule:
        if len(set(self.chain)) != len(self.chain):
            raise ValueError("chain must not name a destination twice")
        return self


class Policy(_Frozen):
    exclusions: tuple[ExclusionFlag, ...]
    """Flags that, when ``true``, keep the call with 911. Must list every mandatory one."""
    required_screening: tuple[ExclusionFlag, ...] = ()
    """Flags that must have been asked: ``null`` keeps the call with 911."""
    require_consent: bool = True
    """``consent_to_transfer`` must be ``true``."""
    hop_limit: int = Field(ge=1, le=MAX_HOP_LIMIT)
    """``transfers_so_far`` at or above this keeps the call with 911."""
    rules: tuple[Rule, ...] = Field(min_length=1, max_length=200)
    """Tried in order; the first that matches chooses the chain."""

    @model_validator(mode="after")
    def _gate_is_complete(self) -> Policy:
        missing = [flag for flag in MANDATORY_EXCLUSIONS if flag not in self.exclusions]
        if missing:
            raise ValueError(
                "exclusions must list every mandatory exclusion flag; missing: "
                + ", ".join(missing)
            )
        for label, flags in (
            ("exclusions", self.exclusions),
            ("required_screening", self.required_screening),
        ):
            if len(set(flags)) != len(flags):
                raise ValueError(f"{label} must not repeat a flag")
        return self


class PolicyDocument(_Frozen):
    """Everything routing needs, as one document (one live version in Redis)."""

    psaps: tuple[Psap, ...] = Field(min_length=1)
    destinations: tuple[Destination, ...] = Field(min_length=1)
    policy: Policy

    def psap(self, psap_id: str) -> Psap | None:
        return next((p for p in self.psaps if p.id == psap_id), None)

    def destination(self, destination_id: str) -> Destination | None:
        return next((d for d in self.destinations if d.id == destination_id), None)
