"""Durable timers shared by every gateway process.

A timer is a member of one sorted set scored by its due time. A worker claims due timers with a
lease (one script: the score moves to the lease's end and the worker's token is recorded), runs
each timer's handler, then acknowledges it — which removes it only while that worker still holds
the lease. A worker that dies mid-timer loses nothing: the lease runs out, the timer is due again,
and another worker takes it. Handlers must therefore be idempotent; the transfer state machine
makes them so (an ``expire`` of a transfer that already moved on is refused by the table).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core import keys
from gateway.core.scripts import source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: at ``due``, whichever process claims it runs ``kind`` with ``payload``."""

    id: str
    due: datetime
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def encoded(self) -> str:
        return json.dumps({"kind": self.kind, **self.payload}, sort_keys=True)


def to_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


TimerHandler = Callable[[str, Mapping[str, Any]], Awaitable[None]]
"""Called with the timer id and its payload (which includes ``kind``)."""


@dataclass(frozen=True, slots=True)
class ClaimedTimer:
    id: str
    payload: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.payload.get("kind", ""))


class TimerQueue:
    """Arming, disarming, claiming and acknowledging timers outside a transition."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(source("timer_claim"))
        self._ack = redis.register_script(source("timer_ack"))

    async def arm(self, timers: Iterable[Timer]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for timer in timers:
                pipe.zadd(keys.TIMERS_DUE, {timer.id: to_ms(timer.due)})
                pipe.hset(keys.TIMERS_PAYLOAD, timer.id, timer.encoded())
                pipe.hdel(keys.TIMERS_LEASE, timer.id)
            await pipe.execute()

    async def disarm(self, timer_ids: Iterable[str]) -> None:
        ids = list(timer_ids)
        if not ids:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.TIMERS_DUE, *ids)
            pipe.hdel(keys.TIMERS_PAYLOAD, *ids)
            pipe.hdel(keys.TIMERS_LEASE, *ids)
            await pipe.execute()

    async def claim(
        self, token: str, *, lease_s: float, limit: int = 50, now_ms: int | None = None
    ) -> list[ClaimedTimer]:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        call = keys.timer_claim(secrets.token_hex(8))
        flat = await self._claim(
            keys=[keys.TIMERS_DUE, keys.TIMERS_PAYLOAD, keys.TIMERS_LEASE, call],
            args=[now_ms, int(lease_s * 1000), limit, token],
        )
        items = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
        return [ClaimedTimer(items[i], json.loads(items[i + 1])) for i in range(0, len(items), 2)]

    async def ack(self, timer_id: str, token: str) -> bool:
        removed = await self._ack(
            keys=[keys.TIMERS_DUE, keys.TIMERS_PAYLOAD, keys.TIMERS_LEASE],
            args=[timer_id, token],
        )
        return bool(removed)

    async def due_at(self, timer_id: str) -> float | None:
        """The timer's due time (or lease end) in ms, ``None`` when it is not armed."""
        score = await self.redis.zscore(keys.TIMERS_DUE, timer_id)
        return None if score is None else float(score)

    async def lag_s(self) -> float:
        """How late the most overdue timer is; 0 when none is due."""
        oldest = await self.redis.zrange(keys.TIMERS_DUE, 0, 0, withscores=True)
        if not oldest:
            return 0.0
        return max(0.0, time.time() - float(oldest[0][1]) / 1000)


class TimerWorker:
    """Polls for due timers and runs the handler registered for each one's kind."""

    def __init__(
        self,
        queue: TimerQueue,
        handlers: dict[str, TimerHandler],
        *,
        poll_s: float = 0.25,
        lease_s: float = 30.0,
        batch: int = 50,
        on_redis_error: Callable[[str], None] | None = None,
    ) -> None:
        self.queue = queue
        self.on_redis_error = on_redis_error
        """Told of every Redis error of a poll (``gateway.core.outage.OutageWatch.note``)."""
        self.handlers = handlers  # the app's registry: handlers added later are seen
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.batch = batch
        self.token = secrets.token_hex(8)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask ``run`` to return once the timers in hand are handled (never mid-command)."""
        self._stopping.set()

    async def tick(self) -> int:
        """Claim what is due now and run it; the number of timers handled.

        The claimed timers run concurrently: a slow partner (a CAD endpoint, a center's notice
        URL) must not hold up a ring timer claimed in the same batch."""
        claimed = await self.queue.claim(self.token, lease_s=self.lease_s, limit=self.batch)
        handled = await asyncio.gather(*(self._run(timer) for timer in claimed))
        return sum(handled)

    async def _run(self, timer: ClaimedTimer) -> int:
        handler = self.handlers.get(timer.kind)
        if handler is None:
            log.error("no handler for timer kind", extra={"timer_kind": timer.kind})
            await self.queue.ack(timer.id, self.token)
            return 0
        try:
            await handler(timer.id, timer.payload)
        except Exception:
            # Left leased: it falls due again when the lease ends and is retried.
            log.exception("timer handler failed", extra={"timer_kind": timer.kind})
            return 0
        try:
            await self.queue.ack(timer.id, self.token)
        except RedisError as exc:  # the lease runs out and the (idempotent) handler runs again
            log.warning("timer ack failed", extra={"error": type(exc).__name__})
            return 0
        return 1

    async def run(self) -> None:
        """Poll until stopped, running each claimed timer as its own task (at most ``batch`` at
        once): a handler waiting on a slow partner never holds up a ring timer that falls due
        meanwhile. A Redis outage is logged and waited out, never fatal. Stopping waits for
        the timers in hand."""
        running: set[asyncio.Task[int]] = set()
        while not self._stopping.is_set():
            free = self.batch - len(running)
            claimed: list[ClaimedTimer] = []
            if free > 0:
                try:
                    claimed = await self.queue.claim(self.token, lease_s=self.lease_s, limit=free)
                except RedisError as exc:
                    log.warning("timer poll failed", extra={"error": type(exc).__name__})
                    if self.on_redis_error is not None:
                        self.on_redis_error("timer poll")
            for timer in claimed:
                task = asyncio.create_task(self._run(timer), name=f"timer:{timer.kind}")
                running.add(task)
                task.add_done_callback(running.discard)
            if len(claimed) < free or free <= 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_s)
        if running:
            await asyncio.wait(running)
