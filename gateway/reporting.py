"""Reading a period's counters out of Redis and turning them into the program summary."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from gateway import keys
from gateway.errors import Invalid
from gateway.reports import summarize
from gateway.store import STATS_RETENTION_S


def local_day(at: datetime, timezone: str) -> str:
    """The PSAP-local date of ``at``, as counters are keyed."""
    return at.astimezone(ZoneInfo(timezone)).date().isoformat()


def period(start: date, end: date) -> list[str]:
    """Every day of ``[start, end]`` for which counters can exist (they are kept for
    ``STATS_RETENTION_S``; none are written in the future), as counter keys name them. Any
    range is accepted; only its reachable days are read."""
    if end < start:
        raise Invalid("'from' is after 'to'", [{"path": "from", "message": "after 'to'"}])
    today = datetime.now(UTC).date()
    first = max(start, today - timedelta(seconds=STATS_RETENTION_S) - timedelta(days=2))
    last = min(end, today + timedelta(days=2))
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


async def summary(
    redis: Redis,
    psap_ids: Iterable[str],
    start: date,
    end: date,
    *,
    destinations: Iterable[str] = (),
) -> dict[str, Any]:
    """The summary over every day of ``[start, end]`` (PSAP-local dates) for ``psap_ids``."""
    days = period(start, end)
    psaps = list(psap_ids)
    async with redis.pipeline(transaction=False) as pipe:
        for psap_id in psaps:
            for day in days:
                pipe.hgetall(keys.stats_day(psap_id, day))
                pipe.zrange(keys.answer_times(psap_id, day), 0, -1, withscores=True)
        raw = await pipe.execute()
    counters = [{_text(k): int(v) for k, v in hash_.items()} for hash_ in raw[0::2]]
    answers = [(_text(member), float(score)) for zset in raw[1::2] for member, score in zset]
    return {
        "psap_id": psaps[0] if len(psaps) == 1 else None,
        "psap_ids": psaps,
        "from": start.isoformat(),
        "to": end.isoformat(),
        **summarize(counters, answers, destinations=destinations),
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
