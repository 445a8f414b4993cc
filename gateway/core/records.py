"""Records in Redis, whatever their state machine: one hash per record, its audit stream, and
the scripts that create it, move it and write on it once (``gateway/core/lua``).

Every write is one Lua call that checks its guard before it writes anything. Side effects that
must never be lost with a write — index sets, timers, report counters — travel inside the same
call as data (``Ops``), so a write and its effects land together or not at all. Every call
carries a token (``write_token``): redis-py sends a command again on a fresh connection after a
connection error, and a script that finds its own token already written answers as it did the
first time, changing nothing twice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from redis.commands.core import AsyncScript

from gateway.core import keys
from gateway.core.errors import GatewayError
from gateway.core.timers import Timer, to_ms

STORE_FIELDS = frozenset({"state", "version", "created_at", "updated_at", "tx"})
"""Hash fields the store writes as plain strings; every other field is JSON-encoded. (``tx`` is
the token of the last write, read only by the scripts: a retried write is recognised by it.)"""


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


@dataclass(frozen=True, slots=True)
class Tally:
    """Report counters to bump in the same script call as a write (``gateway.reports.counters``):
    each
    of ``fields`` by one in the PSAP's counters for ``day`` (PSAP-local ``YYYY-MM-DD``), and
    ``answers`` — (member, seconds) pairs — into that day's answer times."""

    psap_id: str
    day: str
    fields: tuple[str, ...] = ()
    answers: tuple[tuple[str, float], ...] = ()
    amount: int = 1
    when_set: str | None = None
    """Count only while the record written by the call already has this field set (checked
    inside the script, so it cannot race the write that sets it)."""


STATS_RETENTION_S = 2 * 366 * 86_400
"""How long report counters are kept: long past the records they count."""


class Ops:
    """Side effects for one script call: each names a key by its index in KEYS."""

    def __init__(self, base_keys: list[str]) -> None:
        self.keys = base_keys  # shared, so several op lists can name keys of one call
        self.ops: list[list[Any]] = []

    def _key(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 1  # Lua is 1-based

    def add(self, op: str, key: str, *args: Any) -> None:
        self.ops.append([op, self._key(key), *args])

    def arm(self, timers: Iterable[Timer]) -> None:
        for timer in timers:
            self.add("zadd", keys.TIMERS_DUE, to_ms(timer.due), timer.id)
            self.add("hset", keys.TIMERS_PAYLOAD, timer.id, timer.encoded())
            self.add("hdel", keys.TIMERS_LEASE, timer.id)

    def disarm(self, timer_ids: Iterable[str]) -> None:
        for timer_id in timer_ids:
            self.add("zrem", keys.TIMERS_DUE, timer_id)
            self.add("hdel", keys.TIMERS_PAYLOAD, timer_id)
            self.add("hdel", keys.TIMERS_LEASE, timer_id)

    def tally(self, *tallies: Tally | None, ttl_s: int = STATS_RETENTION_S) -> None:
        for tally in tallies:
            if tally is not None:
                self._tally(tally, ttl_s)

    def _tally(self, tally: Tally, ttl_s: int) -> None:
        counters = keys.stats_day(tally.psap_id, tally.day)
        for name in tally.fields:
            if tally.when_set is None:
                self.add("hincrby", counters, name, tally.amount)
            else:  # the record is always KEYS[1] of the call
                self.add("hincrby_if", counters, name, tally.amount, 1, tally.when_set)
        self.add("expire", counters, ttl_s)
        if tally.answers:
            answers = keys.answer_times(tally.psap_id, tally.day)
            for member, seconds in tally.answers:
                self.add("zadd", answers, repr(seconds), member)
            self.add("expire", answers, ttl_s)

    def encoded(self) -> str:
        return json.dumps(self.ops)


def write_token() -> str:
    """A fresh token for one script call: passed as an argument, it stays the same when redis-py
    retries the call on a fresh connection, so the script can tell its own earlier write.

    16 hex digits. Unique, not secret: drawn from ``random`` (seeded from the OS at start and
    again in each forked worker) rather than a system call per webhook."""
    return f"{random.getrandbits(64):016x}"


@dataclass(frozen=True, slots=True)
class ScriptAnswer:
    """What ``transition.lua`` said: ``ok``, ``not_found``, ``conflict`` or ``illegal``, with the
    record's state and version (the new ones for ``ok``) and the whole record as it now stands
    (``record``: its hash fields)."""

    status: str
    state: str = ""
    version: int = 0
    record: dict[str, str] = field(default_factory=dict)


async def run_transition(
    script: AsyncScript,
    ops: Ops,
    on_terminal: Ops,
    *,
    event: str,
    expected_state: str,
    expected_version: int | None,
    fields: Mapping[str, str] | None,
    actor: str,
    audit: Mapping[str, str] | None,
    now: datetime,
    retention_s: int,
    audit_maxlen: int,
) -> ScriptAnswer:
    """One call of a state machine's transition script (``gateway/core/lua/transition.lua``) on the
    record ``ops.keys[0]``; each store turns the answer into its own errors."""
    result = await script(
        keys=ops.keys,
        args=[
            event,
            expected_state,
            "" if expected_version is None else str(expected_version),
            now.isoformat(),
            retention_s,
            audit_maxlen,
            json.dumps(dict(fields or {})),
            ops.encoded(),
            json.dumps({"actor": actor, **(audit or {})}),
            on_terminal.encoded(),
            write_token(),
        ],
    )
    status, *rest = (text(v) for v in result)
    if status == "not_found":
        return ScriptAnswer(status)
    if status not in ("ok", "conflict", "illegal"):  # pragma: no cover - nothing else comes
        raise GatewayError(f"unexpected script answer {status!r}")
    flat = rest[2:]
    record = dict(zip(flat[::2], flat[1::2], strict=True))
    return ScriptAnswer(status, rest[0], int(rest[1]), record)


@dataclass(frozen=True, slots=True)
class Written:
    """What a write-once (``gateway/core/lua/annotate.lua``) found: ``ok`` (written), ``not_found``,
    ``exists`` (``field`` was already set) or ``state`` (the record's state forbids it)."""

    status: str
    state: str = ""
    version: int = 0
    field: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


async def write_once(
    script: AsyncScript,
    ops: Ops,
    *,
    event: str,
    fields: Mapping[str, str],
    guards: Iterable[str],
    states: Iterable[str] = (),
    actor: str = "",
    audit: Mapping[str, str] | None = None,
    audit_maxlen: int = 1000,
    now: datetime | None = None,
) -> Written:
    """Write ``fields`` on the record ``ops.keys[0]`` (audit stream ``ops.keys[1]``) in one Lua
    call — only while its state is one of ``states`` (any when empty) and no field of
    ``guards`` is set — with ``ops`` as side effects. Never a read-modify-write from Python."""
    now = now or datetime.now(UTC)
    result = await script(
        keys=ops.keys,
        args=[
            event,
            json.dumps([str(s) for s in states]),
            json.dumps(list(guards)),
            now.isoformat(),
            audit_maxlen,
            json.dumps(dict(fields)),
            ops.encoded(),
            json.dumps({"actor": actor, **(audit or {})}),
            write_token(),
        ],
    )
    status, *rest = (text(v) for v in result)
    if status == "not_found":
        return Written(status)
    return Written(status, rest[0], int(rest[1]), rest[2] if len(rest) > 2 else None)


def text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


async def claim_once(script: AsyncScript, key: str, ttl_s: int) -> bool:
    """True the first time ``key`` is claimed (``gateway/core/lua/claim.lua``), False for a
    repeat; a claim retried on a fresh connection after its reply was lost is still this
    caller's (its token)."""
    return bool(await script(keys=[key], args=[write_token(), ttl_s * 1000]))
