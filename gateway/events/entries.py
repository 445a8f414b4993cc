"""The live events stream's entries: how a write publishes one, and how a reader shows it.

One Redis Stream (``gateway.core.keys.EVENTS``) holds every change a console may follow. A
store publishes an event by adding an ``xadd`` op (``gateway/core/lua/lib.lua``) to the very
script call that makes the change, so a change and its event land together or not at all, in
the order Redis applied them; the stream's entry ids (``<ms>-<seq>``) increase and are the
``id:`` of the Server-Sent Event (``GET /v1/events``, DESIGN.md §9).

An entry is flat string fields: ``type``, ``at`` and the subject's id given by the writer, and
fields copied from the record as the script left it (``state``, ``version``; JSON-encoded
ones under a ``j:`` prefix). Some fields only scope who may see it (``orgs``, ``center_org``)
and never reach a client. No entry holds personal data: no phone number, address or free text.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.core import keys
from gateway.core.auth import Principal, Role
from gateway.core.records import Ops, text
from gateway.core.timers import to_ms

log = logging.getLogger(__name__)

KEEP_S = 2 * 3600
"""Events are kept at least this long (``MINID ~``: Redis trims whole blocks, so a little
more): a console reconnecting with ``Last-Event-ID`` within the hour gets all it missed
(DESIGN.md §9 asks for at least the last hour)."""
MAXLEN = 200_000
"""Hard cap on the stream (``MAXLEN ~``) whatever the rate: about 60 MB at most. Only a burst
of more than this many changes in ``KEEP_S`` cuts into the last two hours."""


class EventType(StrEnum):
    """What an event reports; integrators match on the strings (DESIGN.md §9)."""

    TRANSFER_CREATED = "transfer.created"
    """A transfer was opened (``awaiting_bridge``) or recorded as kept with 911."""
    TRANSFER_STATE = "transfer.state"
    """A transfer moved (or stayed, e.g. a call-taker's release): ``state``, ``attempt``,
    ``destination_id`` (the attempt's destination)."""
    HANDBACK_CREATED = "handback.created"
    HANDBACK_STATE = "handback.state"
    HANDBACK_FLAG = "handback.flag"
    """A flag was raised on a handback: ``flag`` (``unconfirmed``, ``no_contact``,
    ``center_not_notified``, ``cad_undelivered``)."""
    HANDBACK_CONTACT = "handback.contact"
    """The PSAP recorded whether emergency services made contact: ``contact_made``."""
    POLICY_CHANGED = "policy.changed"
    """A new routing policy version is live: ``version``, ``action``, ``actor``."""
    STREAM_RESET = "stream.reset"
    """Sent by the server only: the ``Last-Event-ID`` given is older than what is kept, or was
    never issued; what follows is live events only. Refetch state with the list endpoints."""


TRANSFER_COPIES = {
    "state": "state",
    "version": "version",
    "j:attempts": "attempts",
    "j:orgs": "destination_orgs",
}
"""Record fields a transfer event carries (``attempts`` gives ``attempt`` and
``destination_id``; ``destination_orgs`` scopes it to the chain's orgs)."""
HANDBACK_COPIES = {
    "state": "state",
    "version": "version",
    "j:psap_id": "psap_id",
    "j:center_org": "center_org",
    "j:transfer_id": "transfer_id",
}


def min_id(now: datetime, keep_s: int = KEEP_S) -> str:
    """The stream id before which entries may be trimmed (``MINID``)."""
    return f"{to_ms(now) - keep_s * 1000}-0"


def publish(
    ops: Ops,
    kind: EventType,
    *,
    now: datetime,
    fields: Mapping[str, str],
    copies: Mapping[str, str],
) -> None:
    """Add to ``ops`` the op that appends a ``kind`` event to the stream in the same script
    call: ``fields`` as given (strings), ``copies`` (entry field → record field) read from the
    record (``KEYS[1]``) after the call's writes."""
    entry = {"type": str(kind), "at": now.isoformat(), **fields}
    ops.add("xadd", keys.EVENTS, MAXLEN, min_id(now), entry, dict(copies))


def publish_transfer(
    ops: Ops, kind: EventType, transfer_id: str, *, psap_id: str, actor: str, now: datetime
) -> None:
    fields = {"transfer_id": transfer_id, "psap_id": psap_id}
    if actor:
        fields["actor"] = actor
    publish(ops, kind, now=now, fields=fields, copies=TRANSFER_COPIES)


def publish_handback(
    ops: Ops,
    kind: EventType,
    handback_id: str,
    *,
    actor: str,
    now: datetime,
    extra: Mapping[str, str] | None = None,
) -> None:
    fields = {"handback_id": handback_id, **(extra or {})}
    if actor:
        fields["actor"] = actor
    publish(ops, kind, now=now, fields=fields, copies=HANDBACK_COPIES)


HandbackNews = tuple[EventType, Mapping[str, str]]
"""An event a handback write publishes: its type and extra fields (``flag``, ...)."""


# ---- reading ---------------------------------------------------------------------------------

_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_ID_PART_MAX = 2**64 - 1
"""Each part of a Redis stream id is an unsigned 64-bit number."""


def parse_id(value: str) -> tuple[int, int] | None:
    """A stream id as ``(ms, seq)`` to compare, or None when ``value`` is not one."""
    match = _ID.match(value.strip())
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > _ID_PART_MAX or seq > _ID_PART_MAX:  # Redis refuses it: not an id it could issue
        return None
    return ms, seq


_PUBLIC_SCALARS = (
    "type",
    "at",
    "transfer_id",
    "handback_id",
    "psap_id",
    "state",
    "version",
    "action",
    "flag",
    "actor",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One stream entry: its id, what a client sees (``data``) and who may see it."""

    id: str
    data: dict[str, Any]
    psap_id: str | None = None
    orgs: frozenset[str] = field(default_factory=frozenset)
    """Transfers: the orgs acting for the chain's destinations. Handbacks: the center's."""

    @property
    def key(self) -> tuple[int, int]:
        return parse_id(self.id) or (0, 0)

    @classmethod
    def from_entry(cls, entry_id: str, raw: Mapping[str, str]) -> Event:
        """The event an entry holds; one that cannot be read (written by another release,
        say) is an event nobody sees (empty ``data``), so the reader still moves past it."""
        try:
            return cls._read(entry_id, raw)
        except (ValueError, TypeError, AttributeError, IndexError):
            log.warning("unreadable event skipped", extra={"event_id": entry_id})
            return cls(entry_id, {})

    @classmethod
    def _read(cls, entry_id: str, raw: Mapping[str, str]) -> Event:
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name.startswith("j:"):
                try:
                    values[name[2:]] = json.loads(value)
                except ValueError:
                    values[name[2:]] = None
            else:
                values[name] = value
        kind = str(values.get("type", ""))
        data: dict[str, Any] = {}
        for name in _PUBLIC_SCALARS:
            if name in values and values[name] is not None:
                data[name] = values[name]
        if "version" in data:
            data["version"] = int(data["version"])
        orgs: frozenset[str] = frozenset()
        if kind.startswith("transfer."):
            attempts = values.get("attempts") or []
            data["attempt"] = len(attempts) or None
            data["destination_id"] = attempts[-1].get("destination_id") if attempts else None
            chain = values.get("orgs") or {}
            orgs = frozenset(str(org) for org in chain.values())
        elif kind.startswith("handback."):
            data.setdefault("transfer_id", None)
            if "contact_made" in values:
                data["contact_made"] = values["contact_made"] == "true"
            center = values.get("center_org")
            orgs = frozenset({str(center)}) if center else frozenset()
        psap_id = data.get("psap_id")
        return cls(entry_id, data, str(psap_id) if psap_id else None, orgs)

    def visible_to(self, principal: Principal) -> bool:
        """Who sees what (DESIGN.md §9): an admin everything; a PSAP its own transfers and
        handbacks; a crisis center the transfers whose chain names one of its destinations and
        its own handbacks; everyone the policy's changes."""
        kind = str(self.data.get("type", ""))
        if not kind:
            return False
        if principal.role is Role.ADMIN or kind == EventType.POLICY_CHANGED:
            return True
        if principal.role is Role.PSAP:
            return self.psap_id == principal.org
        return principal.org in self.orgs

    def sse(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))


def decode_entries(entries: Iterable[Any]) -> list[Event]:
    """``XRANGE`` / ``XREAD`` entries (bytes or str) as events."""
    out = []
    for entry_id, body in entries:
        raw = {text(k): text(v) for k, v in (body or {}).items()}
        out.append(Event.from_entry(text(entry_id), raw))
    return out
