"""Handback state in Redis: the same scripts as transfers, generated from the handback table.

``create`` and ``transition`` are ``gateway/core/lua/create.lua`` and ``transition.lua`` with the
handback machine's header (``gateway.core.scripts.source``); ``annotate`` is the write-once script
(contact confirmation, the ``unconfirmed`` flag, notices, CAD delivery). Every key comes from
``gateway.core.keys`` and shares the handback's hash tag; the record and its audit trail expire a
retention period after creation whatever the state, so personal fields never outlive it.
"""

from __future__ import annotations

import json
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
    Written,
    claim_once,
    run_transition,
    text,
    write_once,
    write_token,
)
from gateway.core.scripts import source
from gateway.core.timers import Timer, to_ms
from gateway.events.entries import EventType, HandbackNews, publish_handback
from gateway.handback.models import Handback
from gateway.handback.states import TERMINAL_STATES, TRANSITIONS, HandbackEvent, HandbackState


class HandbackNotFound(NotFound):
    def __init__(self, handback_id: str) -> None:
        super().__init__(f"handback {handback_id} not found")


class HandbackConflict(Conflict):
    """Another writer moved the handback first."""

    def __init__(self, handback_id: str, state: HandbackState, version: int) -> None:
        super().__init__(
            f"handback {handback_id} is now {state} (version {version})",
            [{"state": str(state), "version": version}],
        )
        self.state = state
        self.version = version


class HandbackGuarded(Conflict):
    """The transfer already has a live handback: a second one would dial the PSAP again."""

    def __init__(self, transfer_id: str, live_handback_id: str) -> None:
        super().__init__(
            f"transfer {transfer_id} already has a live handback ({live_handback_id})",
            [{"handback_id": live_handback_id}],
        )
        self.live_handback_id = live_handback_id


class HandbackNotAllowed(Conflict):
    def __init__(self, handback_id: str, state: HandbackState, event: HandbackEvent) -> None:
        super().__init__(
            f"{event} is not allowed while handback {handback_id} is {state}",
            [{"state": str(state), "event": str(event)}],
        )


TRANSFER_GUARD_LUA = """
-- One live handback per transfer (prepended to create.lua, which then runs unchanged).
-- ARGV[8] index in KEYS of the transfer's handback guard ('' = no transfer), ARGV[9] the new
-- handback's id, ARGV[10] the guard's TTL s. Checked before anything is written.
if ARGV[8] ~= '' and redis.call('EXISTS', KEYS[1]) == 0 then
  local guard = KEYS[tonumber(ARGV[8])]
  local holder = redis.call('GET', guard)
  if holder then return {'guarded', holder, '0'} end
  redis.call('SET', guard, ARGV[9], 'EX', ARGV[10])
end
"""


@dataclass(frozen=True, slots=True)
class HandbackScripts:
    create: AsyncScript
    transition: AsyncScript
    annotate: AsyncScript
    claim: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> HandbackScripts:
        def load_source(name: str) -> str:
            return source(name, TRANSITIONS, TERMINAL_STATES)

        def load(name: str) -> AsyncScript:
            return redis.register_script(load_source(name))

        return cls(
            create=redis.register_script(TRANSFER_GUARD_LUA + load_source("create")),
            transition=load("transition"),
            annotate=load("annotate"),
            claim=load("claim"),
        )


class HandbackStore:
    def __init__(
        self, redis: Redis, *, retention_s: int = 30 * 86_400, audit_maxlen: int = 1000
    ) -> None:
        self.redis = redis
        self.scripts = HandbackScripts.register(redis)
        self.retention_s = retention_s
        self.audit_maxlen = audit_maxlen

    def _ops(self, handback_id: str) -> Ops:
        return Ops([keys.handback(handback_id), keys.handback_audit(handback_id)])

    async def create(
        self,
        handback_id: str,
        *,
        psap_id: str,
        state: HandbackState,
        fields: Mapping[str, str],
        eido: str,
        transfer_id: str | None = None,
        center_org: str | None = None,
        timers: Iterable[Timer] = (),
        outbox: bool = False,
        tally: Tally | None = None,
        news: Iterable[HandbackNews] = (),
        actor: str = "",
        now: datetime | None = None,
    ) -> None:
        """Record a new handback with its EIDO (as it will be sent), its timers and — when
        its PSAP has a CAD endpoint — its place in the CAD outbox, in one call. With a
        ``transfer_id``, only while that transfer has no live handback (``HandbackGuarded``
        naming the live one otherwise). The same call enters it in the list indexes: its
        PSAP's, all handbacks', and its ``center_org``'s (DESIGN.md §9). ``news``: events
        published after its creation (a flag it is made with)."""
        now = now or datetime.now(UTC)
        ops = self._ops(handback_id)
        record, audit = ops.keys[0], ops.keys[1]
        guard = ""
        if transfer_id is not None:
            ops.keys.append(keys.xfer_handback(transfer_id))  # declared to Redis, by index
            guard = str(len(ops.keys))
        indexes = [keys.psap_handbacks(psap_id), keys.HANDBACKS_ALL]
        if center_org is not None:
            indexes.append(keys.org_handbacks(center_org))
        for index in indexes:
            ops.add("zadd", index, to_ms(now), handback_id)
            # An index names records that still exist: older entries expired with them.
            ops.add("zremrangebyscore", index, "-inf", f"({to_ms(now) - self.retention_s * 1000}")
        if outbox:
            ops.add("zadd", keys.CAD_OUTBOX, to_ms(now), handback_id)
        ops.arm(timers)
        ops.tally(tally)
        ops.add("expire", record, self.retention_s)
        ops.add("expire", audit, self.retention_s)
        publish_handback(ops, EventType.HANDBACK_CREATED, handback_id, actor=actor, now=now)
        for kind, extra in news:  # after the creation: a flag it is made with (location)
            publish_handback(ops, kind, handback_id, actor=actor, now=now, extra=extra)
        result = await self.scripts.create(
            keys=ops.keys,
            args=[
                str(state),
                now.isoformat(),
                self.retention_s,
                self.audit_maxlen,
                json.dumps({"psap_id": json.dumps(psap_id), "eido": eido, **fields}),
                ops.encoded(),
                json.dumps({"actor": actor}),
                guard,
                handback_id,
                self.retention_s,
                write_token(),
            ],
        )
        status, got_state, version = (text(v) for v in result)
        if status == "guarded":
            assert transfer_id is not None
            raise HandbackGuarded(transfer_id, got_state)
        if status == "exists":  # pragma: no cover - ids are random
            raise HandbackConflict(handback_id, HandbackState(got_state), int(version))

    async def get(self, handback_id: str) -> Handback:
        raw = await self.redis.hgetall(keys.handback(handback_id))
        if not raw:
            raise HandbackNotFound(handback_id)
        return Handback.from_redis(handback_id, {text(k): text(v) for k, v in raw.items()})

    async def many(self, handback_ids: Sequence[str]) -> list[Handback | None]:
        """The handbacks as Redis holds them, in one round trip (None: the record is gone)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for handback_id in handback_ids:
                pipe.hgetall(keys.handback(handback_id))
            records = await pipe.execute()
        return [
            Handback.from_redis(handback_id, {text(k): text(v) for k, v in raw.items()})
            if raw
            else None
            for handback_id, raw in zip(handback_ids, records, strict=True)
        ]

    async def page(
        self,
        index: str,
        *,
        keep: Callable[[Handback], bool] = lambda _: True,
        before: Position | None = None,
        since: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Found[Handback]:
        """One page of a list index (``gateway.core.keys``: a PSAP's, a center org's, or all
        handbacks), newest first (``gateway.core.paging.read_page``)."""
        return await read_page(
            self.redis, index, self.many, keep=keep, before=before, since=since, limit=limit
        )

    async def index_existing(self, psap_id: str, *, batch: int = 500) -> int:
        """Enter the PSAP's handbacks (its own index has always been kept) in the index of
        all handbacks and their center org's, with their creation scores: for records made
        before those indexes existed. Safe to repeat; answers how many were entered."""

        def enter(pipe: Pipeline, handback_id: str, score: float, org: bytes | str) -> None:
            pipe.zadd(keys.HANDBACKS_ALL, {handback_id: score})
            pipe.zadd(keys.org_handbacks(json.loads(org)), {handback_id: score})

        # A record without its center org expired.
        return await enter_in_indexes(
            self.redis,
            keys.psap_handbacks(psap_id),
            keys.handback,
            "center_org",
            enter,
            batch=batch,
        )

    async def eido(self, handback_id: str) -> str:
        """The EIDO exactly as it is sent to CAD (JSON text)."""
        raw = await self.redis.hget(keys.handback(handback_id), "eido")
        if raw is None:
            raise HandbackNotFound(handback_id)
        return text(raw)

    async def transition(
        self,
        handback_id: str,
        event: HandbackEvent,
        *,
        expected_state: HandbackState,
        expected_version: int,
        fields: Mapping[str, str] | None = None,
        arm: Iterable[Timer] = (),
        disarm: Iterable[str] = (),
        void_code: str | None = None,
        transfer_id: str | None = None,
        actor: str = "",
        audit: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> HandbackState:
        """Apply ``event`` in one Lua call; a terminal state releases ``transfer_id``'s
        handback guard (this handback held it: a transfer has one live handback at most)."""
        now = now or datetime.now(UTC)
        ops = self._ops(handback_id)
        on_terminal = Ops(ops.keys)
        on_terminal.add("expire", keys.handback_legs(handback_id), self.retention_s)
        if transfer_id is not None:
            on_terminal.add("del", keys.xfer_handback(transfer_id))
        if void_code:
            ops.add("del", keys.bridge_code(void_code))
        ops.arm(arm)
        ops.disarm(disarm)
        publish_handback(ops, EventType.HANDBACK_STATE, handback_id, actor=actor, now=now)
        answer = await run_transition(
            self.scripts.transition,
            ops,
            on_terminal,
            event=str(event),
            expected_state=str(expected_state),
            expected_version=expected_version,
            fields=fields,
            actor=actor,
            audit=audit,
            now=now,
            retention_s=self.retention_s,
            audit_maxlen=self.audit_maxlen,
        )
        if answer.status == "not_found":
            raise HandbackNotFound(handback_id)
        state = HandbackState(answer.state)
        if answer.status == "conflict":
            raise HandbackConflict(handback_id, state, answer.version)
        if answer.status == "illegal":
            raise HandbackNotAllowed(handback_id, state, event)
        return state

    async def annotate(
        self,
        handback_id: str,
        *,
        event: str,
        fields: Mapping[str, str],
        guards: Iterable[str],
        arm: Iterable[Timer] = (),
        disarm: Iterable[str] = (),
        leave_outbox: bool = False,
        tallies: Iterable[Tally | None] = (),
        news: Iterable[HandbackNews] = (),
        actor: str = "",
        audit: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> Written:
        """Write ``fields`` once (none of ``guards`` set yet), audited, in one call; ``tallies``
        count, ``arm`` / ``disarm`` take effect and ``news`` (events: a flag raised) is
        published only if it is written."""
        now = now or datetime.now(UTC)
        ops = self._ops(handback_id)
        for kind, extra in news:
            publish_handback(ops, kind, handback_id, actor=actor, now=now, extra=extra)
        ops.arm(arm)
        ops.disarm(disarm)
        ops.tally(*tallies)
        if leave_outbox:
            ops.add("zrem", keys.CAD_OUTBOX, handback_id)
        return await write_once(
            self.scripts.annotate,
            ops,
            event=event,
            fields=fields,
            guards=guards,
            actor=actor,
            audit=audit,
            audit_maxlen=self.audit_maxlen,
            now=now,
        )

    async def outbox_depth(self) -> int:
        """EIDOs not yet delivered to CAD (nor given up on)."""
        return int(await self.redis.zcard(keys.CAD_OUTBOX))

    async def code_owner(self, code_digest: str) -> str | None:
        """Whose a live bridge code is (a transfer or a handback id), without consuming it."""
        owner = await self.redis.get(keys.bridge_code(code_digest))
        return None if owner is None else text(owner)

    async def set_leg(self, handback_id: str, name: str, call_sid: str) -> bool:
        """Remember the call id of a leg (``attempt:<n>``), written once; True when new."""
        return await record_leg(
            self.redis, keys.handback_legs(handback_id), name, call_sid, self.retention_s
        )

    async def live_of_transfer(self, transfer_id: str) -> str | None:
        """The id of the transfer's live (not yet terminal) handback, if it has one."""
        holder = await self.redis.get(keys.xfer_handback(transfer_id))
        return None if holder is None else text(holder)

    async def legs(self, handback_id: str) -> dict[str, str]:
        return await read_legs(self.redis, keys.handback_legs(handback_id))

    async def claim(self, handback_id: str, identity: str, ttl_s: int = 86_400) -> bool:
        """True the first time ``identity`` (a callback, a dial) is seen for the handback."""
        return await claim_once(
            self.scripts.claim, keys.handback_event(handback_id, identity), ttl_s
        )

    async def unclaim(self, handback_id: str, identity: str) -> None:
        await self.redis.delete(keys.handback_event(handback_id, identity))

    async def audit(self, handback_id: str) -> list[dict[str, str]]:
        entries = await self.redis.xrange(keys.handback_audit(handback_id)) or []
        return [{text(k): text(v) for k, v in (body or {}).items()} for _, body in entries]

    async def leave_outbox(self, handback_id: str) -> None:
        await self.redis.zrem(keys.CAD_OUTBOX, handback_id)

    async def outbox(self) -> list[str]:
        """Handbacks whose EIDO still waits for CAD."""
        members = await self.redis.zrange(keys.CAD_OUTBOX, 0, -1)
        return [text(m) for m in members if isinstance(m, bytes | str)]
