"""Reading a period's counters out of Redis and turning them into the program summary."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.errors import Invalid
from gateway.core.records import STATS_RETENTION_S
from gateway.policy.service import LoadedPolicy
from gateway.reports.counters import summarize


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


def parse_day(value: str | None, name: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"'{name}' must be a date (YYYY-MM-DD)", [{"path": name, "message": "not a date"}]
        ) from None


async def build_summary(
    loaded: LoadedPolicy, redis: Any, psap_id: str | None, start: str | None, end: str | None
) -> dict[str, Any]:
    """The summary for one PSAP (or, with ``psap_id`` None, every PSAP of the policy)."""
    psaps = [loaded.psap(psap_id)] if psap_id else list(loaded.document.psaps)
    today = date.fromisoformat(local_day(datetime.now(UTC), psaps[0].timezone))
    first_asked = parse_day(start, "from", today) if start else None
    last = parse_day(end, "to", max(today, first_asked or today))
    first = first_asked or min(today, last)
    return await summary(
        redis,
        [p.id for p in psaps],
        first,
        last,
        destinations=[d.id for d in loaded.document.destinations],
    )
