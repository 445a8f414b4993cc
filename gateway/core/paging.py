"""Paged lists served from index sorted sets, newest first (DESIGN.md §9).

An index is a sorted set of record ids scored by creation time (ms, ``gateway.core.keys``).
A list is ordered by ``(score, id)`` descending — Redis orders equal scores by member, so that
is the index's own reverse order — and a page ends at a ``Position``. The cursor handed to the
client is that position, opaque (URL-safe base64 of JSON); the next page holds only entries
strictly older than it. Records created while a client pages have newer scores than any cursor,
so paging never repeats an item and never skips one, however many arrive meanwhile.

Reading needs no ``SCAN``/``KEYS``: one ``ZREVRANGEBYSCORE … LIMIT`` per batch, the batch's
records fetched in one pipeline. An entry whose record expired (retention) is skipped and
removed from the index it was read from.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar, cast

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.core.errors import Invalid
from gateway.core.records import text
from gateway.core.timers import to_ms

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
"""A page holds 1..200 items (``limit``, default 50)."""
SCAN_BUDGET = 2_000
"""Index entries one request looks at, at most: a selective filter over a long index answers
a short (even empty) page with a cursor to go on from, never a long wait."""
BATCH = 100
"""Index entries read (and records fetched) per round trip."""
_CURSOR_VERSION = 1


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an index entry stands: its score (creation time, ms) and its member (the id)."""

    score: int
    id: str


def encode_cursor(position: Position) -> str:
    """The opaque cursor naming ``position``: URL-safe base64 of ``[version, score, id]``."""
    raw = json.dumps([_CURSOR_VERSION, position.score, position.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _bad_cursor() -> Invalid:
    return Invalid(
        "bad query parameter 'cursor'",
        [{"path": "cursor", "message": "a next_cursor exactly as a list answered it"}],
    )


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; ``Invalid`` (422, path ``cursor``) for anything that is not
    a cursor this gateway made."""
    if len(cursor) > 400:
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, score, member = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise _bad_cursor() from None
    if (
        version != _CURSOR_VERSION
        or not isinstance(score, int)
        or isinstance(score, bool)
        or not isinstance(member, str)
        or not member.isascii()
        or not 0 < len(member) <= 64
    ):
        raise _bad_cursor()
    return Position(score, member)


class Page(BaseModel, Generic[T]):
    """``{"items": […], "next_cursor": "…" | null}``: ``next_cursor`` is null once the list is
    exhausted; a page may hold fewer than ``limit`` items and still have one (the request's scan
    budget ran out first)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    """A page as read: the records kept, and where to go on from (None: the index is done)."""

    items: list[T]
    next: Position | None

    @property
    def cursor(self) -> str | None:
        return None if self.next is None else encode_cursor(self.next)


Loader = Callable[[Sequence[str]], Awaitable[Sequence[T | None]]]
"""Reads the records of a batch of ids, in order (None: the record is gone)."""


async def read_page(
    redis: Redis,
    index: str,
    load: Loader[T],
    *,
    keep: Callable[[T], bool] = lambda _: True,
    before: Position | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    budget: int = SCAN_BUDGET,
    batch: int = BATCH,
) -> Found[T]:
    """Up to ``limit`` records of ``index`` that ``keep`` accepts, newest first, strictly older
    than ``before``, created at or after ``since``; looking at no more than ``budget`` entries.
    Entries whose record is gone are removed from ``index``."""
    low: int | str = "-inf" if since is None else to_ms(since)
    position = before
    found: list[T] = []
    looked = 0
    while True:
        high: int | str = "+inf" if position is None else position.score
        skip = 0
        while True:  # past the entries at the cursor's own score that are not older than it
            rows = cast(
                "list[tuple[bytes | str, float]]",
                await redis.zrevrangebyscore(
                    index, high, low, start=skip, num=batch, withscores=True
                ),
            )
            entries = [Position(int(score), text(member)) for member, score in rows]
            fresh = [e for e in entries if position is None or e < position]
            if fresh or len(rows) < batch:
                break
            skip += len(rows)
        index_done = len(rows) < batch  # nothing older than this batch's last entry
        if not fresh:
            return Found(found, None)
        room = budget - looked
        cut = len(fresh) > room
        fresh = fresh[:room]
        records = await load([p.id for p in fresh])
        gone: list[str] = []
        used = 0
        for entry, record in zip(fresh, records, strict=True):
            used += 1
            position = entry
            if record is None:
                gone.append(entry.id)
            elif keep(record):
                found.append(record)
                if len(found) == limit:
                    break
        looked += used
        if gone:
            await redis.zrem(index, *gone)
        finished = index_done and not cut and used == len(fresh)
        if finished:
            return Found(found, None)
        if len(found) == limit or looked >= budget:
            return Found(found, position)


async def enter_in_indexes(
    redis: Redis,
    source: str,
    record_key: Callable[[str], str],
    field: str,
    enter: Callable[[Pipeline, str, float, bytes | str], None],
    *,
    batch: int = 500,
) -> int:
    """Enter the records of the index ``source`` in other indexes, with their scores: per
    ``batch``, read each record's ``field`` (at ``record_key(id)``) in one pipeline, then
    ``enter(pipe, id, score, value)`` queues the ``ZADD``s of each record that has the field
    (an expired one, or one recorded before the field was, is skipped) in another. Safe to
    repeat; answers how many records were entered."""
    rows = cast(
        "list[tuple[bytes | str, float]]",
        await redis.zrange(source, 0, -1, withscores=True),
    )
    entered = 0
    for start in range(0, len(rows), batch):
        chunk = [(text(m), float(score)) for m, score in rows[start : start + batch]]
        async with redis.pipeline(transaction=False) as pipe:
            for record_id, _ in chunk:
                pipe.hget(record_key(record_id), field)
            found = await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for (record_id, score), value in zip(chunk, found, strict=True):
                if value is None:
                    continue
                entered += 1
                enter(pipe, record_id, score, value)
            await pipe.execute()
    return entered


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Found",
    "Page",
    "Position",
    "decode_cursor",
    "encode_cursor",
    "read_page",
]
