"""What a handback carries: the request a 988 center makes, the record, and the API's view.

Personal data — the location, the callback number, the risk summary, the counselor reference,
a contact note — lives only in the record (and the EIDO), expires with it, and is never logged
or put in a key or a conference name. The API's view of a handback shows its state and flags;
the PSAP and admins also get those fields and a one-line summary, so a call-taker can act
without CAD (DESIGN.md §9); the center that gave them does not get them back.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import phonenumbers
from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from gateway.core.paging import Page
from gateway.core.phone import E164, PhoneNumber
from gateway.handback.states import HandbackState

HANDBACK_ID_PATTERN = r"^hb_[0-9a-f]{24}$"
TRANSFER_ID_PATTERN = r"^tr_[0-9a-f]{24}$"
PSAP_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    """No control characters but tab and line breaks: the text goes into XML (PIDF-LO) and
    HTML notes in the EIDO, where a NUL is invalid, and onto call-takers' screens."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_printable),
]
"""Bounded free text (personal data: never logged)."""
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_printable),
]
Ref = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
]
"""The center's own reference for a counselor: free text, bounded (percent-encoded wherever
it becomes part of a URI)."""


class HandbackReason(StrEnum):
    IMMINENT_RISK = "imminent_risk"
    ATTEMPT_IN_PROGRESS = "attempt_in_progress"
    MEDICAL = "medical"
    CALLER_REQUEST = "caller_request"
    OTHER = "other"


class Flag(StrEnum):
    LOCATION_UNKNOWN = "location_unknown"
    """Neither an address nor coordinates: the EIDO asks the PSAP to locate the caller."""
    UNCONFIRMED = "unconfirmed"
    """No contact confirmation arrived within ``handback_confirm_timeout_s``."""
    NO_CONTACT = "no_contact"
    """The PSAP reported that emergency services could not reach the person."""
    CENTER_NOT_NOTIFIED = "center_not_notified"
    """A notice to the 988 center could not be delivered (no notify_url, or it failed)."""
    CAD_UNDELIVERED = "cad_undelivered"
    """CAD never took the EIDO after every retry (it is still kept for the PSAP)."""


class Location(BaseModel):
    """Where the person at risk is, as far as the counselor knows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: ShortText | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    description: Text | None = None

    @model_validator(mode="after")
    def _both_coordinates(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def known(self) -> bool:
        """An address or coordinates: something a PSAP can dispatch to."""
        return self.address is not None or self.has_coordinates


class Risk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    weapons: bool | None = None
    means_access: bool | None = None
    """The person has access to lethal means."""
    summary: Text | None = None
    """A short risk summary for the call-taker (personal data)."""


class HandbackRequest(BaseModel):
    """``POST /v1/handbacks`` (DESIGN.md §4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transfer_id: str | None = Field(default=None, pattern=TRANSFER_ID_PATTERN)
    """The transfer the call came through, when it came through the gateway."""
    psap_id: str | None = Field(default=None, pattern=PSAP_ID_PATTERN)
    """The PSAP to hand back to, when there is no transfer."""
    reason: HandbackReason
    location: Location | None = None
    callback_number: PhoneNumber | None = None
    """Defaults to the transfer's callback number. E.164, or a national number of the PSAP's
    country (the transfer's PSAP, or ``psap_id``); kept and answered in E.164."""
    risk: Risk = Field(default_factory=Risk)
    """``null`` is taken as no risk information (all unknown)."""
    counselor_ref: Ref | None = None
    """The center's own reference for the counselor (an id, preferably not a name)."""

    @field_validator("risk", mode="before")
    @classmethod
    def _no_risk_info(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _transfer_or_psap(self) -> HandbackRequest:
        if self.transfer_id is None and self.psap_id is None:
            raise ValueError("give transfer_id (the call came through the gateway) or psap_id")
        return self


class ContactRequest(BaseModel):
    """``POST /v1/handbacks/{id}/contact``: did emergency services reach the person?"""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    contact_made: bool = Field(
        default=True,
        validation_alias=AliasChoices("contact_made", "made_contact", "contact", "contacted"),
    )
    """Emergency services reached the person (``false``: they could not). Posting to
    ``…/contact`` with no body says they did."""
    note: Text | None = None
    at: AwareDatetime | None = None
    """When contact was made (or given up on); now when absent."""


class Contact(BaseModel):
    contact_made: bool
    at: AwareDatetime
    recorded_at: AwareDatetime
    note: str | None = None


AttemptOutcome = Literal["answered", "busy", "no_answer", "failed", "timeout"]


class HandbackAttempt(BaseModel):
    """One dial of the PSAP's handback line. ``outcome`` is ``None`` while it rings."""

    started_at: AwareDatetime
    outcome: AttemptOutcome | None = None
    ended_at: AwareDatetime | None = None


class Notice(BaseModel):
    """A notice to the 988 center: whether it was delivered."""

    delivered: bool
    at: AwareDatetime
    error: str | None = None


Mode = Literal["live", "data"]
CadStatus = Literal["pending", "delivered", "kept", "failed"]

_PLAIN = frozenset({"state", "version", "created_at", "updated_at"})
_SKIP = frozenset({"eido", "tx"})
"""Fields read elsewhere (the EIDO) or by the scripts alone (``tx``, the last write's token)."""
NOTICE_PREFIX = "notice_"


class Handback(BaseModel):
    """A handback as stored."""

    id: str
    state: HandbackState
    version: int
    mode: Mode
    psap_id: str
    transfer_id: str | None = None
    center_org: str
    caller_type: str = "unknown"
    """The caller type of the transfer handed back (``unknown`` without one): for reports."""
    report_day: str | None = None
    """The PSAP-local date the handback was made: its report counters count on that day."""
    destination_id: str | None = None
    """The center's destination involved (the transfer's connected one): where notices go."""
    reason: HandbackReason
    location: Location | None = None
    callback_number: str | None = None
    risk: Risk = Field(default_factory=Risk)
    counselor_ref: str | None = None
    eido_id: str
    attempts: list[HandbackAttempt] = Field(default_factory=list)
    failure: str | None = None
    """Why a failed handback failed when it was not the line (``call_ended``: the caller's
    call was over before a dial attempt)."""
    created_at: AwareDatetime
    updated_at: AwareDatetime
    connected_at: AwareDatetime | None = None
    bridge_expires_at: AwareDatetime | None = None
    bridge_code_digest: str | None = None
    bridge_call_sid: str | None = None
    contact: Contact | None = None
    unconfirmed_at: AwareDatetime | None = None
    notices: dict[str, Notice] = Field(default_factory=dict)
    cad_mode: Literal["send", "keep"] = "keep"
    cad_delivered_at: AwareDatetime | None = None
    cad_failed_at: AwareDatetime | None = None
    cad_attempts: int = 0

    @property
    def current_attempt(self) -> HandbackAttempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def location_known(self) -> bool:
        return self.location is not None and self.location.known

    @property
    def flags(self) -> list[Flag]:
        flags = []
        if not self.location_known:
            flags.append(Flag.LOCATION_UNKNOWN)
        if self.unconfirmed_at is not None and self.contact is None:
            flags.append(Flag.UNCONFIRMED)  # until a (late) confirmation arrives
        if self.contact is not None and not self.contact.contact_made:
            flags.append(Flag.NO_CONTACT)
        if any(not n.delivered for n in self.notices.values()):
            flags.append(Flag.CENTER_NOT_NOTIFIED)
        if self.cad_failed_at is not None:
            flags.append(Flag.CAD_UNDELIVERED)
        return flags

    @property
    def cad_status(self) -> CadStatus:
        if self.cad_delivered_at is not None:
            return "delivered"
        if self.cad_failed_at is not None:
            return "failed"
        return "pending" if self.cad_mode == "send" else "kept"

    @classmethod
    def from_redis(cls, handback_id: str, raw: dict[str, str]) -> Self:
        data: dict[str, Any] = {"id": handback_id}
        notices: dict[str, Any] = {}
        for field, value in raw.items():
            if field in _SKIP:
                continue
            decoded = value if field in _PLAIN else json.loads(value)
            if field.startswith(NOTICE_PREFIX):
                notices[field.removeprefix(NOTICE_PREFIX)] = decoded
            else:
                data[field] = decoded
        data["notices"] = notices
        return cls.model_validate(data)


class CadView(BaseModel):
    status: CadStatus
    """``kept``: the PSAP has no CAD endpoint; the EIDO waits at ``GET …/eido``."""
    attempts: int
    delivered_at: AwareDatetime | None = None


class AttemptView(BaseModel):
    started_at: AwareDatetime
    outcome: AttemptOutcome | None = None
    ended_at: AwareDatetime | None = None


class HandbackView(BaseModel):
    """``GET /v1/handbacks/{id}``, and the 201 of ``POST /v1/handbacks``."""

    id: str
    state: HandbackState
    mode: Mode
    """``live``: the PSAP is dialed into the caller's gateway conference; ``data``: no live
    gateway call, a bridge code lets the center conference in."""
    flags: list[Flag]
    transfer_id: str | None
    psap_id: str
    reason: HandbackReason
    eido_id: str
    attempts: list[AttemptView]
    contact: Contact | None = None
    notices: dict[str, Notice] = Field(default_factory=dict)
    """Notices to the 988 center by kind (``failed``, ``contact``, ``unconfirmed``)."""
    cad: CadView
    created_at: AwareDatetime
    updated_at: AwareDatetime
    connected_at: AwareDatetime | None = None
    unconfirmed_at: AwareDatetime | None = None
    bridge_expires_at: AwareDatetime | None = None
    bridge_number: str | None = None
    """Only in the 201 of a data-only handback."""
    bridge_code: str | None = None
    """Only in the 201 of a data-only handback: key it in on the bridge line."""
    # What a call-taker needs to act without CAD (DESIGN.md §9): shown to the PSAP (its own
    # handbacks) and admins, left out for the crisis center (``READABLE_FIELDS``).
    location: Location | None = None
    """Where the person is, as the counselor gave it (``null``: unknown)."""
    callback_number: E164 | None = None
    """E.164."""
    risk: Risk | None = None
    counselor_ref: str | None = None
    summary: str | None = None
    """One readable line: reason · place (or ``location unknown``) · callback number in
    international format · weapons: yes/no/unknown (· lethal means: yes/no when known), e.g.
    ``imminent risk · 500 Example Ave, Kent · +1 206-555-0123 · weapons: no``."""

    @classmethod
    def of(cls, handback: Handback, *, readable: bool = False, **extra: Any) -> HandbackView:
        """The view of ``handback``; with ``readable``, also the fields a call-taker acts on
        (``READABLE_FIELDS``)."""
        if readable:
            extra = {
                "location": handback.location,
                "callback_number": handback.callback_number,
                "risk": handback.risk,
                "counselor_ref": handback.counselor_ref,
                "summary": summary(handback),
                **extra,
            }
        return cls(
            id=handback.id,
            state=handback.state,
            mode=handback.mode,
            flags=handback.flags,
            transfer_id=handback.transfer_id,
            psap_id=handback.psap_id,
            reason=handback.reason,
            eido_id=handback.eido_id,
            attempts=[AttemptView(**a.model_dump()) for a in handback.attempts],
            contact=handback.contact,
            notices=handback.notices,
            cad=CadView(
                status=handback.cad_status,
                attempts=handback.cad_attempts,
                delivered_at=handback.cad_delivered_at,
            ),
            created_at=handback.created_at,
            updated_at=handback.updated_at,
            connected_at=handback.connected_at,
            unconfirmed_at=handback.unconfirmed_at,
            bridge_expires_at=handback.bridge_expires_at,
            **extra,
        )


class HandbackPage(Page[HandbackView]):
    """``GET /v1/handbacks``: newest first, each as ``GET /v1/handbacks/{id}`` shows it to the
    same key (bridge codes never listed)."""


READABLE_FIELDS = frozenset({"location", "callback_number", "risk", "counselor_ref", "summary"})
"""The fields of ``HandbackView`` only the PSAP and admins see (the center gave them)."""


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _place(location: Location | None) -> str:
    if location is None or not location.known:
        return "location unknown"
    if location.address is not None:
        return " ".join(location.address.split())  # one line, whatever the center sent
    return f"{location.lat:.5f}, {location.lon:.5f}"


def _phone(number: str | None) -> str:
    if number is None:
        return "no callback number"
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def summary(handback: Handback) -> str:
    """One readable line for a call-taker (DESIGN.md §9), e.g. ``imminent risk · 500 Example
    Ave, Kent · +1 206-555-0123 · weapons: no``: the reason, the address (else coordinates,
    else ``location unknown``), the callback number in international format (else ``no
    callback number``), weapons yes/no/unknown, and lethal means when known."""
    parts = [
        handback.reason.value.replace("_", " "),
        _place(handback.location),
        _phone(handback.callback_number),
        f"weapons: {_yes_no(handback.risk.weapons)}",
    ]
    if handback.risk.means_access is not None:
        parts.append(f"lethal means: {_yes_no(handback.risk.means_access)}")
    return " · ".join(parts)
