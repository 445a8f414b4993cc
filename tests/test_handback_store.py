"""The handback machine as data, its generated scripts, and the write-once guard on real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.records import encode_fields
from gateway.core.scripts import source, table_header
from gateway.handback.states import (
    INITIAL_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    HandbackEvent,
    HandbackState,
    apply_event,
)
from gateway.handback.store import (
    HandbackConflict,
    HandbackNotAllowed,
    HandbackNotFound,
    HandbackStore,
)
from gateway.transfer.states import TERMINAL_STATES as TRANSFER_TERMINAL

S = HandbackState
E = HandbackEvent


def test_the_table_is_closed_and_terminal_states_lead_nowhere() -> None:
    reachable = set(INITIAL_STATES) | {s for row in TRANSITIONS.values() for s in row.values()}
    assert reachable == set(HandbackState)
    assert not (TERMINAL_STATES & set(TRANSITIONS))
    assert all(state.terminal for state in TERMINAL_STATES)
    assert apply_event(S.DIALING, E.RETRY) is S.DIALING
    with pytest.raises(KeyError):
        apply_event(S.FAILED, E.ANSWERED)


def test_the_generated_scripts_carry_the_handback_table() -> None:
    header = table_header(TRANSITIONS, TERMINAL_STATES)
    assert "['dialing'] = {['retry'] = 'dialing'" in header
    terminal_line = next(line for line in header.splitlines() if "TERMINAL" in line)
    for state in TERMINAL_STATES:
        assert f"['{state}'] = true" in terminal_line
    for state in TRANSFER_TERMINAL - set(TERMINAL_STATES):
        assert f"['{state}']" not in terminal_line, "the transfer's terminal states leaked in"
    assert header in source("transition", TRANSITIONS, TERMINAL_STATES)


async def make(store: HandbackStore, state: HandbackState = S.DIALING) -> str:
    handback_id = "hb_" + "c" * 24
    await store.create(
        handback_id,
        psap_id="kc-valleycom",
        state=state,
        fields=encode_fields(
            mode="data",
            center_org="crisis-connections",
            reason="other",
            eido_id="urn:emergency:uid:incidentid:x:y",
            attempts=[],
        ),
        eido='{"eidoVersion":"1.0"}',
        now=datetime.now(UTC),
    )
    return handback_id


async def test_transitions_follow_the_table_with_a_version_guard(redis: Redis) -> None:
    store = HandbackStore(redis, retention_s=600, audit_maxlen=50)
    handback_id = await make(store, S.AWAITING_BRIDGE)
    assert 0 < await redis.ttl(keys.handback(handback_id)) <= 600, "expires even while live"
    with pytest.raises(HandbackNotAllowed):
        await store.transition(
            handback_id, E.ANSWERED, expected_state=S.AWAITING_BRIDGE, expected_version=1
        )
    assert (
        await store.transition(
            handback_id, E.BRIDGED, expected_state=S.AWAITING_BRIDGE, expected_version=1
        )
        is S.DIALING
    )
    with pytest.raises(HandbackConflict):
        await store.transition(
            handback_id, E.ANSWERED, expected_state=S.AWAITING_BRIDGE, expected_version=1
        )
    assert (
        await store.transition(
            handback_id, E.EXHAUSTED, expected_state=S.DIALING, expected_version=2
        )
        is S.FAILED
    )
    assert await store.eido(handback_id) == '{"eidoVersion":"1.0"}'
    assert [e["event"] for e in await store.audit(handback_id)] == [
        "created",
        "bridged",
        "exhausted",
    ]
    with pytest.raises(HandbackNotFound):
        await store.get("hb_" + "0" * 24)


async def test_a_write_once_lands_once_under_a_race(redis: Redis) -> None:
    store = HandbackStore(redis, retention_s=600, audit_maxlen=50)
    handback_id = await make(store)

    async def confirm(made: bool) -> str:
        written = await store.annotate(
            handback_id,
            event="contact",
            fields=encode_fields(contact={"contact_made": made, "at": "x", "recorded_at": "x"}),
            guards=["contact"],
        )
        return written.status

    results = await asyncio.gather(*(confirm(i % 2 == 0) for i in range(10)))
    assert sorted(results) == ["exists"] * 9 + ["ok"]
    flagged = await store.annotate(
        handback_id,
        event="unconfirmed",
        fields=encode_fields(unconfirmed_at=datetime.now(UTC)),
        guards=["unconfirmed_at", "contact"],
    )
    assert flagged.status == "exists"
    assert flagged.field == "contact", "a confirmed handback is never flagged unconfirmed"
    events = [e["event"] for e in await store.audit(handback_id)]
    assert events.count("contact") == 1
    missing = await store.annotate("hb_" + "0" * 24, event="contact", fields={}, guards=["contact"])
    assert missing.status == "not_found"
