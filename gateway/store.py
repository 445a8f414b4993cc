"""Transfer state in Redis: create, read, transition, audit, webhook idempotency.

Every write is one Lua call (``gateway/lua``) that checks the guard before it writes anything.
Side effects that must never be lost with a transition — index sets, destination load, timers —
travel inside the same call as data (``_Ops``), so a transition and its effects land together or
not at all.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway import keys
from gateway.errors import Conflict, GatewayError, NotFound
from gateway.models import Transfer
from gateway.scripts import Scripts
from gateway.states import (
    TERMINAL_STATES,
    IllegalTransition,
    TransferEvent,
    TransferState,
)


class TransferNotFound(NotFound):
    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"transfer {transfer_id} not found")


class TransitionConflict(Conflict):
    """Another writer moved the transfer first: the expected state or version no longer holds."""

    def __init__(self, transfer_id: str, state: TransferState, version: int) -> None:
        super().__init__(
            f"transfer {transfer_id} is now {state} (version {version})",
            [{"state": str(state), "version": version}],
        )
        self.state = state
        self.version = version


class TransitionNotAllowed(Conflict):
    """The transition table does not allow the event in the transfer's state."""

    def __init__(self, transfer_id: str, state: TransferState, event: TransferEvent) -> None:
        super().__init__(
            f"{event} is not allowed while transfer {transfer_id} is {state}",
            [{"state": str(state), "event": str(event)}],
        )
        self.state = state
        self.event = event


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: at ``due``, whichever process claims it runs ``kind`` with ``payload``."""

    id: str
    due: datetime
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def encoded(self) -> str:
        return json.dumps({"kind": self.kind, **self.payload}, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Tally:
    """Report counters to bump in the same script call as a write (``gateway.reports``): each
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


@dataclass(frozen=True, slots=True)
class Transition:
    state: TransferState
    version: int


def to_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class _Ops:
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


class TransferStore:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        *,
        retention_s: int = 30 * 86_400,
        audit_maxlen: int = 1000,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.retention_s = retention_s
        self.audit_maxlen = audit_maxlen

    async def create(
        self,
        transfer_id: str,
        *,
        psap_id: str,
        state: TransferState,
        fields: Mapping[str, str],
        timers: Iterable[Timer] = (),
        tally: Tally | None = None,
        actor: str = "",
        now: datetime | None = None,
    ) -> Transition:
        """Record a new transfer in ``state`` (one of the initial states)."""
        now = now or datetime.now(UTC)
        ops = _Ops([keys.transfer(transfer_id), keys.transfer_audit(transfer_id)])
        index = keys.psap_transfers(psap_id)
        ops.add("zadd", index, to_ms(now), transfer_id)
        # The index names records that still exist: older entries expired with their records.
        ops.add("zremrangebyscore", index, "-inf", f"({to_ms(now) - self.retention_s * 1000}")
        ops.tally(tally)
        if state not in TERMINAL_STATES:
            ops.add("sadd", keys.psap_active(psap_id), transfer_id)
        ops.arm(timers)
        result = await self.scripts.create(
            keys=ops.keys,
            args=[
                str(state),
                now.isoformat(),
                self.retention_s,
                self.audit_maxlen,
                json.dumps({"psap_id": json.dumps(psap_id), **fields}),
                ops.encoded(),
                json.dumps({"actor": actor}),
                write_token(),
            ],
        )
        status, got_state, version = (_text(v) for v in result)
        if status == "exists":
            raise TransitionConflict(transfer_id, TransferState(got_state), int(version))
        return Transition(TransferState(got_state), int(version))

    async def get(self, transfer_id: str) -> Transfer:
        raw = await self.redis.hgetall(keys.transfer(transfer_id))
        if not raw:
            raise TransferNotFound(transfer_id)
        return Transfer.from_redis(transfer_id, {_text(k): _text(v) for k, v in raw.items()})

    async def transition(
        self,
        transfer_id: str,
        event: TransferEvent,
        *,
        psap_id: str,
        expected_state: TransferState | None = None,
        expected_version: int | None = None,
        fields: Mapping[str, str] | None = None,
        vacate: str | None = None,
        occupy: str | None = None,
        arm: Iterable[Timer] = (),
        disarm: Iterable[str] = (),
        void_code: str | None = None,
        tally: Tally | None = None,
        actor: str = "",
        audit: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> Transition:
        """Apply ``event`` in one Lua call.

        The guard (``expected_state``, ``expected_version``, the transition table) is checked
        before anything is written. ``vacate``/``occupy`` move the transfer between destinations'
        live-load sets; ``arm``/``disarm`` set and clear durable timers in the same call;
        ``void_code`` (a bridge code's digest) makes that code unusable; ``tally`` bumps report
        counters — all only if the guard holds.
        """
        now = now or datetime.now(UTC)
        ops = _Ops([keys.transfer(transfer_id), keys.transfer_audit(transfer_id)])
        on_terminal = _Ops(ops.keys)  # applied by the script only if the new state is terminal
        on_terminal.add("srem", keys.psap_active(psap_id), transfer_id)
        on_terminal.add("expire", keys.transfer_legs(transfer_id), self.retention_s)
        if void_code:
            ops.add("del", keys.bridge_code(void_code))
        if vacate:
            ops.add("srem", keys.destination_active(vacate), transfer_id)
        if occupy:
            ops.add("sadd", keys.destination_active(occupy), transfer_id)
        ops.arm(arm)
        ops.disarm(disarm)
        ops.tally(tally)
        answer = await run_transition(
            self.scripts.transition,
            ops,
            on_terminal,
            event=str(event),
            expected_state=str(expected_state or ""),
            expected_version=expected_version,
            fields=fields,
            actor=actor,
            audit=audit,
            now=now,
            retention_s=self.retention_s,
            audit_maxlen=self.audit_maxlen,
        )
        if answer.status == "not_found":
            raise TransferNotFound(transfer_id)
        state = TransferState(answer.state)
        if answer.status == "conflict":
            raise TransitionConflict(transfer_id, state, answer.version)
        if answer.status == "illegal":
            raise TransitionNotAllowed(transfer_id, state, event)
        return Transition(state, answer.version)

    async def issue_code(self, code_digest: str, transfer_id: str, ttl_s: int) -> bool:
        """Reserve a bridge code for a transfer; False if the code is already live."""
        return bool(
            await self.redis.set(keys.bridge_code(code_digest), transfer_id, nx=True, ex=ttl_s)
        )

    async def redeem_code(self, code_digest: str, call_sid: str) -> str | None:
        """The transfer a live bridge code belongs to, consuming the code; None if unknown.
        The same call redeeming it again within a minute gets the same transfer (a retried
        request must not turn a right code into a wrong one); any other call gets None."""
        found = await self.scripts.redeem_code(
            keys=[keys.bridge_code(code_digest), keys.bridge_code_redeemed(code_digest)],
            args=[call_sid or "-", REDEEMED_TTL_S],
        )
        return None if found is None else _text(found)

    async def count_code_try(self, call_sid: str, ttl_s: int = 3600) -> int:
        """Count one wrong code on an inbound call; the count so far."""
        key = keys.call_code_tries(call_sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            count, _ = await pipe.execute()
        return int(count)

    async def set_leg(self, transfer_id: str, name: str, call_sid: str) -> None:
        """Remember the call id of a leg (``attempt:<n>``) or the conference's id."""
        key = keys.transfer_legs(transfer_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, name, call_sid)
            pipe.expire(key, self.retention_s)
            await pipe.execute()

    async def legs(self, transfer_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(keys.transfer_legs(transfer_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def audit(self, transfer_id: str) -> list[dict[str, str]]:
        entries = await self.redis.xrange(keys.transfer_audit(transfer_id)) or []
        return [{_text(k): _text(v) for k, v in (body or {}).items()} for _, body in entries]

    async def claim_event(self, transfer_id: str, identity: str, ttl_s: int = 86_400) -> bool:
        """True the first time ``identity`` is seen for the transfer, False for a repeat (a
        claim retried on a fresh connection after its reply was lost is still this caller's)."""
        claimed = await self.scripts.claim(
            keys=[keys.event_claim(transfer_id, identity)], args=[write_token(), ttl_s * 1000]
        )
        return bool(claimed)

    async def claim_dial(
        self, transfer_id: str, attempt: int, token: str, *, lease_s: float
    ) -> DialClaim:
        """Take (or renew) the lease to dial ``attempt``, unless its leg is already recorded or
        another process's lease runs (``gateway/lua/dial_claim.lua``)."""
        status, value = (
            _text(v)
            for v in await self.scripts.dial_claim(
                keys=[
                    keys.transfer_legs(transfer_id),
                    keys.dial_lease(transfer_id, attempt),
                    keys.transfer_dials(transfer_id),
                ],
                args=[f"attempt:{attempt}", token, int(lease_s * 1000), self.retention_s],
            )
        )
        if status == "dialed":
            return DialClaim("dialed", call_sid=value)
        if status == "busy":
            return DialClaim("busy", lease_left_s=max(0, int(value)) / 1000)
        return DialClaim("claimed", claims=int(value))

    async def release_dial(self, transfer_id: str, attempt: int, token: str) -> None:
        """Give the dial lease back (a dial abandoned before it reached the provider), so the
        durable backup need not wait for it to lapse."""
        await self.scripts.release(keys=[keys.dial_lease(transfer_id, attempt)], args=[token])

    async def release_event(self, transfer_id: str, identity: str) -> None:
        """Forget a claimed event whose handling failed, so its retry is handled."""
        await self.redis.delete(keys.event_claim(transfer_id, identity))

    async def active_for_psap(self, psap_id: str) -> set[str]:
        members = await self.redis.smembers(keys.psap_active(psap_id))
        return {_text(m) for m in members}

    async def destination_load(self, destination_ids: Iterable[str]) -> dict[str, int]:
        ids = list(destination_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for destination_id in ids:
                pipe.scard(keys.destination_active(destination_id))
            counts = await pipe.execute()
        return {d: int(c) for d, c in zip(ids, counts, strict=True)}


REDEEMED_TTL_S = 60
"""How long a redeemed bridge code remembers the call that redeemed it."""


def write_token() -> str:
    """A fresh token for one script call: passed as an argument, it stays the same when redis-py
    retries the call on a fresh connection, so the script can tell its own earlier write."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class DialClaim:
    """What ``claim_dial`` found: ``dialed`` (the leg is recorded: ``call_sid``), ``busy``
    (another process dials now; its lease lapses in ``lease_left_s``) or ``claimed`` (this token
    dials; ``claims`` leases were ever taken for the attempt, this one included)."""

    status: Literal["dialed", "busy", "claimed"]
    call_sid: str | None = None
    lease_left_s: float = 0.0
    claims: int = 0


@dataclass(frozen=True, slots=True)
class ScriptAnswer:
    """What ``transition.lua`` said: ``ok``, ``not_found``, ``conflict`` or ``illegal``, with the
    record's state and version (the new ones for ``ok``)."""

    status: str
    state: str = ""
    version: int = 0


async def run_transition(
    script: AsyncScript,
    ops: _Ops,
    on_terminal: _Ops,
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
    """One call of a state machine's transition script (``gateway/lua/transition.lua``) on the
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
    status, *rest = (_text(v) for v in result)
    if status == "not_found":
        return ScriptAnswer(status)
    if status not in ("ok", "conflict", "illegal"):  # pragma: no cover - nothing else comes
        raise GatewayError(f"unexpected script answer {status!r}")
    return ScriptAnswer(status, rest[0], int(rest[1]))


@dataclass(frozen=True, slots=True)
class Written:
    """What a write-once (``gateway/lua/annotate.lua``) found: ``ok`` (written), ``not_found``,
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
    ops: _Ops,
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
    status, *rest = (_text(v) for v in result)
    if status == "not_found":
        return Written(status)
    return Written(status, rest[0], int(rest[1]), rest[2] if len(rest) > 2 else None)


def _text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


__all__ = [
    "DialClaim",
    "IllegalTransition",
    "ScriptAnswer",
    "Tally",
    "Timer",
    "TransferNotFound",
    "TransferStore",
    "Transition",
    "TransitionConflict",
    "TransitionNotAllowed",
    "Written",
    "run_transition",
    "write_once",
]
