"""Dialing a leg into a conference so that neither a dying process nor a slow provider loses it
or makes it twice — the one helper transfers and handbacks both dial with.

A dial of one attempt of a record (a transfer's destination, a handback's PSAP line) goes:

1. **Claim** (``gateway/core/lua/dial_claim.lua``, one call): the attempt's leg is already
   recorded → nothing to do; another process holds the attempt's lease → its dial is in flight;
   otherwise this process takes the lease, and learns how many leases were ever taken.
2. **Ask first** when an earlier holder may have reached the provider before it died (more
   than one lease), or when the caller asks (a timer's dial): a participant under the attempt's
   label found in the conference is the dial, recorded and returned — never dialed again.
3. **Place** the Participants create under the lease, kept alive by a heartbeat while the
   request is out, each request bounded by a total deadline. A 404 (the conference is not live
   yet) or a 429 dialed nobody: tried again shortly. No answer, or a 5xx: the create may have
   gone through — the lease is left to lapse and the next claim asks the provider first.
4. **Record** the leg's call id once the provider answered: only then is the dial made.

A record that gives up on an attempt (its ring timer moved on, a late answer was taken) can
**forgo** its dial: a dial not yet claimed is then never made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core import keys
from gateway.core.ports import Leg, Telephony, TelephonyError
from gateway.core.records import Ops, text
from gateway.core.scripts import source

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
"""Pauses before a create is sent again after a 404 (the conference is not live yet: the TwiML
that puts the caller in may still be on its way) or a 429 (rate-limited): both dialed nobody."""
LEASE_MARGIN_S = 2.0
"""The lease outlasts one create's deadline by this, and is renewed while the create is out."""
MAX_CLAIMS = 3
"""Leases taken for one attempt before it is given up as failed: a provider that never answers
a create must not keep a caller waiting, nor ring a center again and again."""
FORGONE = "-"
"""The legs hash's value for an attempt whose dial was forgone."""

Kind = Literal["placed", "found", "dialed", "busy", "unknown", "failed", "moot", "given_up"]


@dataclass(frozen=True, slots=True)
class Dial:
    """One leg to dial: the ``attempt`` of the record whose hash is ``record`` (its legs hash
    ``legs``), into ``conference`` (a friendly name), to ``to`` from ``from_``, ringing
    ``timeout_s``, its call status to ``status_callback``, labelled ``label`` in the conference.
    ``conference_status_callback`` receives the conference's events should this leg start it."""

    record: str
    legs: str
    attempt: int
    conference: str
    to: str
    from_: str
    timeout_s: int
    status_callback: str
    label: str
    conference_status_callback: str | None = None
    backup_timer: str | None = None
    """The durable timer that would dial should this process die: disarmed once the leg is
    recorded (it has nothing left to do)."""

    @property
    def field(self) -> str:
        return f"attempt:{self.attempt}"


@dataclass(frozen=True, slots=True)
class Dialed:
    """What became of a dial:

    ``placed``   the create answered now: ``call_sid`` (``first``: recorded by this call, not
                 by a callback that was quicker)
    ``found``    the provider already had the leg (an earlier holder's create): ``leg``
    ``dialed``   the leg was recorded before (or the dial forgone: ``call_sid`` None)
    ``busy``     another process's dial is in flight: look again in ``retry_in_s``
    ``unknown``  the provider did not say: look again in ``retry_in_s`` (asking first)
    ``failed``   the provider refused the create (``error``)
    ``moot``     the record stopped wanting the leg before it was dialed
    ``given_up`` ``MAX_CLAIMS`` leases were taken and none ended in a recorded leg
    """

    kind: Kind
    call_sid: str | None = None
    first: bool = False
    state: str | None = None
    """The record's state as the leg was recorded (``placed``, ``found``), read in the same
    call: a record that moved on meanwhile no longer wants the leg."""
    attempts: int = 0
    """How many attempts the record had then, the last one still open (``current``)."""
    current: bool = False
    answered: bool = False
    """Whether the record had already taken this attempt's leg as answered (its callback was
    quicker than the create's answer): the leg is the one talking, never to be cancelled."""
    leg: Leg | None = None
    retry_in_s: float = 0.0
    error: str = ""


Wanted = Callable[[], Awaitable[bool]]
"""Whether the record still wants the leg (asked between retries of a create)."""


class Dialer:
    def __init__(
        self,
        redis: Redis,
        telephony: Telephony,
        *,
        request_timeout_s: float,
        retention_s: int,
    ) -> None:
        self.redis = redis
        self.telephony = telephony
        self.request_timeout_s = request_timeout_s
        self.retention_s = retention_s
        self._claim = redis.register_script(source("dial_claim"))
        self._release = redis.register_script(source("release"))
        self._forgo = redis.register_script(source("dial_forgo"))

    @property
    def lease_s(self) -> float:
        return self.request_timeout_s + LEASE_MARGIN_S

    def lease_ops(self, ops: Ops, spec: Dial, token: str) -> None:
        """Take the attempt's lease inside the write that starts the attempt (``ops``: its side
        effects), so the dial that follows at once needs no claim of its own — ``dial`` with
        the same ``token``. Should this process die first, the lease lapses as any other."""
        ops.add(
            "setpx", keys.dial_lease(spec.record, spec.attempt), token, int(self.lease_s * 1000)
        )
        ops.add("hincrby", keys.dial_claims(spec.record), spec.field, 1)
        ops.add("expire", keys.dial_claims(spec.record), self.retention_s)

    async def dial(
        self, spec: Dial, *, wanted: Wanted, ask_first: bool = False, leased: str | None = None
    ) -> Dialed:
        """Dial ``spec`` unless it needs none (see the module's steps); never raises
        ``TelephonyError``. ``leased``: the token of a lease taken with the attempt's start
        (``lease_ops``) — the first claim of the attempt, so nothing is asked first."""
        if leased is not None:
            return await self._place(spec, leased, wanted)
        token = secrets.token_hex(8)
        status, value = await self._take(spec, token)
        if status == "dialed":
            return Dialed("dialed", call_sid=None if value == FORGONE else value)
        if status == "busy":
            return Dialed("busy", retry_in_s=max(0, int(value)) / 1000 + 0.05)
        claims = int(value)
        if claims > MAX_CLAIMS:
            await self.release(spec, token)
            return Dialed("given_up")
        if ask_first or claims > 1:
            try:
                found = await self.telephony.find_participant(spec.conference, spec.label)
            except TelephonyError as exc:
                log.warning("dial check failed", extra={"attempt": spec.attempt, "error": str(exc)})
                await self.release(spec, token)
                return Dialed("unknown", retry_in_s=LEASE_MARGIN_S)
            if found is not None:
                return await self._recorded(spec, "found", found.call_sid, leg=found)
        return await self._place(spec, token, wanted)

    async def _place(self, spec: Dial, token: str, wanted: Wanted) -> Dialed:
        reached = False  # whether a create may have reached the provider
        try:
            with self._heartbeat(spec, token):
                for delay in (*RETRY_DELAYS_S, None):
                    reached = True
                    try:
                        async with asyncio.timeout(self.request_timeout_s):
                            call_sid = await self.telephony.add_participant(
                                spec.conference,
                                to=spec.to,
                                from_=spec.from_,
                                timeout_s=spec.timeout_s,
                                status_callback=spec.status_callback,
                                label=spec.label,
                                conference_status_callback=spec.conference_status_callback,
                            )
                    except (TelephonyError, TimeoutError) as exc:
                        status = exc.status if isinstance(exc, TelephonyError) else None
                        if status in (404, 429) and delay is not None:
                            reached = False  # nobody was dialed
                            await asyncio.sleep(delay)
                            if not await wanted():
                                await self.release(spec, token)
                                return Dialed("moot")
                            continue
                        if status is None or status >= 500:
                            # The create may have gone through: the lease lapses, and the next
                            # claim asks the provider before dialing again.
                            log.warning(
                                "dial unanswered",
                                extra={"attempt": spec.attempt, "error": type(exc).__name__},
                            )
                            return Dialed("unknown", retry_in_s=self.lease_s)
                        await self.release(spec, token)
                        return Dialed("failed", error=str(exc))
                    break
        except asyncio.CancelledError:
            # Stopped mid-dial (shutdown): a create that never left is handed to the backup at
            # once; one that may have reached the provider is left to the lapsing lease.
            if not reached:
                with contextlib.suppress(RedisError):
                    await self.release(spec, token)
            raise
        return await self._recorded(spec, "placed", call_sid)

    async def _recorded(
        self, spec: Dial, kind: Kind, call_sid: str, *, leg: Leg | None = None
    ) -> Dialed:
        """Record the leg (``_record``) and answer the dial as ``kind`` with how the record
        stands."""
        first, state, attempts, current, answered = await self._record(spec, call_sid)
        return Dialed(
            kind,
            call_sid=call_sid,
            leg=leg,
            first=first,
            state=state,
            attempts=attempts,
            current=current,
            answered=answered,
        )

    @contextlib.contextmanager
    def _heartbeat(self, spec: Dial, token: str) -> Iterator[None]:
        """Renew the lease every third of its time while the block runs: a slow provider never
        lets it lapse under a live process (only a dead one)."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.lease_s / 3)
                with contextlib.suppress(RedisError):
                    status, _ = await self._take(spec, token)
                    if status == "busy":
                        log.error("dial lease lost", extra={"attempt": spec.attempt})
                        return
                    if status != "claimed":
                        # The leg is known already (its callbacks came before the create's
                        # answer) or was forgone: nothing left to hold, nothing wrong.
                        return

        task = asyncio.create_task(beat(), name=f"dial-lease:{spec.attempt}")
        try:
            yield
        finally:
            task.cancel()

    async def _take(self, spec: Dial, token: str) -> tuple[str, str]:
        status, value = (
            text(v)
            for v in await self._claim(
                keys=[
                    spec.legs,
                    keys.dial_lease(spec.record, spec.attempt),
                    keys.dial_claims(spec.record),
                ],
                args=[spec.field, token, int(self.lease_s * 1000), self.retention_s],
            )
        )
        return status, value

    async def release(self, spec: Dial, token: str) -> None:
        """Give the lease back (a dial abandoned before it reached the provider), so the next
        claim need not wait for it to lapse."""
        await self._release(keys=[keys.dial_lease(spec.record, spec.attempt)], args=[token])

    async def record(self, spec: Dial, call_sid: str) -> bool:
        """The attempt's leg is ``call_sid`` (from the create's answer, or the provider): True
        when this call recorded it first (whoever learns of a leg first sends its screen pop)."""
        first, *_ = await self._record(spec, call_sid)
        return first

    async def _record(self, spec: Dial, call_sid: str) -> tuple[bool, str | None, int, bool, bool]:
        """Record the leg, disarm the backup dial, and read how the record stands — one call:
        (recorded first, its state, its number of attempts, whether the last is still open,
        whether ``spec.attempt`` was already taken as answered)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(spec.legs, spec.field, call_sid)
            pipe.expire(spec.legs, self.retention_s)
            if spec.backup_timer is not None:
                pipe.zrem(keys.TIMERS_DUE, spec.backup_timer)
                pipe.hdel(keys.TIMERS_PAYLOAD, spec.backup_timer)
                pipe.hdel(keys.TIMERS_LEASE, spec.backup_timer)
            pipe.hmget(spec.record, "state", "attempts")
            results = await pipe.execute()
        state, attempts = (None if v is None else text(v) for v in results[-1])
        opened = json.loads(attempts) if attempts else []
        current = bool(opened) and opened[-1].get("outcome") is None
        answered = (
            0 < spec.attempt <= len(opened)
            and opened[spec.attempt - 1].get("outcome") == "answered"
        )
        return bool(results[0]), state, len(opened), current, answered

    async def forgo(self, record: str, legs: str, attempt: int) -> bool:
        """Make sure ``attempt``'s dial is never made: True when it will not be (forgone now,
        or before), False when its leg exists or its dial is in flight."""
        done = await self._forgo(
            keys=[legs, keys.dial_lease(record, attempt)], args=[f"attempt:{attempt}", FORGONE]
        )
        return bool(done)

    # ---- ending legs the gateway dialed ------------------------------------------------------

    async def cancel_ringing(self, call_sid: str, **context: str | int) -> bool:
        """Cancel a leg while it is queued or ringing; an answered one is left as it is. False
        when the provider reports it answered; True otherwise (a failure is logged)."""
        try:
            return await self.telephony.cancel_ringing(call_sid)
        except TelephonyError as exc:
            log.warning("cancel failed", extra={**context, "error": str(exc)})
            return True

    async def end(self, call_sid: str, **context: str | int) -> None:
        """End a leg: cancel it while it rings, hang it up once answered (only for a leg that
        would talk to nobody, or to a call-taker who cancelled)."""
        try:
            await self.telephony.cancel_call(call_sid)
        except TelephonyError as exc:
            log.warning("cancel failed", extra={**context, "error": str(exc)})


async def record_leg(redis: Redis, legs: str, name: str, call_sid: str, retention_s: int) -> bool:
    """Record leg ``name`` (``attempt:<n>``) as ``call_sid`` in the hash ``legs``, unless it is
    recorded already (a leg is written once); True when this call wrote it."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(legs, name, call_sid)
        pipe.expire(legs, retention_s)
        written, _ = await pipe.execute()
    return bool(written)


async def read_legs(redis: Redis, legs: str) -> dict[str, str]:
    """A record's legs hash (``attempt:<n>`` → call id, and such), without forgone attempts."""
    raw = await redis.hgetall(legs)
    return {text(k): text(v) for k, v in raw.items() if text(v) != FORGONE}


async def conference_in_progress(telephony: Telephony, conference: str, **context: str) -> bool:
    """Whether a conference named ``conference`` is in progress. A check that fails counts as
    in progress (logged with ``context``): a guess never ends anything — look again later."""
    try:
        return await telephony.conference_live(conference)
    except TelephonyError as exc:
        log.warning("conference check failed", extra={**context, "error": str(exc)})
        return True
