"""``python -m gateway audit export``: the audit trail as JSON lines, to keep beyond retention.

Each line is one event: a transfer's transition (from its per-transfer stream) or a policy
change. Only fields on ``EXPORTED`` leave — ids, states, events, outcomes, times, actors — so an
export holds routing metadata and never personal data, whatever a stream may carry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from gateway.core import keys
from gateway.policy.models import Psap

EXPORTED = frozenset(
    {
        "event",
        "from",
        "to",
        "version",
        "at",
        "actor",
        "outcome",
        "action",
        "summary",
        "reason",
        "contact_made",
        "police_involved",
        "mode",
        "attempt",
    }
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time.min, zone).timestamp() * 1000)


async def events(
    redis: Redis, psaps: Iterable[Psap], start: date, end: date
) -> AsyncIterator[dict[str, Any]]:
    """Audit events of transfers and handbacks created in ``[start, end]`` (each PSAP's local
    dates), then policy changes made in that period."""
    # Policy changes are the county's, not one PSAP's: their window spans every PSAP's.
    window: list[tuple[int, int]] = []
    for psap in psaps:
        zone = ZoneInfo(psap.timezone)
        first_ms, last_ms = _ms(start, zone), _ms(end + timedelta(days=1), zone)
        window.append((first_ms, last_ms))
        for kind, index, stream in (
            ("transfer", keys.psap_transfers, keys.transfer_audit),
            ("handback", keys.psap_handbacks, keys.handback_audit),
        ):
            ids = await redis.zrangebyscore(index(psap.id), first_ms, f"({last_ms}")
            for raw_id in ids:
                record_id = _text(raw_id if isinstance(raw_id, bytes | str) else raw_id[0])
                for entry_id, body in await redis.xrange(stream(record_id)) or []:
                    fields = {_text(k): _text(v) for k, v in (body or {}).items()}
                    yield {
                        "kind": kind,
                        "id": _text(entry_id or ""),
                        f"{kind}_id": record_id,
                        "psap_id": psap.id,
                        **{k: v for k, v in fields.items() if k in EXPORTED},
                    }
    if window:
        first_ms = min(w[0] for w in window)
        last_ms = max(w[1] for w in window)
        for entry_id, body in (
            await redis.xrange(keys.POLICY_AUDIT, min=f"{first_ms}-0", max=f"{last_ms}-0") or []
        ):
            fields = {_text(k): _text(v) for k, v in (body or {}).items()}
            yield {
                "kind": "policy",
                "id": _text(entry_id or ""),
                **{k: v for k, v in fields.items() if k in EXPORTED},
            }


async def export(redis: Redis, psaps: Iterable[Psap], start: date, end: date, out: Any) -> int:
    """Write the period's events to ``out`` as JSON lines; the number written."""
    count = 0
    async for event in events(redis, psaps, start, end):
        out.write(json.dumps(event, sort_keys=True) + "\n")
        count += 1
    return count
