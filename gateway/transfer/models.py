"""The transfer and the facts it carries, as the API shows them (DESIGN.md §3, §6)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter

from gateway.core.phone import E164
from gateway.core.records import STORE_FIELDS
from gateway.policy.decision import CallerType, Decision, Screening
from gateway.transfer.states import TransferState

if TYPE_CHECKING:
    from gateway.policy.service import LoadedPolicy

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

    def written(self, fields: Mapping[str, str], *, state: str, version: int, at: str) -> Self:
        """This transfer with a write applied to it: the store's ``fields`` (JSON-encoded, as
        ``encode_fields`` makes them), the new state, version and time. Only the written fields
        are read (each by its own type), not the whole record again."""
        update: dict[str, Any] = {
            "state": TransferState(state),
            "version": version,
            "updated_at": _AT.validate_python(at),
        }
        for name, value in fields.items():
            adapter = _field_adapter(name)
            if adapter is not None:
                update[name] = adapter.validate_json(value)
        return self.model_copy(update=update)


def recorded_org(loaded: LoadedPolicy, transfer: Transfer, destination_id: str) -> str | None:
    """The org that acted for ``destination_id`` when ``transfer`` was decided. (A transfer
    recorded before orgs were recorded falls back to the current policy.)"""
    if transfer.destination_orgs:
        return transfer.destination_orgs.get(destination_id)
    destination = loaded.document.destination(destination_id)
    return destination.org if destination is not None else None


_AT: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


@functools.cache
def _field_adapter(name: str) -> TypeAdapter[Any] | None:
    """A validator for one field of ``Transfer`` (None for a name it does not have)."""
    info = Transfer.model_fields.get(name)
    if info is None or info.annotation is None:
        return None
    return TypeAdapter(info.annotation)
