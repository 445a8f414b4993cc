"""The routing policy as frozen models: PSAPs, destinations, rules (DESIGN.md §2, §5).

A ``PolicyDocument`` is what ``config/`` holds and what ``GET/PUT /v1/admin/routing`` carries:
``{"psaps": [...], "destinations": [...], "policy": {...}}``. Field-level checks live here
(E.164 numbers, IANA timezones, well-formed schedules, the safety floor of one policy);
checks across sections (references between them) live in ``gateway.policy.loader``.

The safety floor (DESIGN.md §5, DOMAIN.md "the safety gate"): the engine's gate runs before any
rule, and no policy may loosen it —

- ``exclusions`` must list every one of ``MANDATORY_EXCLUSIONS``, and no rule may match on an
  exclusion flag being ``true`` (such a rule exists only to route an excluded call);
- ``required_screening`` must list every one of ``MANDATORY_SCREENING`` (it may list more);
- ``require_consent`` is ``CONSENT_REQUIRED`` (``true``);
- ``hop_limit`` is ``MIN_HOP_LIMIT`` to ``MAX_HOP_LIMIT`` (1 or 2).

A policy that would loosen any of these is rejected whole. Booleans in a policy are strict JSON
booleans everywhere (``StrictBool``): ``"no"``, ``"false"``, ``0``, ``1`` or ``"true"`` is an
error, never read as a boolean.

Every semantic check (the floor, repeats, schedules, signing secrets) runs on the raw input even
when other fields of the same object fail, and reports at the most precise location, e.g.
``policy.exclusions``, ``policy.required_screening`` or
``policy.rules.2.match.screening.weapons``: a bad ``ring_timeout_s`` never hides a rule that
routes an excluded call.

Languages: tags are compared in canonical form by their CLDR language-matching distance
(``language_distance``); a destination or a rule "speaks" a caller's language when the distance
is at most ``MATCH_DISTANCE``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import langcodes
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.core.phone import DEFAULT_REGION, MAX_LENGTH, Country, PhoneNumber, e164_field
from gateway.policy.decision import (
    BCP47,
    EXCLUSION_FLAGS,
    CallerType,
    DestinationKind,
    DestinationRef,
    ExclusionFlag,
    ScreeningFlag,
    known_language,
)

# -- the safety floor: no valid policy is looser (DESIGN.md §5) ----------------------------------

MANDATORY_EXCLUSIONS: tuple[str, ...] = EXCLUSION_FLAGS
"""Any of these ``true`` keeps the call with 911, in every valid policy: the list programs
converge on (DOMAIN.md "the safety gate": Houston CCD, Austin EMCOT, Dakota County, Seattle
CARE)."""
MANDATORY_SCREENING: tuple[ExclusionFlag, ...] = ("weapons", "violence", "medical_emergency")
"""Any of these ``null`` (not asked) keeps the call with 911, in every valid policy (a policy may
require more): the questions settled before a caller goes to a team that cannot dispatch police,
fire or EMS — Houston's "no weapon, no violence, no medical emergency" (DOMAIN.md: Houston CCD,
Austin EMCOT, Dakota County, Seattle CARE)."""
CONSENT_REQUIRED = True
"""``require_consent`` in every valid policy: the caller's consent is asked before the transfer,
and only ``consent_to_transfer`` ``true`` is transferred (DOMAIN.md: Cincinnati ECC 2024)."""
MIN_HOP_LIMIT = 1
"""The lowest ``hop_limit``: 1 means no call that was already transferred is transferred again."""
MAX_HOP_LIMIT = 2
"""A caller speaks to at most three telecommunicators (Massachusetts 560 CMR 5.10, DOMAIN.md):
the call-taker plus two."""

DEFAULT_RING_TIMEOUT_S = 20
"""Vibrant's national-backup goal: 95% answered within 20 s (DOMAIN.md)."""

MATCH_DISTANCE = 25
"""The largest CLDR language-matching distance at which a language still serves a caller: the
threshold ``langcodes.closest_match`` uses by default, from CLDR's languageMatching data
(Unicode TR35 part 6, "Language Matching"; ``es-419`` → ``es-MX`` is 4, ``yue`` → ``zh-HK`` 10,
``zh-HK`` → ``zh-CN`` 54, ``en`` → ``es`` 84)."""

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = get_args(Day)

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
"""PSAP, destination and rule ids: lower-case letters, digits, ``.``, ``_``, ``-``."""
Org = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Language = Annotated[
    str, StringConstraints(pattern=BCP47, max_length=35), AfterValidator(known_language)
]
"""A BCP 47 tag with registered subtags (``gateway.policy.decision.known_language``), as written."""
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


@functools.lru_cache(maxsize=4096)
def language_distance(wanted: str, spoken: str) -> int:
    """How well ``spoken`` (a destination's or a rule's tag) serves a caller who asked for
    ``wanted``: the CLDR language-matching distance (Unicode TR35 "Language Matching", as
    ``langcodes.tag_distance`` computes it), 0 for the same language once both tags are in
    canonical form (extlang and macrolanguage forms folded: ``zh-yue`` is ``yue``, ``cmn`` and
    ``zh-cmn-Hans`` are ``zh-CN``'s Mandarin), larger the worse; not symmetric (``yue`` →
    ``zh-HK`` is 10, ``zh-HK`` → ``yue`` 80).

    Both are BCP 47 tags as validated by ``gateway.policy.decision.known_language``; an unparseable
    tag
    raises ``langcodes.tag_parser.LanguageTagError``. Cached per pair: it is on the call path."""
    distance: int = langcodes.tag_distance(wanted, spoken)
    return distance


def language_matches(spoken: str, wanted: str) -> bool:
    """Whether ``spoken`` serves a caller who asked for ``wanted``: their CLDR distance
    (``language_distance``) is at most ``MATCH_DISTANCE`` — ``es`` serves ``es-MX`` and
    ``es-419``, ``zh-HK`` serves ``yue`` and ``zh-yue``, ``zh-CN`` serves ``cmn``; ``zh-CN``
    does not serve ``yue`` (64) nor ``zh-HK`` (54)."""
    return language_distance(wanted, spoken) <= MATCH_DISTANCE


def nearest_language(spoken: tuple[str, ...], wanted: str) -> tuple[str, int]:
    """The tag of ``spoken`` (non-empty) nearest to ``wanted`` and its ``language_distance``;
    the first listed of equally near tags."""
    return min(((tag, language_distance(wanted, tag)) for tag in spoken), key=lambda p: p[1])


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


# -- semantic checks ----------------------------------------------------------------------------
#
# A check reads the raw input (a dict, a list: whatever was given) and returns its problems, each
# at a location relative to the value checked. ``_validate_then_check`` runs pydantic's own
# validation and the check, and raises every error of both at once: an after-validator would be
# skipped whenever another field failed, and could only point at the whole object.

Loc = tuple[int | str, ...]
Problem = tuple[Loc, str, Any]
"""Where (relative to the checked value), what is wrong, and the offending input."""
Check = Callable[[Any], list[Problem]]

_T = TypeVar("_T")
_UNREADABLE = object()
_ANSWER: TypeAdapter[bool | None] = TypeAdapter(StrictBool | None)
_EXCLUSION: TypeAdapter[ExclusionFlag] = TypeAdapter(ExclusionFlag)
_DAY: TypeAdapter[Day] = TypeAdapter(Day)
_ID: TypeAdapter[str] = TypeAdapter(Id)


def _readable(adapter: TypeAdapter[Any], value: Any) -> Any:
    """``value`` as ``adapter`` reads it (as validation would), or ``_UNREADABLE``."""
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return _UNREADABLE


def _detail(error_type: str, loc: Loc, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(error_type, "{message}", {"message": message}),
        loc=loc,
        input=value,
    )


def _validate_then_check(
    title: str, raw: Any, handler: Callable[[Any], _T], checks: tuple[Check, ...]
) -> _T:
    """``handler(raw)`` when it succeeds and no check finds a problem; otherwise a
    ``ValidationError`` with every error of both, each at its own location."""
    failure: ValidationError | None = None
    try:
        result = handler(raw)
    except ValidationError as exc:
        failure = exc
    problems = [problem for check in checks for problem in check(raw)]
    if failure is None and not problems:
        return result
    details = [
        _detail(err["type"], tuple(err["loc"]), err["msg"], err["input"])
        for err in (failure.errors(include_url=False) if failure is not None else [])
    ]
    details.extend(_detail("policy_rule", loc, message, value) for loc, message, value in problems)
    raise ValidationError.from_exception_data(title, details)


def _checked(*checks: Check) -> WrapValidator:
    """A field validator running ``checks`` on the field's raw value, whatever else fails."""

    def validate(raw: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _validate_then_check("field", raw, handler, checks)

    return WrapValidator(validate)


def _sequence(raw: Any) -> list[Any]:
    return list(raw) if isinstance(raw, list | tuple) else []


def _fields(raw: Any) -> Mapping[str, Any]:
    """The raw fields of an object being validated (an instance was validated already)."""
    return raw if isinstance(raw, Mapping) else {}


def _no_repeats(adapter: TypeAdapter[Any], message: str) -> Check:
    """Each readable item at most once; a repeat is reported at its own index."""

    def check(raw: Any) -> list[Problem]:
        seen: set[Any] = set()
        problems: list[Problem] = []
        for index, item in enumerate(_sequence(raw)):
            value = _readable(adapter, item)
            if value is _UNREADABLE:
                continue  # its own error is reported
            if value in seen:
                problems.append(((index,), f"{message} ({value!r} again)", item))
            seen.add(value)
        return problems

    return check


def _lists_every(floor: tuple[str, ...], message: str) -> Check:
    """A list of flags naming every flag of ``floor`` (it may name more); what is missing is
    reported once, at the list."""

    def check(raw: Any) -> list[Problem]:
        if not isinstance(raw, list | tuple):
            return []  # not a list: its type error is reported
        listed = {_readable(_EXCLUSION, item) for item in raw}
        missing = [flag for flag in floor if flag not in listed]
        if not missing:
            return []
        return [((), f"{message}; missing: " + ", ".join(missing), raw)]

    return check


_mandatory_exclusions = _lists_every(
    MANDATORY_EXCLUSIONS, "exclusions must list every mandatory exclusion flag"
)
_mandatory_screening = _lists_every(
    MANDATORY_SCREENING,
    "required_screening must list every mandatory screening flag "
    f"({', '.join(MANDATORY_SCREENING)}; a policy may require more)",
)


def _consent_required(raw: Any) -> list[Problem]:
    """A boolean other than ``CONSENT_REQUIRED`` (that is, ``false``), with why; any other
    value fails as a non-boolean."""
    if isinstance(raw, bool) and raw is not CONSENT_REQUIRED:
        return [
            (
                (),
                "require_consent must be true: a caller is transferred only with "
                "consent_to_transfer true, under every policy",
                raw,
            )
        ]
    return []


def _no_routed_exclusions(raw: Any) -> list[Problem]:
    """A rule matching on an exclusion flag being ``true`` exists only to route an excluded
    call: reported at that flag, however the rest of the rule reads."""
    if not isinstance(raw, Mapping):
        return []
    return [
        (
            (flag,),
            f"a rule may not match on an exclusion flag being true ({flag}): "
            "a call with an exclusion flag set always stays with 911",
            answer,
        )
        for flag, answer in raw.items()
        if flag in MANDATORY_EXCLUSIONS and _readable(_ANSWER, answer) is True
    ]


def _secret_with_url(url_field: str, secret_field: str, why: str) -> Check:
    def check(raw: Any) -> list[Problem]:
        fields = _fields(raw)
        if fields.get(url_field) is not None and fields.get(secret_field) is None:
            return [((secret_field,), f"{url_field} needs {secret_field} ({why})", None)]
        return []

    return check


def _clock(value: str) -> str:
    if not _CLOCK.match(value):
        raise ValueError(f"{value!r} must be HH:MM (00:00 to 24:00)")
    return value


def _end_after_start(raw: Any) -> list[Problem]:
    fields = _fields(raw)
    start, end = fields.get("start"), fields.get("end")
    if not (isinstance(start, str) and isinstance(end, str)):
        return []
    if not (_CLOCK.match(start) and _CLOCK.match(end)):
        return []  # their own errors are reported
    if _minutes(end) <= _minutes(start):
        return [
            (
                ("end",),
                f"end {end} must be after start {start} "
                "(split a span across midnight into two windows)",
                end,
            )
        ]
    return []


Clock = Annotated[str, AfterValidator(_clock)]
"""Local wall-clock ``HH:MM``, ``00:00`` to ``24:00``."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Frozen):
    """Open on ``days`` from ``start`` (inclusive) to ``end`` (exclusive), local ``HH:MM``.

    ``end`` may be ``24:00``; it must come after ``start`` (a span across midnight is two
    windows).
    """

    days: Annotated[tuple[Day, ...], _checked(_no_repeats(_DAY, "days must not repeat"))] = Field(
        min_length=1
    )
    start: Clock
    end: Clock

    @model_validator(mode="wrap")
    @classmethod
    def _well_formed(cls, raw: Any, handler: Callable[[Any], Window]) -> Window:
        return _validate_then_check(cls.__name__, raw, handler, (_end_after_start,))

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
    country: Country = DEFAULT_REGION
    """ISO 3166 alpha-2 (default ``US``): national phone numbers for this PSAP — its
    ``handback_number`` here, ``callback_number`` in its requests — are read in this country's
    numbering plan (DESIGN.md §9)."""
    handback_number: str = Field(max_length=MAX_LENGTH)
    """The line the gateway dials to reach a call-taker for a 988 → 911 handback: E.164, or a
    national number of ``country``; kept in E.164."""
    cad_url: HttpUrl | None = None
    """Receives each handback's EIDO as a signed JSON POST; absent: EIDOs are only kept."""
    cad_secret_env: EnvName | None = None
    """Name of the environment variable holding the CAD signing secret (never the secret)."""
    fallback_destination: Id
    """Dialed by ``/twilio/fallback`` when the gateway cannot reach Redis."""

    @model_validator(mode="wrap")
    @classmethod
    def _cad_secret_with_url(cls, raw: Any, handler: Callable[[Any], Psap]) -> Psap:
        check = _secret_with_url("cad_url", "cad_secret_env", "EIDOs to CAD are always signed")
        return _validate_then_check(cls.__name__, raw, handler, (check,))

    @field_validator("handback_number")
    @classmethod
    def _number_in_country(cls, value: str, info: ValidationInfo) -> str:
        country = info.data.get("country")
        if country is None:  # the country itself is wrong, and reported
            return value
        return e164_field(value, country)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Destination(_Frozen):
    id: Id
    kind: DestinationKind
    name: Name
    number: PhoneNumber
    """E.164 (or a US national number); kept in E.164."""
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

    @model_validator(mode="wrap")
    @classmethod
    def _secret_with_url(cls, raw: Any, handler: Callable[[Any], Destination]) -> Destination:
        check = _secret_with_url("notify_url", "notify_secret_env", "notices are always signed")
        return _validate_then_check(cls.__name__, raw, handler, (check,))

    def is_open(self, at: datetime, zone: ZoneInfo) -> bool:
        if self.hours is None:
            return True
        local = at.astimezone(zone)
        return any(window.contains(local) for window in self.hours)

    def speaks(self, language: str) -> bool:
        """Whether one of its languages serves a caller asking for ``language`` (CLDR distance at
        most ``MATCH_DISTANCE``, see ``language_matches``)."""
        return any(language_matches(spoken, language) for spoken in self.languages)

    def nearest_language(self, language: str) -> tuple[str, int]:
        """Its language nearest to the caller's ``language``, and the CLDR distance."""
        return nearest_language(self.languages, language)

    def ref(self) -> DestinationRef:
        return DestinationRef(id=self.id, kind=self.kind, name=self.name, number=self.number)


class Match(_Frozen):
    """When a rule applies. Every condition given must hold; an absent one matches anything."""

    caller_types: tuple[CallerType, ...] = ()
    """Any of these caller types."""
    tags: tuple[Tag, ...] = ()
    """Every one of these tags is on the request."""
    languages: tuple[Language, ...] = ()
    """One of these serves the caller's language (CLDR distance at most ``MATCH_DISTANCE``, as
    for destinations: ``zh-HK`` matches a ``yue`` or ``zh-yue`` caller, ``zh`` a ``cmn`` one)."""
    screening: Annotated[
        dict[ScreeningFlag, StrictBool | None], _checked(_no_routed_exclusions)
    ] = Field(default_factory=dict)
    """Each flag has exactly this answer (a JSON boolean or ``null``). Never ``true`` for an
    exclusion flag."""
    while_open: tuple[Id, ...] = ()
    """Every one of these destinations is within its hours at the decision's instant."""


class Rule(_Frozen):
    id: Id
    description: str | None = Field(default=None, max_length=500)
    match: Match = Field(default_factory=Match)
    chain: Annotated[
        tuple[Id, ...], _checked(_no_repeats(_ID, "chain must not name a destination twice"))
    ] = Field(min_length=1, max_length=10)
    """Destinations to try, in order (before hours, capacity and language preference)."""
    ring_timeout_s: int = Field(default=DEFAULT_RING_TIMEOUT_S, ge=5, le=600)
    """How long each destination rings (Twilio accepts 5 to 600 s)."""


class Policy(_Frozen):
    exclusions: Annotated[
        tuple[ExclusionFlag, ...],
        _checked(
            _mandatory_exclusions, _no_repeats(_EXCLUSION, "exclusions must not repeat a flag")
        ),
    ]
    """Flags that, when ``true``, keep the call with 911. Must list every mandatory one."""
    required_screening: Annotated[
        tuple[ExclusionFlag, ...],
        _checked(
            _mandatory_screening,
            _no_repeats(_EXCLUSION, "required_screening must not repeat a flag"),
        ),
    ] = MANDATORY_SCREENING
    """Flags that must have been asked: ``null`` keeps the call with 911. Must list every
    mandatory one; absent: exactly those."""
    require_consent: Annotated[StrictBool, _checked(_consent_required)] = CONSENT_REQUIRED
    """``consent_to_transfer`` must be ``true``. Always ``true``: ``false`` is rejected."""
    hop_limit: StrictInt = Field(ge=MIN_HOP_LIMIT, le=MAX_HOP_LIMIT)
    """``transfers_so_far`` at or above this keeps the call with 911: 1 or 2."""
    rules: tuple[Rule, ...] = Field(min_length=1, max_length=200)
    """Tried in order; the first that matches chooses the chain."""


class PolicyDocument(_Frozen):
    """Everything routing needs, as one document (one live version in Redis)."""

    psaps: tuple[Psap, ...] = Field(min_length=1)
    destinations: tuple[Destination, ...] = Field(min_length=1)
    policy: Policy

    def psap(self, psap_id: str) -> Psap | None:
        return next((p for p in self.psaps if p.id == psap_id), None)

    def destination(self, destination_id: str) -> Destination | None:
        return next((d for d in self.destinations if d.id == destination_id), None)
