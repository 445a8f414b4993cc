"""Transfer transitions: one Lua call each, against a naive WATCH/MULTI read-modify-write.

    .venv/bin/python benchmarks/transitions.py [--transfers N] [--concurrency C] [--json]
    make bench

Each of N transfers is driven awaiting_bridge → ringing → ringing (next destination) →
connected → completed: four transitions, each guarded by the expected version. The same work is
done twice in one run, on the same server:

- **lua**: ``TransferStore.transition`` — the gateway's path: guard, write, audit, index and
  retention in one EVALSHA.
- **watch/multi**: the textbook alternative written here — WATCH the record, read state and
  version, check the table in Python, then HSET + XADD (+ SREM + EXPIRE when terminal) in
  MULTI/EXEC, retrying on a lost race.

Round trips are counted on the client (every write to the socket is one round trip; a pipeline
is one) and commands on the server (``INFO commandstats`` deltas). Redis is
``GATEWAY_REDIS_URL`` when set, else an embedded redis-server on a unix socket. Keys written are
deleted afterwards. Bounded: at most 2,000 transfers (8,000 transitions per path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

if __name__ == "__main__":
    # Run as a script: measure the gateway of this checkout, whatever else is installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.redis_server import redis_url_or_scratch
from gateway.core import keys
from gateway.transfer.states import TERMINAL_STATES, TRANSITIONS, TransferEvent, TransferState
from gateway.transfer.store import TransferStore, TransitionConflict, TransitionNotAllowed

E = TransferEvent
S = TransferState
JOURNEY = (E.BRIDGED, E.NEXT_DESTINATION, E.ANSWERED, E.CONFERENCE_ENDED)
MAX_TRANSFERS = 2000
RETENTION_S = 3600
AUDIT_MAXLEN = 100


@dataclass(frozen=True, slots=True)
class PathResult:
    name: str
    transitions: int
    seconds: float
    round_trips: int
    server_commands: int
    evalsha: int
    p50_ms: float
    p99_ms: float

    @property
    def round_trips_per_transition(self) -> float:
        return self.round_trips / self.transitions

    @property
    def commands_per_transition(self) -> float:
        return self.server_commands / self.transitions

    @property
    def evalsha_per_transition(self) -> float:
        return self.evalsha / self.transitions

    @property
    def per_second(self) -> float:
        return self.transitions / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "round_trips_per_transition": self.round_trips_per_transition,
            "commands_per_transition": self.commands_per_transition,
            "evalsha_per_transition": self.evalsha_per_transition,
            "transitions_per_second": self.per_second,
        }


# --- instrumentation ----------------------------------------------------------------------------


class RoundTrips:
    """Counts writes to the server's socket: one per command, one per pipeline."""

    def __init__(self) -> None:
        self.count = 0

    def install(self, client: Redis) -> None:
        pool = client.connection_pool
        base = pool.connection_class
        counter = self

        class CountingConnection(base):  # type: ignore[valid-type,misc]
            async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                counter.count += 1
                await super().send_packed_command(command, check_health)

        pool.connection_class = CountingConnection


async def server_commands(admin: Redis) -> dict[str, int]:
    stats = await admin.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(values["calls"])
        for name, values in stats.items()
        if name != "cmdstat_info"
    }


# --- the two implementations --------------------------------------------------------------------


async def lua_transition(
    store: TransferStore, tid: str, event: TransferEvent, psap_id: str, version: int
) -> int:
    result = await store.transition(tid, event, psap_id=psap_id, expected_version=version)
    return result.version


async def naive_transition(
    redis: Redis, tid: str, event: TransferEvent, psap_id: str, version: int
) -> int:
    """WATCH/MULTI read-modify-write: what the Lua script replaces."""
    record, audit = keys.transfer(tid), keys.transfer_audit(tid)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(record)
                raw_state, raw_version = await pipe.hmget(record, ["state", "version"])
                state, current = S(raw_state.decode()), int(raw_version)
                if current != version:
                    raise TransitionConflict(tid, state, current)
                new = TRANSITIONS.get(state, {}).get(event)
                if new is None:
                    raise TransitionNotAllowed(tid, state, event)
                now = datetime.now(UTC).isoformat()
                new_version = current + 1
                pipe.multi()
                pipe.hset(
                    record,
                    mapping={"state": str(new), "version": new_version, "updated_at": now},
                )
                pipe.xadd(
                    audit,
                    {
                        "event": str(event),
                        "from": str(state),
                        "to": str(new),
                        "version": new_version,
                        "at": now,
                        "actor": "",
                    },
                    maxlen=AUDIT_MAXLEN,
                    approximate=True,
                )
                if new in TERMINAL_STATES:
                    pipe.srem(keys.psap_active(psap_id), tid)
                    pipe.expire(record, RETENTION_S)
                    pipe.expire(audit, RETENTION_S)
                await pipe.execute()
                return new_version
            except WatchError:
                continue


# --- driving ------------------------------------------------------------------------------------


async def drive(
    name: str,
    client: Redis,
    admin: Redis,
    counter: RoundTrips,
    ids: Sequence[str],
    psap_id: str,
    concurrency: int,
) -> PathResult:
    store = TransferStore(client, retention_s=RETENTION_S, audit_maxlen=AUDIT_MAXLEN)
    for tid in ids:
        await store.create(tid, psap_id=psap_id, state=S.AWAITING_BRIDGE, fields={})
    # Load the scripts now, so a first-call NOSCRIPT retry is not counted as a transition's,
    # and open every connection the workers will use, so no handshake is counted either.
    for script in (store.scripts.transition, store.scripts.create):
        await client.script_load(script.script)
    await asyncio.gather(*(client.ping() for _ in range(concurrency)))

    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for tid in ids:
        queue.put_nowait(tid)

    async def worker() -> None:
        while not queue.empty():
            tid = queue.get_nowait()
            version = 1
            for event in JOURNEY:
                started = time.perf_counter()
                if name == "lua":
                    version = await lua_transition(store, tid, event, psap_id, version)
                else:
                    version = await naive_transition(client, tid, event, psap_id, version)
                latencies.append(time.perf_counter() - started)
            if version != 1 + len(JOURNEY):
                raise RuntimeError(f"{name}: {tid} ended at version {version}")

    before = await server_commands(admin)
    counter.count = 0
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    round_trips = counter.count
    after = await server_commands(admin)

    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    transitions = len(ids) * len(JOURNEY)
    if len(latencies) != transitions:
        raise RuntimeError(f"{name}: {len(latencies)} of {transitions} transitions ran")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return PathResult(
        name=name,
        transitions=transitions,
        seconds=seconds,
        round_trips=round_trips,
        server_commands=sum(delta.values()),
        evalsha=delta.get("evalsha", 0),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=cuts[98] * 1000,
    )


async def cleanup(admin: Redis, ids: Sequence[str], psap_ids: Sequence[str]) -> None:
    names = [k for tid in ids for k in (keys.transfer(tid), keys.transfer_audit(tid))]
    names += [k for p in psap_ids for k in (keys.psap_active(p), keys.psap_transfers(p))]
    for start in range(0, len(names), 500):
        await admin.delete(*names[start : start + 500])
    # The list of every transfer is shared with whatever else uses this Redis: only ours go.
    for start in range(0, len(ids), 500):
        await admin.zrem(keys.TRANSFERS_ALL, *ids[start : start + 500])
    # The live events the runs published (gateway.events): the benchmark's own only.
    own = {tid.encode() for tid in ids}
    after = "-"
    while entries := await admin.xrange(keys.EVENTS, min=after, count=1000):
        doomed = [entry_id for entry_id, body in entries if body.get(b"transfer_id") in own]
        if doomed:
            await admin.xdel(keys.EVENTS, *doomed)
        after = "(" + entries[-1][0].decode()
    if not await admin.xlen(keys.EVENTS):
        await admin.delete(keys.EVENTS)


async def measure(redis_url: str, transfers: int, concurrency: int) -> list[PathResult]:
    """Run both paths on ``transfers`` transfers each; lua first, then watch/multi."""
    transfers = max(1, min(transfers, MAX_TRANSFERS))
    run = secrets.token_hex(4)
    admin = Redis.from_url(redis_url, socket_timeout=10)
    results: list[PathResult] = []
    all_ids: list[str] = []
    psaps: list[str] = []
    try:
        for name in ("lua", "watch/multi"):
            client = Redis.from_url(redis_url, socket_timeout=10)
            counter = RoundTrips()
            counter.install(client)
            psap_id = f"bench-{run}-{name.replace('/', '-')}"
            ids = [f"{psap_id}-{i}" for i in range(transfers)]
            all_ids += ids
            psaps.append(psap_id)
            try:
                results.append(await drive(name, client, admin, counter, ids, psap_id, concurrency))
            finally:
                await client.aclose()
    finally:
        await cleanup(admin, all_ids, psaps)
        await admin.aclose()
    return results


# --- output -------------------------------------------------------------------------------------


def table(lua: PathResult, naive: PathResult, concurrency: int) -> str:
    rows = [
        ("transitions", f"{lua.transitions}", f"{naive.transitions}", ""),
        (
            "round trips / transition",
            f"{lua.round_trips_per_transition:.2f}",
            f"{naive.round_trips_per_transition:.2f}",
            f"{naive.round_trips_per_transition / lua.round_trips_per_transition:.2f}x fewer",
        ),
        (
            "EVALSHA / transition",
            f"{lua.evalsha_per_transition:.2f}",
            f"{naive.evalsha_per_transition:.2f}",
            "",
        ),
        (
            "server commands / transition",
            f"{lua.commands_per_transition:.2f}",
            f"{naive.commands_per_transition:.2f}",
            "(incl. commands run inside the script)",
        ),
        (
            "transitions / s",
            f"{lua.per_second:,.0f}",
            f"{naive.per_second:,.0f}",
            f"{lua.per_second / naive.per_second:.2f}x faster",
        ),
        (
            "p50 latency (ms)",
            f"{lua.p50_ms:.3f}",
            f"{naive.p50_ms:.3f}",
            f"{naive.p50_ms / lua.p50_ms:.2f}x lower",
        ),
        (
            "p99 latency (ms)",
            f"{lua.p99_ms:.3f}",
            f"{naive.p99_ms:.3f}",
            f"{naive.p99_ms / lua.p99_ms:.2f}x lower",
        ),
    ]
    header = ("", "lua script", "watch/multi", "lua vs watch/multi")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        f"transfer transitions: {lua.transitions // len(JOURNEY)} transfers x {len(JOURNEY)} "
        f"({' -> '.join(['awaiting_bridge', 'ringing', 'ringing', 'connected', 'completed'])}), "
        f"concurrency {concurrency}",
        "",
    ]
    for i, row in enumerate([header, *rows]):
        line = f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}"
        lines.append(line.rstrip())
        if i == 0:
            lines.append("-" * (sum(widths) + 6))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=500, help=f"max {MAX_TRANSFERS}")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--redis-url", default=os.environ.get("GATEWAY_REDIS_URL"), help="default: embedded"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with redis_url_or_scratch(args.redis_url) as url:
        lua, naive = asyncio.run(measure(url, args.transfers, max(1, args.concurrency)))
    if args.json:
        print(json.dumps({"lua": lua.as_dict(), "watch_multi": naive.as_dict()}, indent=2))
    else:
        print(table(lua, naive, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
