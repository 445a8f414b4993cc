"""Every process serves every event: one reader per process, fanned out to its open streams.

One task per process reads the events stream (``XREAD BLOCK`` on its own connection) and hands
each entry to the in-process queue of every open ``GET /v1/events`` stream whose key may see it
(``Event.visible_to``), so a thousand open streams cost one Redis connection, not a thousand.
The reader survives Redis going away: it waits, reconnects and resumes from the last id it saw.

A stream that reconnects with ``Last-Event-ID`` is given exactly what it missed: it subscribes
first — noting the last id the reader had handed out (``Subscription.upto``) — then reads
(after, upto] from Redis (``replay``); every later entry reaches it through its queue. The
subscribe step and the reader's hand-out never interleave (one event loop, no await between
them), so nothing is missed or sent twice.

Bounds: at most ``max_streams`` open streams per process and ``max_per_key`` per API key
(``StreamsFull``, answered 429). A stream whose client does not keep up (its queue full) is
closed; the client reconnects with its ``Last-Event-ID`` and catches up from Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from gateway.core import keys
from gateway.core.auth import Principal
from gateway.core.errors import Unavailable
from gateway.core.records import text
from gateway.events.entries import Event, decode_entries, parse_id

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
"""Events one stream may have waiting to be written; past it the stream is closed."""
READ_COUNT = 500
"""Entries read per ``XREAD`` / ``XRANGE`` call."""

StreamInfo = dict[str, Any]
"""``XINFO STREAM`` of the events stream, as redis-py answers it."""


class Unread:
    """Marks a ``StreamInfo`` argument left out: the method reads it itself."""


UNREAD = Unread()


class StreamsFull(Exception):
    """No stream can be opened now: ``scope`` (``process`` or ``key``) is at its ``limit``."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{limit} event streams are open for this {scope}")
        self.scope = scope
        self.limit = limit


@dataclass(eq=False)
class Subscription:
    """One open stream: what its key may see, from just after ``after`` on."""

    principal: Principal
    upto: str
    """The last id the reader had handed out when this stream subscribed: entries up to it
    come from Redis (``replay``), later ones through ``queue``."""
    after: tuple[int, int] = (0, 0)
    """The client's ``Last-Event-ID``: nothing at or before it is queued (it may come from a
    process whose reader is ahead of this one's)."""
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    """What the reader handed out and the stream has not written yet; ``None`` ends it."""
    closed: bool = False
    overflowed: bool = False

    def offer(self, event: Event) -> None:
        if self.closed or event.key <= self.after or not event.visible_to(self.principal):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()

    def close(self) -> None:
        """End the stream: whatever waits is dropped (the client catches up by its last id)."""
        if self.closed:
            return
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class EventHub:
    """The one reader of the events stream in this process, and its open streams.

    ``reader`` is a client used only for the blocking reads (its socket timeout must exceed
    ``block_ms``); ``redis`` serves the replays.
    """

    def __init__(
        self,
        reader: Redis,
        redis: Redis,
        *,
        max_streams: int = 500,
        max_per_key: int = 5,
        block_ms: int = 5000,
        retry_s: float = 1.0,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.reader = reader
        self.redis = redis
        self.max_streams = max_streams
        self.max_per_key = max_per_key
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.queue_size = queue_size
        self.last_id: str | None = None
        """The last entry id handed out (None until the reader found the stream's end)."""
        self.ready = asyncio.Event()
        self._subs: set[Subscription] = set()
        self._per_key: Counter[str] = Counter()
        self._stopping = False

    # ---- the reader ------------------------------------------------------------------------

    async def run(self) -> None:
        """Read until ``stop``; a Redis error is logged once per outage and retried."""
        failing = False
        while not self._stopping:
            try:
                if self.last_id is None:
                    self.last_id = await self._tail()
                    self.ready.set()
                reply = await self.reader.xread(
                    {keys.EVENTS: self.last_id}, count=READ_COUNT, block=self.block_ms
                )
                if failing:
                    log.info("event reader reconnected", extra={"last_id": self.last_id})
                    failing = False
                for _stream, entries in _streams(reply):
                    self._hand_out(decode_entries(entries))
            except RedisError as exc:
                if not failing:
                    log.warning(
                        "event reader: redis unavailable; retrying",
                        extra={"error": type(exc).__name__},
                    )
                    failing = True
                await asyncio.sleep(self.retry_s)
            except Exception:  # a bug must not leave every open stream silent for good
                log.exception("event reader failed; retrying")
                await asyncio.sleep(self.retry_s)

    async def _tail(self) -> str:
        """The id of the stream's newest entry (``0-0`` when empty): reading starts after it."""
        newest = await self.reader.xrevrange(keys.EVENTS, count=1)
        return str(decode_entries(newest)[-1].id) if newest else "0-0"

    def _hand_out(self, events: list[Event]) -> None:
        for event in events:
            self.last_id = event.id
            for sub in list(self._subs):
                sub.offer(event)

    def stop(self) -> None:
        """Stop reading (after the read in hand) and end every open stream."""
        self._stopping = True
        for sub in list(self._subs):
            sub.close()

    # ---- streams ---------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._subs)

    def subscribe(self, principal: Principal, after: tuple[int, int] = (0, 0)) -> Subscription:
        """A new stream for ``principal``; ``StreamsFull`` past a bound, ``Unavailable`` while
        the process shuts down. The reader must be ready (``ready``)."""
        if self._stopping:
            raise Unavailable("this process is shutting down; reconnect")
        if len(self._subs) >= self.max_streams:
            raise StreamsFull("process", self.max_streams)
        if self._per_key[principal.key_id] >= self.max_per_key:
            raise StreamsFull("key", self.max_per_key)
        assert self.last_id is not None
        sub = Subscription(
            principal, upto=self.last_id, after=after, queue=asyncio.Queue(self.queue_size)
        )
        self._subs.add(sub)
        self._per_key[principal.key_id] += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._per_key[sub.principal.key_id] -= 1
            if self._per_key[sub.principal.key_id] <= 0:
                del self._per_key[sub.principal.key_id]
        sub.close()

    async def replay(
        self, sub: Subscription, after: str, info: StreamInfo | Unread | None = UNREAD
    ) -> list[Event] | None:
        """What ``sub`` missed: the entries in (``after``, ``sub.upto``] its key may see, in
        order — or None when some of them may have been trimmed already (older than what is
        kept), so the client must refetch state instead. ``info``: the stream's, as just read
        (``stream_info``), read here when not given."""
        if _trimmed_past(after, await self._info(info)):
            return None
        found: list[Event] = []
        start = after
        upto = parse_id(sub.upto) or (0, 0)
        if (parse_id(after) or (0, 0)) >= upto:
            return found
        while True:
            entries = await self.redis.xrange(
                keys.EVENTS, min=f"({start}", max=sub.upto, count=READ_COUNT
            )
            events = decode_entries(entries or [])
            found.extend(e for e in events if e.visible_to(sub.principal))
            if len(events) < READ_COUNT:
                return found
            start = events[-1].id

    async def stream_info(self) -> StreamInfo | None:
        """``XINFO STREAM`` of the events stream; None when there is no stream at all (never
        written, or Redis lost it). One read serves both ``issued`` and ``replay``."""
        try:
            info: StreamInfo = await self.redis.xinfo_stream(keys.EVENTS)
        except ResponseError:
            return None
        return info

    async def _info(self, info: StreamInfo | Unread | None) -> StreamInfo | None:
        return await self.stream_info() if isinstance(info, Unread) else info

    async def issued(self, event_id: str, info: StreamInfo | Unread | None = UNREAD) -> bool:
        """Whether ``event_id`` is at or before the newest id the stream ever gave out. One
        ahead of it was never issued by this stream (a client's own invention, another
        deployment's Redis): nothing after it can be replayed, and waiting for live events
        past it would keep the stream silent, so the caller resets the client instead.
        ``info`` as for ``replay``."""
        mark = parse_id(event_id) or (0, 0)
        info = await self._info(info)
        if info is None:  # no stream at all: only the zero id was ever "before" it
            return mark == (0, 0)
        return mark <= _id_of(info.get("last-generated-id"))


def _trimmed_past(after: str, info: StreamInfo | None) -> bool:
    """Whether an entry newer than ``after`` may have been trimmed away. The stream is only
    ever trimmed from its oldest end, so that is so when its oldest entry is newer than
    ``after`` (or, emptied, when an entry newer than ``after`` was ever added) — unless
    nothing was ever removed (Redis 7 counts what was added)."""
    mark = parse_id(after) or (0, 0)
    if info is None:  # no stream at all: never written, or Redis lost it
        return mark > (0, 0)
    added = info.get("entries-added")
    if added is not None and int(added) == int(info.get("length", 0)):
        return False
    first = info.get("first-entry")
    if first:
        return _id_of(first[0]) > mark
    return _id_of(info.get("last-generated-id")) > mark


def _streams(reply: Any) -> list[tuple[Any, list[Any]]]:
    """``XREAD``'s reply as (stream, entries) pairs: a list under RESP2, a dict under RESP3."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(stream, entries) for stream, entries in reply]


def _id_of(value: Any) -> tuple[int, int]:
    parsed = parse_id(text(value)) if isinstance(value, bytes | str) else None
    return parsed or (0, 0)
