"""Transfer state in Redis: create, read, transition, audit, webhook idempotency, dials.

Every write is one Lua call (``gateway/core/lua``, see ``gateway.core.records``) that checks the
guard before it writes anything, with its side effects — index sets, destination load, timers,
report counters — inside the same call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway.core import keys
from gateway.core.errors import Conflict, NotFound
from gateway.core.legs import read_legs, record_leg
from gateway.core.records import (
    Ops,
    Tally,
    claim_once,
    run_transition,
    text,
    write_token,
)
from gateway.core.scripts import source
from gateway.core.timers import Timer, to_ms
from gateway.transfer.models import Transfer
from gateway.transfer.states import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    TransferEvent,
    TransferState,
)


@dataclass(frozen=True, slots=True)
class Transition:
    """A transfer's state and version after a write."""

    state: TransferState
    version: int


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


REDEEMED_TTL_S = 60
"""How long a redeemed bridge code remembers the call that redeemed it."""


@dataclass(frozen=True, slots=True)
class TransferScripts:
    """The transfer store's scripts, with the transfer's transition table. Every one is safe to
    repeat: a call that redis-py retries on a fresh connection (its reply lost) changes nothing
    twice — the writes carry a token the script recognises (``gateway.core.records``)."""

    create: AsyncScript
    transition: AsyncScript
    claim: AsyncScript
    redeem_code: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> TransferScripts:
        def load(name: str) -> AsyncScript:
            return redis.register_script(source(name, TRANSITIONS, TERMINAL_STATES))

        return cls(
            create=load("create"),
            transition=load("transition"),
            claim=load("claim"),
            redeem_code=load("redeem_code"),
        )


class TransferStore:
    def __init__(
        self,
        redis: Redis,
        *,
        retention_s: int = 30 * 86_400,
        audit_maxlen: int = 1000,
    ) -> None:
        self.redis = redis
        self.scripts = TransferScripts.register(redis)
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
        ops = Ops([keys.transfer(transfer_id), keys.transfer_audit(transfer_id)])
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
        status, got_state, version = (text(v) for v in result)
        if status == "exists":
            raise TransitionConflict(transfer_id, TransferState(got_state), int(version))
        return Transition(TransferState(got_state), int(version))

    async def get(self, transfer_id: str) -> Transfer:
        raw = await self.redis.hgetall(keys.transfer(transfer_id))
        if not raw:
            raise TransferNotFound(transfer_id)
        return Transfer.from_redis(transfer_id, {text(k): text(v) for k, v in raw.items()})

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
        ops = Ops([keys.transfer(transfer_id), keys.transfer_audit(transfer_id)])
        on_terminal = Ops(ops.keys)  # applied by the script only if the new state is terminal
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
        return None if found is None else text(found)

    async def count_code_try(self, call_sid: str, ttl_s: int = 3600) -> int:
        """Count one wrong code on an inbound call; the count so far."""
        key = keys.call_code_tries(call_sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            count, _ = await pipe.execute()
        return int(count)

    async def set_leg(self, transfer_id: str, name: str, call_sid: str) -> bool:
        """Remember the call id of a leg (``attempt:<n>``), written once; True when new."""
        return await record_leg(
            self.redis, keys.transfer_legs(transfer_id), name, call_sid, self.retention_s
        )

    async def legs(self, transfer_id: str) -> dict[str, str]:
        return await read_legs(self.redis, keys.transfer_legs(transfer_id))

    async def audit(self, transfer_id: str) -> list[dict[str, str]]:
        entries = await self.redis.xrange(keys.transfer_audit(transfer_id)) or []
        return [{text(k): text(v) for k, v in (body or {}).items()} for _, body in entries]

    async def claim_event(self, transfer_id: str, identity: str, ttl_s: int = 86_400) -> bool:
        """True the first time ``identity`` is seen for the transfer, False for a repeat (a
        claim retried on a fresh connection after its reply was lost is still this caller's)."""
        return await claim_once(self.scripts.claim, keys.event_claim(transfer_id, identity), ttl_s)

    async def release_event(self, transfer_id: str, identity: str) -> None:
        """Forget a claimed event whose handling failed, so its retry is handled."""
        await self.redis.delete(keys.event_claim(transfer_id, identity))

    async def active_for_psap(self, psap_id: str) -> set[str]:
        members = await self.redis.smembers(keys.psap_active(psap_id))
        return {text(m) for m in members}

    async def destination_load(self, destination_ids: Iterable[str]) -> dict[str, int]:
        ids = list(destination_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for destination_id in ids:
                pipe.scard(keys.destination_active(destination_id))
            counts = await pipe.execute()
        return {d: int(c) for d, c in zip(ids, counts, strict=True)}


__all__ = [
    "IllegalTransition",
    "Tally",
    "Timer",
    "TransferNotFound",
    "TransferScripts",
    "TransferStore",
    "Transition",
    "TransitionConflict",
    "TransitionNotAllowed",
]
