"""Races on one transfer: the Lua guard lets exactly one writer win, and webhook idempotency."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.cluster import key_slot

from gateway.core import keys
from gateway.core.errors import Conflict
from gateway.core.records import Tally
from gateway.core.timers import Timer
from gateway.handback.store import HandbackStore
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import (
    TransferNotFound,
    TransferStore,
    Transition,
    TransitionConflict,
    TransitionNotAllowed,
)

S = TransferState
E = TransferEvent
RACERS = 50


@pytest.fixture
async def other_store(redis_url: str) -> AsyncIterator[TransferStore]:
    """A second process's view: its own client (own connections), the same server."""
    client = Redis.from_url(redis_url, socket_timeout=5)
    yield TransferStore(client, retention_s=3600, audit_maxlen=100)
    await client.aclose()


async def test_fifty_conflicting_transitions_exactly_one_wins(
    store: TransferStore, other_store: TransferStore, redis: Redis
) -> None:
    await store.create("race", psap_id="p1", state=S.AWAITING_BRIDGE, fields={})
    events = list(itertools.islice(itertools.cycle([E.CANCEL, E.BRIDGED, E.EXPIRE]), RACERS))
    stores = itertools.cycle([store, other_store])

    results = await asyncio.gather(
        *(
            next(stores).transition(
                "race", event, psap_id="p1", expected_version=1, actor=f"racer-{i}"
            )
            for i, event in enumerate(events)
        ),
        return_exceptions=True,
    )

    wins = [r for r in results if isinstance(r, Transition)]
    losses = [r for r in results if isinstance(r, TransitionConflict | TransitionNotAllowed)]
    assert len(wins) == 1, results
    assert len(losses) == RACERS - 1, [r for r in results if not isinstance(r, Conflict)]
    winner = wins[0]
    assert winner.version == 2
    assert winner.state in {S.CANCELLED, S.RINGING, S.EXPIRED}
    # Every loser was told where the transfer now stands.
    assert all((e.state, e.version) == (winner.state, 2) for e in losses)

    state, version = await redis.hmget(keys.transfer("race"), ["state", "version"])
    assert (state.decode(), int(version)) == (winner.state, 2)
    trail = await store.audit("race")
    assert [e["event"] for e in trail[:1]] == ["created"]
    assert len(trail) == 2, trail
    won_by = results.index(winner)
    assert trail[1]["event"] == events[won_by]
    assert trail[1]["actor"] == f"racer-{won_by}"
    assert (trail[1]["from"], trail[1]["to"]) == (S.AWAITING_BRIDGE, winner.state)


async def test_unguarded_racers_serialize_along_the_table(store: TransferStore) -> None:
    """Without a version guard every writer still sees the state the last one left."""
    await store.create("serial", psap_id="p1", state=S.RINGING, fields={})
    results = await asyncio.gather(
        *(store.transition("serial", E.NEXT_DESTINATION, psap_id="p1") for _ in range(20)),
        store.transition("serial", E.CALLER_LEFT, psap_id="p1"),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, Transition)]
    refused = [r for r in results if isinstance(r, TransitionNotAllowed)]
    assert len(ok) + len(refused) == 21
    assert sorted(r.version for r in ok) == list(range(2, 2 + len(ok)))
    trail = await store.audit("serial")
    assert len(trail) == 1 + len(ok)
    assert trail[-1]["to"] == S.ABANDONED
    # Once abandoned, every later next_destination was refused by the table.
    assert all(e.state is S.ABANDONED for e in refused)


async def test_create_of_an_existing_id_is_a_conflict_and_changes_nothing(
    store: TransferStore, redis: Redis
) -> None:
    await store.create("dup", psap_id="p1", state=S.AWAITING_BRIDGE, fields={})
    await store.transition("dup", E.BRIDGED, psap_id="p1")
    with pytest.raises(TransitionConflict) as raised:
        await store.create("dup", psap_id="p2", state=S.NOT_TRANSFERRED, fields={})
    assert (raised.value.state, raised.value.version) == (S.RINGING, 2)
    assert raised.value.status == 409
    assert await redis.hget(keys.transfer("dup"), "state") == b"ringing"
    assert len(await store.audit("dup")) == 2
    assert await store.active_for_psap("p2") == set()


async def test_concurrent_creates_of_one_id_one_wins(
    store: TransferStore, other_store: TransferStore
) -> None:
    results = await asyncio.gather(
        *(
            (store if i % 2 else other_store).create(
                "twin", psap_id="p1", state=S.AWAITING_BRIDGE, fields={}
            )
            for i in range(20)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Transition) for r in results) == 1
    assert sum(isinstance(r, TransitionConflict) for r in results) == 19
    assert len(await store.audit("twin")) == 1


async def test_transition_of_a_missing_transfer_is_not_found(store: TransferStore) -> None:
    with pytest.raises(TransferNotFound):
        await store.transition("nobody", E.CANCEL, psap_id="p1")


@pytest.fixture
def claims(redis: Redis) -> tuple[HandbackStore, HandbackStore]:
    """Two stores (two processes) claiming webhook events on one Redis."""
    return HandbackStore(redis), HandbackStore(redis)


async def test_a_claim_is_true_once_per_identity_and_per_record(
    claims: tuple[HandbackStore, HandbackStore],
) -> None:
    one, other = claims
    assert await one.claim("hb_1", "CA123:ringing") is True
    assert await one.claim("hb_1", "CA123:ringing") is False
    assert await other.claim("hb_1", "CA123:ringing") is False
    # Another status of the same call, or the same status on another record, is new.
    assert await one.claim("hb_1", "CA123:answered") is True
    assert await one.claim("hb_2", "CA123:ringing") is True
    assert await one.claim("hb_2", "CA123:ringing") is False


async def test_concurrent_claims_of_one_identity_exactly_one_true(
    claims: tuple[HandbackStore, HandbackStore],
) -> None:
    one, other = claims
    won = await asyncio.gather(
        *((one if i % 2 else other).claim("hb_1", "CF9:seq:4") for i in range(30))
    )
    assert won.count(True) == 1


async def test_a_claim_expires(claims: tuple[HandbackStore, HandbackStore], redis: Redis) -> None:
    one, _ = claims
    assert await one.claim("hb_1", "CA1:completed", ttl_s=1) is True
    ttl = await redis.ttl(keys.handback_event("hb_1", "CA1:completed"))
    assert 0 < ttl <= 1
    assert await one.claim("hb_1", "CA1:completed", ttl_s=1) is False
    for _ in range(40):  # the key lives 1 s; poll up to 4 s
        await asyncio.sleep(0.1)
        if not await redis.exists(keys.handback_event("hb_1", "CA1:completed")):
            break
    assert await one.claim("hb_1", "CA1:completed", ttl_s=1) is True


def test_claim_keys_hold_no_raw_identity_and_share_the_record_slot() -> None:
    key = keys.handback_event("hb_1", "CA0123456789:+12065550123")
    assert "+12065550123" not in key
    assert "CA0123456789" not in key
    assert key.startswith(keys.handback("hb_1"))


async def test_every_key_a_transition_touches_is_in_one_slot(
    redis: Redis, store: TransferStore
) -> None:
    """Redis Cluster runs a script only when all its keys hash to one slot."""
    due = datetime.now(UTC)
    await store.create(
        "tr_slot",
        psap_id="kc-valleycom",
        state=TransferState.AWAITING_BRIDGE,
        fields={},
        timers=[Timer("expire:tr_slot", due, "bridge_expiry")],
        tally=Tally("kc-valleycom", "2026-11-24", ("considered|first_person|",), (("a|b|c", 1.0),)),
    )
    await store.transition(
        "tr_slot",
        TransferEvent.BRIDGED,
        psap_id="kc-valleycom",
        occupy="crisis-connections-988",
        void_code="0" * 64,
    )
    names = [k async for k in redis.scan_iter(match=keys.PREFIX + "*")]
    assert len(names) >= 8
    assert {key_slot(name) for name in names} == {key_slot(keys.PREFIX.encode())}
