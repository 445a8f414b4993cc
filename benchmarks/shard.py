"""Why one Redis shard carries the whole product: what one core sustains, and what a county needs.

    .venv/bin/python benchmarks/shard.py [--transfers N] [--concurrency C] [--json]
    make bench-shard

Every key shares the ``{gw}`` hash tag (``gateway.core.keys``), so on a Redis Cluster the whole
product lives on one shard (one primary and its replicas): every transition stays one atomic
script, and a cluster adds failover, not capacity. This measures whether one shard is enough.

N transfers are each created and driven through four transitions (awaiting_bridge → ringing →
ringing → connected → completed) by ``TransferStore``, the gateway's own path, C at a time. The
server's own time per script call comes from ``INFO commandstats`` (``usec_per_call`` of
EVALSHA): one Redis core runs scripts one at a time, so ``1e6 / usec_per_call`` is what one shard
sustains, whatever the number of clients (an upper bound: that time leaves out reading and
writing sockets); what this one Python client drove end to end is printed too (a lower bound).
Both are set against a county's need:

    transfers per hour * webhooks per transfer * Redis calls per webhook / 3600

with deliberately high defaults: 100 transfers an hour (the largest county sends tens an hour
at peak), 12 Twilio webhooks per transfer, 4 Redis calls per webhook (``make bench-webhooks``
counts the real number; it is lower). Redis is ``GATEWAY_REDIS_URL`` when set (a single server),
else an embedded redis-server on a unix socket. Keys written are deleted afterwards. Bounded: at
most 2,000 transfers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

if __name__ == "__main__":
    # Run as a script: measure the gateway of this checkout, whatever else is installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.redis_server import redis_url_or_scratch
from gateway.core import keys
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import TransferStore

JOURNEY = (
    TransferEvent.BRIDGED,
    TransferEvent.NEXT_DESTINATION,
    TransferEvent.ANSWERED,
    TransferEvent.CONFERENCE_ENDED,
)
MAX_TRANSFERS = 2000
RETENTION_S = 3600
TRANSFERS_PER_HOUR = 100
"""An upper bound for the largest county: tens of behavioral-health transfers an hour at peak."""
WEBHOOKS_PER_TRANSFER = 12
"""Twilio requests one transfer causes: the bridge call, the code step, the leg's status
callbacks (initiated, ringing, answered, completed), the conference's events and the end."""
CALLS_PER_WEBHOOK = 4
"""Redis calls per webhook, rounded up (``make bench-webhooks`` counts the real number)."""


@dataclass(frozen=True, slots=True)
class ShardFigures:
    transfers: int
    script_calls: int
    seconds: float
    usec_per_call: float
    transfers_per_hour: int
    webhooks_per_transfer: int
    calls_per_webhook: int

    @property
    def client_calls_per_s(self) -> float:
        """Script calls per second this one Python client drove (the client is the bottleneck)."""
        return self.script_calls / self.seconds

    @property
    def core_calls_per_s(self) -> float:
        """Script calls per second one Redis core sustains: it runs one at a time."""
        return 1e6 / self.usec_per_call

    @property
    def needed_calls_per_s(self) -> float:
        return self.transfers_per_hour * self.webhooks_per_transfer * self.calls_per_webhook / 3600

    @property
    def headroom(self) -> float:
        return self.core_calls_per_s / self.needed_calls_per_s

    @property
    def client_headroom(self) -> float:
        return self.client_calls_per_s / self.needed_calls_per_s

    @property
    def core_busy_percent(self) -> float:
        return 100 * self.needed_calls_per_s / self.core_calls_per_s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "client_calls_per_s": self.client_calls_per_s,
            "core_calls_per_s": self.core_calls_per_s,
            "needed_calls_per_s": self.needed_calls_per_s,
            "headroom": self.headroom,
            "client_headroom": self.client_headroom,
            "core_busy_percent": self.core_busy_percent,
        }


async def evalsha_stats(admin: Redis) -> tuple[int, int]:
    """(calls, microseconds) of EVALSHA on the server so far."""
    stats = await admin.info("commandstats")
    values = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(values["calls"]), int(values["usec"])


async def measure(
    redis_url: str,
    transfers: int,
    concurrency: int,
    *,
    transfers_per_hour: int = TRANSFERS_PER_HOUR,
    webhooks_per_transfer: int = WEBHOOKS_PER_TRANSFER,
    calls_per_webhook: int = CALLS_PER_WEBHOOK,
) -> ShardFigures:
    transfers = max(1, min(transfers, MAX_TRANSFERS))
    psap_id = f"bench-shard-{secrets.token_hex(4)}"
    ids = [f"{psap_id}-{i}" for i in range(transfers)]
    client = Redis.from_url(redis_url, socket_timeout=10)
    admin = Redis.from_url(redis_url, socket_timeout=10)
    store = TransferStore(client, retention_s=RETENTION_S, audit_maxlen=100)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for tid in ids:
        queue.put_nowait(tid)

    async def worker() -> None:
        while not queue.empty():
            tid = queue.get_nowait()
            await store.create(tid, psap_id=psap_id, state=TransferState.AWAITING_BRIDGE, fields={})
            version = 1
            for event in JOURNEY:
                moved = await store.transition(
                    tid, event, psap_id=psap_id, expected_version=version
                )
                version = moved.version

    try:
        for script in (store.scripts.transition, store.scripts.create):
            await client.script_load(script.script)
        calls_before, usec_before = await evalsha_stats(admin)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        calls_after, usec_after = await evalsha_stats(admin)
    finally:
        await cleanup(admin, ids, psap_id)
        await client.aclose()
        await admin.aclose()
    calls = calls_after - calls_before
    expected = transfers * (1 + len(JOURNEY))
    if calls < expected:
        raise RuntimeError(f"{calls} script calls ran, {expected} expected")
    return ShardFigures(
        transfers=transfers,
        script_calls=calls,
        seconds=seconds,
        usec_per_call=(usec_after - usec_before) / calls,
        transfers_per_hour=transfers_per_hour,
        webhooks_per_transfer=webhooks_per_transfer,
        calls_per_webhook=calls_per_webhook,
    )


async def cleanup(admin: Redis, ids: Sequence[str], psap_id: str) -> None:
    names = [k for tid in ids for k in (keys.transfer(tid), keys.transfer_audit(tid))]
    names += [keys.psap_active(psap_id), keys.psap_transfers(psap_id)]
    for start in range(0, len(names), 500):
        await admin.delete(*names[start : start + 500])


def report(figures: ShardFigures, concurrency: int) -> str:
    f = figures
    return "\n".join(
        [
            f"one shard: {f.transfers} transfers created and driven through "
            f"{len(JOURNEY)} transitions ({f.script_calls} script calls), "
            f"concurrency {concurrency}",
            f"  server time per script call     {f.usec_per_call:10.1f} us (INFO commandstats)",
            f"  one Redis core sustains         {f.core_calls_per_s:10,.0f} script calls / s",
            f"  this one client drove           {f.client_calls_per_s:10,.0f} script calls / s",
            f"  the largest county needs        {f.needed_calls_per_s:10.2f} calls / s "
            f"({f.transfers_per_hour} transfers/h x {f.webhooks_per_transfer} webhooks "
            f"x {f.calls_per_webhook} calls)",
            f"  headroom on one shard           {f.headroom:10,.0f}x "
            f"(the core busy {f.core_busy_percent:.3f} % of the time)",
            f"  headroom, this client's pace    {f.client_headroom:10,.0f}x",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--transfers-per-hour", type=int, default=TRANSFERS_PER_HOUR)
    parser.add_argument("--redis-url", default=os.environ.get("GATEWAY_REDIS_URL"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with redis_url_or_scratch(args.redis_url) as url:
        figures = asyncio.run(
            measure(
                url,
                args.transfers,
                max(1, args.concurrency),
                transfers_per_hour=args.transfers_per_hour,
            )
        )
    print(json.dumps(figures.as_dict()) if args.json else report(figures, args.concurrency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
