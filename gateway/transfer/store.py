"""Transfer state in Redis: create, read, transition, audit, webhook idempotency, dials.

Every write is one Lua call (``gateway/core/lua``, see ``gateway.core.records``) that checks the
guard before it writes anything, with its side effects — index sets, destination load, timers,
report counters — inside the same call.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from gateway.core import keys
from gateway.core.errors import Conflict, NotFound
from gateway.core.legs import read_legs, record_leg
from gateway.core.paging import DEFAULT_LIMIT, Found, Position, enter_in_indexes, read_page
from gateway.core.records import (
    Ops,
    Tally,
    run_transition,
    text,
    write_token,
)
from gateway.core.scripts import source
from gateway.core.timers import Timer, to_ms
from gateway.events.entries import EventType, publish_transfer
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


SEEN_SIZE = 5_000
"""Transfers one process remembers as it last saw them (a few KB each)."""
_TERMINAL = frozenset(str(state) for state in TERMINAL_STATES)


TRIES_TTL_S = 3600
"""How long an inbound call's wrong tries are counted."""


@dataclass(frozen=True, slots=True)
class Redeemed:
    """What a bridge code keyed in opens: ``owner`` (a handback's id, or a transfer's, then
    with ``transfer`` as this process knows it or as it was when the code was issued), or, for
    a code that opens nothing, ``tries``: wrong codes so far on the call."""

    owner: str | None = None
    transfer: Transfer | None = None
    tries: int = 0


class CodeTaken(Exception):
    """The bridge code drawn for a new transfer is live already (one in a million)."""


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
    redeem_code: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> TransferScripts:
        def load(name: str) -> AsyncScript:
            return redis.register_script(source(name, TRANSITIONS, TERMINAL_STATES))

        return cls(
            create=load("create"),
            transition=load("transition"),
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
        self._seen: OrderedDict[str, dict[str, str] | Transfer] = OrderedDict()

    # ---- what this process last saw -----------------------------------------------------

    def _remember(self, transfer_id: str, raw: Mapping[str, str]) -> None:
        """Keep the record as Redis just said it is, as its raw fields (read into a ``Transfer``
        when asked for). Raw fields are one object to the garbage collector, a ``Transfer``
        dozens: only live transfers are kept read, so full collections stay short."""
        self._seen[transfer_id] = dict(raw)
        self._seen.move_to_end(transfer_id)
        while len(self._seen) > SEEN_SIZE:
            self._seen.popitem(last=False)

    def seen(self, transfer_id: str) -> Transfer | None:
        """The transfer as this process last wrote or read it, if it remembers it. Never ahead
        of Redis (a record only moves forward, and only what Redis said is remembered), but
        possibly behind: a writer that acts on it guards its write with its version."""
        kept = self._seen.get(transfer_id)
        if kept is None or isinstance(kept, Transfer):
            return kept
        transfer = Transfer.from_redis(transfer_id, kept)
        if not transfer.state.terminal:
            self._seen[transfer_id] = transfer
        return transfer

    # ---- writes ----------------------------------------------------------------------------

    async def create(
        self,
        transfer_id: str,
        *,
        psap_id: str,
        state: TransferState,
        fields: Mapping[str, str],
        timers: Iterable[Timer] = (),
        tally: Tally | None = None,
        code: tuple[str, int] | None = None,
        destinations: Iterable[str] = (),
        orgs: Iterable[str] = (),
        actor: str = "",
        now: datetime | None = None,
    ) -> Transition:
        """Record a new transfer in ``state`` (one of the initial states), in one call; with
        ``code`` (a bridge code's digest, its time to live in s) the code is taken with it —
        ``CodeTaken`` when that code is live already (nothing written: draw another). The code
        maps to the record as created, so redeeming it needs no read (``redeem_code``).

        The same call enters the transfer in the list indexes (DESIGN.md §9): its PSAP's, the
        index of all transfers, and the indexes of the ``destinations`` its chain names and of
        the crisis-center ``orgs`` acting for them."""
        now = now or datetime.now(UTC)
        ops = Ops([keys.transfer(transfer_id), keys.transfer_audit(transfer_id)])
        indexes = [keys.psap_transfers(psap_id), keys.TRANSFERS_ALL]
        indexes += [keys.destination_transfers(d) for d in dict.fromkeys(destinations)]
        indexes += [keys.org_transfers(o) for o in dict.fromkeys(orgs)]
        for index in indexes:
            ops.add("zadd", index, to_ms(now), transfer_id)
            # An index names records that still exist: older entries expired with them.
            ops.add("zremrangebyscore", index, "-inf", f"({to_ms(now) - self.retention_s * 1000}")
        ops.tally(tally)
        if state not in TERMINAL_STATES:
            ops.add("sadd", keys.psap_active(psap_id), transfer_id)
        ops.arm(timers)
        publish_transfer(
            ops, EventType.TRANSFER_CREATED, transfer_id, psap_id=psap_id, actor=actor, now=now
        )
        token = write_token()
        stamp = now.isoformat()
        record = {
            "psap_id": json.dumps(psap_id),
            **fields,
            "state": str(state),
            "version": "1",
            "created_at": stamp,
            "updated_at": stamp,
            "tx": token,
        }
        code_args: list[str | int] = ["", "", ""]
        if code is not None:
            ops.keys.append(keys.bridge_code(code[0]))  # declared to Redis, by index
            code_args = [len(ops.keys), json.dumps({"id": transfer_id, "record": record}), code[1]]
        result = await self.scripts.create(
            keys=ops.keys,
            args=[
                str(state),
                stamp,
                self.retention_s,
                self.audit_maxlen,
                json.dumps({"psap_id": record["psap_id"], **fields}),
                ops.encoded(),
                json.dumps({"actor": actor}),
                "",
                "",
                "",
                token,
                *code_args,
            ],
        )
        status, *rest = (text(v) for v in result)
        if status == "code_taken":
            raise CodeTaken(transfer_id)
        if status == "exists":
            raise TransitionConflict(transfer_id, TransferState(rest[0]), int(rest[1]))
        self._remember(transfer_id, record)
        return Transition(state, 1)

    async def get(self, transfer_id: str, *, fresh: bool = True) -> Transfer:
        """The transfer as Redis holds it; with ``fresh=False``, as this process last saw it
        when it remembers it (``seen``), read otherwise."""
        if not fresh and (seen := self.seen(transfer_id)) is not None:
            return seen
        raw = await self.redis.hgetall(keys.transfer(transfer_id))
        if not raw:
            self._seen.pop(transfer_id, None)
            raise TransferNotFound(transfer_id)
        record = {text(k): text(v) for k, v in raw.items()}
        self._remember(transfer_id, record)
        return Transfer.from_redis(transfer_id, record)

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
        also: Callable[[Ops], None] | None = None,
        actor: str = "",
        audit: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> Transition:
        """Apply ``event`` in one Lua call.

        The guard (``expected_state``, ``expected_version``, the transition table) is checked
        before anything is written. ``vacate``/``occupy`` move the transfer between destinations'
        live-load sets; ``arm``/``disarm`` set and clear durable timers in the same call;
        ``void_code`` (a bridge code's digest) makes that code unusable; ``tally`` bumps report
        counters; ``also`` adds side effects of its own (a dial's lease) — all only if the
        guard holds.
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
        if also is not None:
            also(ops)
        publish_transfer(
            ops, EventType.TRANSFER_STATE, transfer_id, psap_id=psap_id, actor=actor, now=now
        )
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
            self._seen.pop(transfer_id, None)
            raise TransferNotFound(transfer_id)
        kept = self._seen.get(transfer_id)
        if (
            answer.status == "ok"
            and isinstance(kept, Transfer)
            and kept.version == answer.version - 1
            and answer.state not in _TERMINAL
        ):
            # The write landed right on the transfer as last seen: apply it here, reading
            # only the written fields (``Transfer.written``).
            self._seen[transfer_id] = kept.written(
                fields or {}, state=answer.state, version=answer.version, at=now.isoformat()
            )
            self._seen.move_to_end(transfer_id)
        elif answer.record:
            self._remember(transfer_id, answer.record)
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

    async def redeem_code(self, code_digest: str, call_sid: str) -> Redeemed:
        """A code keyed in on the bridge line, in one call: consumed, it names what it opens —
        a handback's id, or a transfer as recorded when the code was issued (enough to bridge
        it without reading it again: what a bridge needs of a transfer never changes) — and a
        wrong code counts one try on the call. The same call redeeming it again within a
        minute gets the same answer (a retried request must not turn a right code into a
        wrong one); any other call gets a wrong code."""
        status, value = (
            text(v)
            for v in await self.scripts.redeem_code(
                keys=[
                    keys.bridge_code(code_digest),
                    keys.bridge_code_redeemed(code_digest),
                    keys.call_code_tries(call_sid or "-"),
                ],
                args=[call_sid or "-", REDEEMED_TTL_S, TRIES_TTL_S, write_token()],
            )
        )
        if status == "wrong":
            return Redeemed(tries=int(value))
        if not value.startswith("{"):
            return Redeemed(owner=value)  # a handback's code
        issued = json.loads(value)
        transfer_id = str(issued["id"])
        transfer = self.seen(transfer_id) or Transfer.from_redis(transfer_id, issued["record"])
        return Redeemed(owner=transfer_id, transfer=transfer)

    async def new_code(
        self,
        transfer: Transfer,
        code: tuple[str, int],
        *,
        fields: Mapping[str, str],
        arm: Iterable[Timer] = (),
        actor: str = "",
        now: datetime | None = None,
    ) -> Transition:
        """Replace the bridge code of ``transfer`` (awaiting its bridge) by ``code`` (a fresh
        code's digest, its time to live in s), writing ``fields`` (its new digest and expiry)
        and re-arming ``arm`` (its expiry timer).

        The new code is taken first (``CodeTaken`` when it is live already: draw another),
        mapped to the record as it will stand, so redeeming it needs no read; then one
        transition call checks the state, writes, and deletes the old code — from then on the
        old code opens nothing. When the transition is refused (``TransitionConflict`` /
        ``TransitionNotAllowed``) the new code is given back. (Until the answer no one knows
        the new code, so taking it a moment early lets no one in.)"""
        now = now or datetime.now(UTC)
        digest, ttl_s = code
        raw = await self.redis.hgetall(keys.transfer(transfer.id))
        if not raw:
            raise TransferNotFound(transfer.id)
        record = {text(k): text(v) for k, v in raw.items()}
        record.update(fields)
        record["version"] = str(transfer.version + 1)
        issued = json.dumps({"id": transfer.id, "record": record})
        if not await self.redis.set(keys.bridge_code(digest), issued, nx=True, ex=ttl_s):
            raise CodeTaken(transfer.id)
        try:
            return await self.transition(
                transfer.id,
                TransferEvent.NEW_CODE,
                psap_id=transfer.psap_id,
                expected_state=TransferState.AWAITING_BRIDGE,
                expected_version=transfer.version,
                fields=fields,
                arm=arm,
                void_code=transfer.bridge_code_digest,
                actor=actor,
                now=now,
            )
        except BaseException:
            await self.redis.delete(keys.bridge_code(digest))
            raise

    async def many(self, transfer_ids: Sequence[str]) -> list[Transfer | None]:
        """The transfers as Redis holds them, with their legs' call ids as ``GET
        /v1/transfers/{id}`` shows them, in one round trip (None: the record is gone)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for transfer_id in transfer_ids:
                pipe.hgetall(keys.transfer(transfer_id))
                pipe.hgetall(keys.transfer_legs(transfer_id))
            replies = await pipe.execute()
        out: list[Transfer | None] = []
        for i, transfer_id in enumerate(transfer_ids):
            raw, legs = replies[2 * i], replies[2 * i + 1]
            if not raw:
                out.append(None)
                continue
            transfer = Transfer.from_redis(transfer_id, {text(k): text(v) for k, v in raw.items()})
            out.append(with_legs(transfer, {text(k): text(v) for k, v in legs.items()}))
        return out

    async def page(
        self,
        index: str,
        *,
        keep: Callable[[Transfer], bool] = lambda _: True,
        before: Position | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Found[Transfer]:
        """One page of a list index (``gateway.core.keys``: a PSAP's, a destination's, an
        org's, or all transfers), newest first (``gateway.core.paging.read_page``)."""
        return await read_page(
            self.redis, index, self.many, keep=keep, before=before, since=since, limit=limit
        )

    async def index_existing(self, psap_id: str, *, batch: int = 500) -> int:
        """Enter the PSAP's transfers (its own index has always been kept) in the other list
        indexes — all, per destination, per org — with their creation scores: for records
        made before those indexes existed. Safe to repeat; answers how many were entered."""

        def enter(pipe: Pipeline, transfer_id: str, score: float, orgs: bytes | str) -> None:
            pipe.zadd(keys.TRANSFERS_ALL, {transfer_id: score})
            for destination_id, org in json.loads(orgs).items():
                pipe.zadd(keys.destination_transfers(destination_id), {transfer_id: score})
                pipe.zadd(keys.org_transfers(org), {transfer_id: score})

        # A record without orgs expired, or was recorded before orgs were: the index keeps it.
        return await enter_in_indexes(
            self.redis,
            keys.psap_transfers(psap_id),
            keys.transfer,
            "destination_orgs",
            enter,
            batch=batch,
        )

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


def with_legs(transfer: Transfer, legs: Mapping[str, str]) -> Transfer:
    """``transfer`` with each attempt's leg call id from its legs hash (``attempt:<n>``) where
    the record has none yet."""
    if not legs or all(a.call_sid for a in transfer.attempts):
        return transfer
    attempts = [
        a if a.call_sid else a.model_copy(update={"call_sid": legs.get(f"attempt:{i}")})
        for i, a in enumerate(transfer.attempts, start=1)
    ]
    return transfer.model_copy(update={"attempts": attempts})


__all__ = [
    "CodeTaken",
    "IllegalTransition",
    "Redeemed",
    "Tally",
    "Timer",
    "TransferNotFound",
    "TransferScripts",
    "TransferStore",
    "Transition",
    "TransitionConflict",
    "TransitionNotAllowed",
    "with_legs",
]
