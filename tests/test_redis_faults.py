"""Redis faults under the store: replies lost mid-command, and a server restarted under load.

The client is the gateway's own (``gateway.core.redis_client.connect``): it sends a command again on
a fresh connection after a connection error. These tests show that every write stays
exactly-once when the first send did run (its reply was lost), and that once Redis answers again
after a restart, no request fails for a connection opened before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.records import Tally
from gateway.core.redis_client import FAILOVER_ERRORS, FailoverRetry, connect
from gateway.core.timers import Timer, TimerQueue
from gateway.handback.store import HandbackStore
from gateway.transfer.service import code_digest
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import TransferStore
from tests.conftest import AppFactory, KeyMaker
from tests.faults import RedisProcess, ReplyDroppingProxy
from tests.telephony import PSAP, SAFE


@pytest.fixture
async def proxy(redis_process: RedisProcess) -> AsyncIterator[ReplyDroppingProxy]:
    front = ReplyDroppingProxy(redis_process.port)
    await front.start()
    yield front
    await front.aclose()


@pytest.fixture
async def proxied(proxy: ReplyDroppingProxy) -> AsyncIterator[tuple[TransferStore, Redis]]:
    """A store on the gateway's own client, through the proxy; and a direct client to look."""
    client = connect(proxy.url, socket_timeout_s=2)
    direct = Redis(host="127.0.0.1", port=proxy.upstream_port, decode_responses=True)
    yield TransferStore(client, retention_s=3600), direct
    await client.aclose()
    await direct.aclose()


async def _warm(store: TransferStore) -> None:
    """Load the scripts on the server, so the dropped reply is the script's own, not NOSCRIPT."""
    await store.create("tr_warm", psap_id=PSAP, state=TransferState.AWAITING_BRIDGE, fields={})
    await store.transition(
        "tr_warm", TransferEvent.CANCEL, psap_id=PSAP, expected_state=TransferState.AWAITING_BRIDGE
    )
    await HandbackStore(store.redis).claim("hb_warm", "warm")
    await store.redeem_code("warm", "CAwarm")


async def test_a_transition_whose_reply_was_lost_is_applied_once(
    proxied: tuple[TransferStore, Redis], proxy: ReplyDroppingProxy
) -> None:
    store, direct = proxied
    await _warm(store)
    day = datetime.now(UTC).date().isoformat()
    await store.create("tr_1", psap_id=PSAP, state=TransferState.AWAITING_BRIDGE, fields={})

    proxy.drop_next_reply(b"EVALSHA")
    result = await store.transition(
        "tr_1",
        TransferEvent.BRIDGED,
        psap_id=PSAP,
        expected_state=TransferState.AWAITING_BRIDGE,
        expected_version=1,
        tally=Tally(PSAP, day, ("offered|first_person|x",)),
    )

    assert proxy.dropped == 1  # the first send ran; its reply never came
    assert (result.state, result.version) == (TransferState.RINGING, 2)
    assert await direct.hget(keys.transfer("tr_1"), "version") == "2"
    assert await direct.xlen(keys.transfer_audit("tr_1")) == 2  # created, bridged: once
    counters = await direct.hgetall(keys.stats_day(PSAP, day))
    assert counters == {"offered|first_person|x": "1"}


async def test_a_claim_whose_reply_was_lost_is_still_its_claimers(
    proxied: tuple[TransferStore, Redis], proxy: ReplyDroppingProxy
) -> None:
    store, _ = proxied
    await _warm(store)
    proxy.drop_next_reply(b"EVALSHA")
    claims = HandbackStore(store.redis)
    assert await claims.claim("hb_1", "participant:CA1:in-progress") is True
    assert proxy.dropped == 1
    assert await claims.claim("hb_1", "participant:CA1:in-progress") is False


async def test_a_code_whose_redemption_reply_was_lost_still_opens_its_transfer(
    proxied: tuple[TransferStore, Redis], proxy: ReplyDroppingProxy
) -> None:
    store, _ = proxied
    await _warm(store)
    digest = code_digest("123456")
    assert await store.issue_code(digest, "tr_1", ttl_s=60)
    proxy.drop_next_reply(b"EVALSHA")
    assert (await store.redeem_code(digest, "CAcaller")).owner == "tr_1"
    assert proxy.dropped == 1
    # The same call asking again gets the same answer; any other call a wrong code.
    assert (await store.redeem_code(digest, "CAcaller")).owner == "tr_1"
    assert (await store.redeem_code(digest, "CAother")).owner is None


async def test_once_redis_answers_after_a_restart_no_request_fails(
    make_client: AppFactory, make_key: KeyMaker, redis_process: RedisProcess
) -> None:
    client = await make_client(redis_url=redis_process.url)
    headers = {"Authorization": f"Bearer {make_key(PSAP, 'psap')}"}
    body: dict[str, Any] = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
    opened = await (await client.post("/v1/transfers", json=body, headers=headers)).json()
    path = f"/v1/transfers/{opened['id']}"

    async def burst() -> list[int]:
        answers = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(30)))
        return [a.status for a in answers]

    assert await burst() == [200] * 30  # thirty pooled connections, all opened now

    redis_process.stop()
    redis_process.start()
    deadline = asyncio.get_running_loop().time() + 10
    while (await client.get("/readyz")).status != 200:
        assert asyncio.get_running_loop().time() < deadline, "never ready again"
        await asyncio.sleep(0.05)

    assert await burst() == [200] * 30
    decided = await client.post("/v1/transfers", json=body, headers=headers)
    assert decided.status == 201


async def test_timers_claimed_by_a_call_whose_reply_was_lost_are_still_handed_out(
    proxy: ReplyDroppingProxy,
) -> None:
    """A claim that ran but lost its reply is retried by redis-py: the retry gets the timers
    the first send claimed, rather than nothing (they would wait out a whole lease)."""
    client = connect(proxy.url, socket_timeout_s=2)
    try:
        queue = TimerQueue(client)
        await queue.claim("warm", lease_s=30)  # scripts loaded: the dropped reply is the claim's
        due = datetime.now(UTC)
        await queue.arm([Timer("ring:tr_1:1", due, "ring_timeout", {"transfer_id": "tr_1"})])
        proxy.drop_next_reply(b"EVALSHA")
        claimed = await queue.claim("worker", lease_s=30)
        assert proxy.dropped == 1
        assert [t.id for t in claimed] == ["ring:tr_1:1"]
        assert await queue.claim("worker", lease_s=30) == []  # not handed out twice
    finally:
        await client.aclose()


class ReplyHoldingProxy(ReplyDroppingProxy):
    """Like ``ReplyDroppingProxy``, but once armed it forwards the command and then never
    relays its reply, keeping the connection open: the caller's socket times out — a primary
    that stopped answering mid-failover, after running the command."""

    hold_connection = True


@pytest.mark.ha
async def test_a_transition_timed_out_during_a_failover_is_sent_again_and_applied_once(
    redis_process: RedisProcess,
) -> None:
    """The Sentinel/Cluster client also sends a command again after a timeout (the old primary
    may be silent, not gone); the script's token makes the repeat "already applied"."""
    proxy = ReplyHoldingProxy(redis_process.port)
    await proxy.start()
    told: list[str] = []
    client = Redis.from_url(  # what connect() builds for a Sentinel set, minus the sentinels
        proxy.url,
        socket_timeout=0.5,
        retry=FailoverRetry(window_s=5, on_failure=told.append),
        retry_on_error=list(FAILOVER_ERRORS),
    )
    direct = Redis(host="127.0.0.1", port=redis_process.port, decode_responses=True)
    try:
        store = TransferStore(client, retention_s=3600)
        await _warm(store)
        await store.create("tr_1", psap_id=PSAP, state=TransferState.AWAITING_BRIDGE, fields={})
        proxy.drop_next_reply(b"EVALSHA")
        result = await store.transition(
            "tr_1",
            TransferEvent.BRIDGED,
            psap_id=PSAP,
            expected_state=TransferState.AWAITING_BRIDGE,
            expected_version=1,
        )
        assert proxy.dropped == 1
        assert told == ["TimeoutError"]
        assert (result.state, result.version) == (TransferState.RINGING, 2)
        assert await direct.xlen(keys.transfer_audit("tr_1")) == 2  # created, bridged: once
    finally:
        await client.aclose()
        await direct.aclose()
        await proxy.aclose()
