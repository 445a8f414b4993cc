"""Closing what an outage hid: after Redis was unreachable, ask the provider.

Twilio does not retry a status callback that was answered with an error, so while Redis is
unreachable every answered, busy or ended leg reported to this process is gone for good. An
``OutageWatch`` is told of every such moment (a Redis error in a webhook or the timer worker, a
5xx answered to Twilio) and, once Redis answers again, runs the reconciliations in order —
asking the provider about the leg of every live handback (``HandbackService.reconcile``), then
about every ringing and connected transfer (``TransferService.reconcile``). It also runs once
when the process starts: a process that starts may be replacing one that crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Reconcile = Callable[[], Awaitable[int]]
"""Checks every live record of one kind with the provider; the number checked."""


class OutageWatch:
    def __init__(self, *, retry_s: float = 1.0) -> None:
        self.retry_s = retry_s
        self._pending = asyncio.Event()
        self._pending.set()  # once at start
        self._outage = False  # noted since the last reconciliation (logged once per outage)
        self._stopping = asyncio.Event()
        self.runs = 0
        """Reconciliations completed by this process (for operators and tests)."""

    def note(self, why: str) -> None:
        """Callbacks may have been lost just now (``why``: a short cause, no personal data)."""
        if not self._outage:
            self._outage = True
            log.warning(
                "callbacks may have been lost; reconciling when Redis answers", extra={"cause": why}
            )
        self._pending.set()

    @property
    def pending(self) -> bool:
        return self._pending.is_set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, redis: Redis, reconciles: Mapping[str, Reconcile]) -> None:
        """Until stopped: whenever noted, wait for Redis to answer, then run ``reconciles``
        (by the kind of record each checks, in order: an earlier one may rely on an index a
        later one changes). When one fails, all are tried again ``retry_s`` later — each is
        idempotent, so what the others applied is not applied twice."""
        while not self._stopping.is_set():
            await self._wait(self._pending)
            if self._stopping.is_set():
                return
            self._pending.clear()
            try:
                await redis.ping()
                checked = {kind: await reconcile() for kind, reconcile in reconciles.items()}
            except (RedisError, OSError) as exc:
                self._pending.set()
                log.info("reconcile deferred", extra={"error": type(exc).__name__})
                await self._pause()
                continue
            except Exception:
                self._pending.set()
                log.exception("reconcile failed")
                await self._pause()
                continue
            self.runs += 1
            self._outage = False
            log.info("reconciled with the provider", extra=checked)

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.retry_s)

    async def _wait(self, event: asyncio.Event) -> None:
        """Wait for ``event`` or for ``stop``, whichever comes first."""
        waiters = {
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        }
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
