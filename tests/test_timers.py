"""Durable timers shared by several processes: leases, retries, stale acks, arming in transitions.

Two "processes" are two queues with their own Redis clients on the same server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.timers import Timer, TimerQueue, TimerWorker
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import TransferStore, TransitionConflict, TransitionNotAllowed

S = TransferState
E = TransferEvent


def past(seconds: float = 1.0) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def future(seconds: float = 600.0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture
async def other_queue(redis_url: str) -> AsyncIterator[TimerQueue]:
    client = Redis.from_url(redis_url, socket_timeout=5)
    yield TimerQueue(client)
    await client.aclose()


async def timer_keys_empty(redis: Redis) -> bool:
    sizes = await asyncio.gather(
        redis.zcard(keys.TIMERS_DUE), redis.hlen(keys.TIMERS_PAYLOAD), redis.hlen(keys.TIMERS_LEASE)
    )
    return list(sizes) == [0, 0, 0]


async def test_two_workers_handle_200_timers_exactly_once(
    redis: Redis, timer_queue: TimerQueue, other_queue: TimerQueue
) -> None:
    ids = [f"t{i:03d}" for i in range(200)]
    await timer_queue.arm(Timer(i, past(), "effect", {"n": n}) for n, i in enumerate(ids))
    calls: Counter[str] = Counter()
    effects = 0

    async def effect(timer_id: str, payload: Mapping[str, Any]) -> None:
        nonlocal effects
        calls[timer_id] += 1
        assert payload == {"kind": "effect", "n": ids.index(timer_id)}
        # The effect is guarded the way real handlers are: applied at most once per timer.
        if await redis.set(f"test:effect:{timer_id}", 1, nx=True):
            effects += 1

    workers = [
        TimerWorker(q, {"effect": effect}, lease_s=30, batch=15) for q in (timer_queue, other_queue)
    ]
    handled = Counter[str]()

    async def drive(worker: TimerWorker) -> None:
        for _ in range(100):
            handled[worker.token] += await worker.tick()
            if not await worker.queue.redis.zcard(keys.TIMERS_DUE):
                return
            await asyncio.sleep(0)

    await asyncio.gather(*(drive(w) for w in workers))

    assert effects == 200
    assert set(calls) == set(ids)
    assert all(n == 1 for n in calls.values()), calls.most_common(3)
    assert sum(handled.values()) == 200
    assert len([k async for k in redis.scan_iter(match="test:effect:*")]) == 200
    assert await timer_keys_empty(redis)


async def test_a_lease_hides_a_claimed_timer_until_it_ends(
    timer_queue: TimerQueue, other_queue: TimerQueue
) -> None:
    """Deterministic clock: the claim moves the due time to the lease end, exactly."""
    t0 = int(time.time() * 1000)
    await timer_queue.arm([Timer("x", datetime.fromtimestamp(t0 / 1000, UTC), "k")])
    assert [c.id for c in await timer_queue.claim("A", lease_s=5, now_ms=t0)] == ["x"]
    assert await timer_queue.due_at("x") == t0 + 5000
    assert await other_queue.claim("B", lease_s=5, now_ms=t0 + 4999) == []
    claimed = await other_queue.claim("B", lease_s=5, now_ms=t0 + 5000)
    assert [(c.id, c.kind) for c in claimed] == [("x", "k")]
    # A comes back after its lease passed to B: its ack must not remove B's timer.
    assert await timer_queue.ack("x", "A") is False
    assert await other_queue.due_at("x") == t0 + 10_000
    assert await other_queue.ack("x", "B") is True
    assert await timer_queue.due_at("x") is None


async def test_a_killed_worker_timer_goes_to_another_only_after_the_lease(
    redis: Redis, timer_queue: TimerQueue, other_queue: TimerQueue
) -> None:
    lease_s = 1.0
    await timer_queue.arm([Timer("ring:1", past(), "ring_timeout", {"transfer_id": "t1"})])
    handled_at: list[float] = []

    async def handler(timer_id: str, payload: Mapping[str, Any]) -> None:
        handled_at.append(time.monotonic())

    # Worker A claims and "dies": it never runs the handler nor acks.
    claimed_at = time.monotonic()
    dead = await timer_queue.claim("worker-a", lease_s=lease_s)
    assert [c.id for c in dead] == ["ring:1"]
    assert await redis.hget(keys.TIMERS_LEASE, "ring:1") == b"worker-a"

    survivor = TimerWorker(other_queue, {"ring_timeout": handler}, lease_s=30)
    assert await survivor.tick() == 0  # well inside A's lease
    assert handled_at == []

    deadline = time.monotonic() + lease_s + 5
    while not handled_at and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        await survivor.tick()
    assert len(handled_at) == 1
    assert handled_at[0] - claimed_at >= lease_s - 0.05
    assert await timer_keys_empty(redis)


async def test_a_failing_handler_is_retried_after_the_lease(
    redis: Redis, timer_queue: TimerQueue, caplog: pytest.LogCaptureFixture
) -> None:
    lease_s = 0.5
    await timer_queue.arm([Timer("flaky", past(), "flaky")])
    attempts: list[float] = []

    async def flaky(timer_id: str, payload: Mapping[str, Any]) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("partner down")

    worker = TimerWorker(timer_queue, {"flaky": flaky}, lease_s=lease_s)
    assert await worker.tick() == 0
    assert len(attempts) == 1
    assert "timer handler failed" in caplog.text
    # Still armed, leased, and not due again yet.
    assert await timer_queue.due_at("flaky") is not None
    assert await worker.tick() == 0
    assert len(attempts) == 1

    deadline = time.monotonic() + lease_s + 5
    handled = 0
    while not handled and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        handled = await worker.tick()
    assert handled == 1
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= lease_s - 0.05
    assert await timer_keys_empty(redis)


async def test_a_timer_of_unknown_kind_is_dropped_not_retried_forever(
    redis: Redis, timer_queue: TimerQueue
) -> None:
    await timer_queue.arm([Timer("orphan", past(), "no_such_kind")])
    worker = TimerWorker(timer_queue, {}, lease_s=30)
    assert await worker.tick() == 0
    assert await timer_keys_empty(redis)


async def test_a_stale_ack_does_not_remove_a_timer_rearmed_meanwhile(
    redis: Redis, timer_queue: TimerQueue, other_queue: TimerQueue
) -> None:
    await timer_queue.arm([Timer("code:1", past(), "expire", {"v": 1})])
    assert [c.id for c in await timer_queue.claim("A", lease_s=30)] == ["code:1"]
    rearmed = future(120)
    await other_queue.arm([Timer("code:1", rearmed, "expire", {"v": 2})])

    assert await timer_queue.ack("code:1", "A") is False
    assert await timer_queue.due_at("code:1") == pytest.approx(rearmed.timestamp() * 1000, abs=1)
    assert await redis.hget(keys.TIMERS_PAYLOAD, "code:1") == b'{"kind": "expire", "v": 2}'
    assert await redis.hget(keys.TIMERS_LEASE, "code:1") is None


async def test_disarm_removes_a_timer_and_future_timers_are_not_claimed(
    redis: Redis, timer_queue: TimerQueue
) -> None:
    await timer_queue.arm([Timer("soon", past(), "k"), Timer("later", future(), "k")])
    await timer_queue.disarm(["soon"])
    assert await timer_queue.claim("A", lease_s=30) == []
    assert await timer_queue.due_at("later") is not None
    await timer_queue.disarm(["later"])
    assert await timer_keys_empty(redis)


# --- timers armed and disarmed inside a transition ----------------------------------------------


async def test_a_transition_arms_and_a_later_one_disarms_atomically(
    redis: Redis, store: TransferStore, timer_queue: TimerQueue
) -> None:
    expiry = Timer("t1:code", future(300), "bridge_code_expiry", {"transfer_id": "t1"})
    await store.create("t1", psap_id="p1", state=S.AWAITING_BRIDGE, fields={}, timers=[expiry])
    assert await timer_queue.due_at("t1:code") == pytest.approx(expiry.due.timestamp() * 1000, 1)

    ring = Timer("t1:ring", future(20), "ring_timeout", {"transfer_id": "t1", "attempt": 0})
    await store.transition(
        "t1", E.BRIDGED, psap_id="p1", expected_version=1, arm=[ring], disarm=["t1:code"]
    )
    assert await timer_queue.due_at("t1:code") is None
    assert await redis.hget(keys.TIMERS_PAYLOAD, "t1:code") is None
    assert await timer_queue.due_at("t1:ring") is not None
    assert await redis.hget(keys.TIMERS_PAYLOAD, "t1:ring") == ring.encoded().encode()

    await store.transition("t1", E.ANSWERED, psap_id="p1", disarm=["t1:ring"])
    assert await timer_keys_empty(redis)


async def test_a_refused_transition_arms_and_disarms_nothing(
    redis: Redis, store: TransferStore, timer_queue: TimerQueue
) -> None:
    await store.create(
        "t2",
        psap_id="p1",
        state=S.AWAITING_BRIDGE,
        fields={},
        timers=[Timer("t2:code", future(300), "bridge_code_expiry")],
    )
    ring = Timer("t2:ring", future(20), "ring_timeout")

    with pytest.raises(TransitionConflict):  # stale version
        await store.transition(
            "t2", E.BRIDGED, psap_id="p1", expected_version=9, arm=[ring], disarm=["t2:code"]
        )
    with pytest.raises(TransitionNotAllowed):  # the table says no
        await store.transition("t2", E.ANSWERED, psap_id="p1", arm=[ring], disarm=["t2:code"])

    assert await timer_queue.due_at("t2:ring") is None
    assert await redis.hget(keys.TIMERS_PAYLOAD, "t2:ring") is None
    assert await timer_queue.due_at("t2:code") is not None


async def test_rearming_in_a_transition_takes_the_lease_from_its_holder(
    store: TransferStore, timer_queue: TimerQueue
) -> None:
    await store.create(
        "t3",
        psap_id="p1",
        state=S.RINGING,
        fields={},
        timers=[Timer("t3:ring", past(), "ring_timeout")],
    )
    assert [c.id for c in await timer_queue.claim("A", lease_s=30)] == ["t3:ring"]
    # The ring timer fired while a status callback moved the transfer to the next destination,
    # which re-armed the same timer for the new attempt.
    await store.transition(
        "t3", E.NEXT_DESTINATION, psap_id="p1", arm=[Timer("t3:ring", future(20), "ring_timeout")]
    )
    assert await timer_queue.ack("t3:ring", "A") is False
    assert await timer_queue.due_at("t3:ring") is not None


async def test_a_slow_handler_does_not_hold_up_the_rest_of_its_batch(redis: Redis) -> None:
    queue = TimerQueue(redis)
    done: list[str] = []
    release = asyncio.Event()

    async def slow(timer_id: str, payload: Mapping[str, Any]) -> None:
        await release.wait()
        done.append(timer_id)

    async def fast(timer_id: str, payload: Mapping[str, Any]) -> None:
        done.append(timer_id)

    now = datetime.now(UTC) - timedelta(seconds=1)
    await queue.arm([Timer("slow:1", now, "slow"), Timer("fast:1", now, "fast")])
    worker = TimerWorker(queue, {"slow": slow, "fast": fast}, lease_s=30)
    tick = asyncio.create_task(worker.tick())
    for _ in range(100):
        if done:
            break
        await asyncio.sleep(0.01)
    assert done == ["fast:1"], "the fast timer waited for the slow one"
    release.set()
    assert await tick == 2
    assert done == ["fast:1", "slow:1"]
