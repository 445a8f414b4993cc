"""The transition table, the pure function that reads it, and the Redis script that enforces it.

The script is generated from the same table as ``apply_event``; these tests hold the two to each
other on a real Redis, pair by pair and over random event sequences.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.scripts import table_header
from gateway.transfer.states import (
    INITIAL_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    TransferEvent,
    TransferState,
    allowed_events,
    apply_event,
)
from gateway.transfer.store import (
    TransferStore,
    Transition,
    TransitionConflict,
    TransitionNotAllowed,
)

S = TransferState
E = TransferEvent
PAIRS = list(itertools.product(TransferState, TransferEvent))
RETENTION_S = 3600  # the ``store`` fixture's retention

# Hypothesis drives examples inside one test call, so function-scoped fixtures are shared by
# the examples; each example therefore works on fresh transfer and PSAP ids.
ON_REDIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# Examples each property test ran, checked by the last test of this file.
EXAMPLES_RUN: Counter[str] = Counter()
PROPERTY_TESTS = {
    "test_guards_are_checked_before_the_table_and_refusals_write_nothing",
    "test_random_event_sequences_never_leave_the_table",
}


def fresh_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def stored(redis: Redis, tid: str) -> tuple[TransferState, int]:
    """The record's state and version as Redis holds them (records here carry no call facts)."""
    state, version = await redis.hmget(keys.transfer(tid), ["state", "version"])
    assert state is not None, f"{tid} has no record"
    assert version is not None
    return TransferState(state.decode()), int(version)


# --- the pure function and the table alone ------------------------------------------------------


def test_state_and_event_names_are_the_contract() -> None:
    assert {s.value for s in TransferState} == {
        "not_transferred",
        "awaiting_bridge",
        "ringing",
        "connected",
        "completed",
        "failed",
        "abandoned",
        "cancelled",
        "expired",
    }
    terminal = {S.NOT_TRANSFERRED, S.COMPLETED, S.FAILED, S.ABANDONED, S.CANCELLED, S.EXPIRED}
    assert terminal == TERMINAL_STATES
    assert {S.NOT_TRANSFERRED, S.AWAITING_BRIDGE} == INITIAL_STATES
    assert all(s.terminal is (s in TERMINAL_STATES) for s in TransferState)


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s}-{e}" for s, e in PAIRS])
def test_apply_event_reads_exactly_the_table(state: TransferState, event: TransferEvent) -> None:
    expected = TRANSITIONS.get(state, {}).get(event)
    if expected is None:
        with pytest.raises(IllegalTransition) as raised:
            apply_event(state, event)
        assert (raised.value.state, raised.value.event) == (state, event)
        assert event not in allowed_events(state)
    else:
        assert apply_event(state, event) is expected
        assert event in allowed_events(state)


def test_terminal_states_have_no_way_out_and_the_others_do() -> None:
    for state in TransferState:
        if state in TERMINAL_STATES:
            assert state not in TRANSITIONS
            assert allowed_events(state) == frozenset()
        else:
            assert allowed_events(state), f"{state} is a dead end but not terminal"


def test_the_table_is_exactly_the_designed_one() -> None:
    flat = {(s, e): t for s, row in TRANSITIONS.items() for e, t in row.items()}
    assert flat == {
        (S.AWAITING_BRIDGE, E.BRIDGED): S.RINGING,
        (S.AWAITING_BRIDGE, E.CANCEL): S.CANCELLED,
        (S.AWAITING_BRIDGE, E.EXPIRE): S.EXPIRED,
        (S.AWAITING_BRIDGE, E.NEW_CODE): S.AWAITING_BRIDGE,
        (S.RINGING, E.NEXT_DESTINATION): S.RINGING,
        (S.RINGING, E.ANSWERED): S.CONNECTED,
        (S.RINGING, E.EXHAUSTED): S.FAILED,
        (S.RINGING, E.CALLER_LEFT): S.ABANDONED,
        (S.RINGING, E.CANCEL): S.CANCELLED,
        (S.CONNECTED, E.RELEASED): S.CONNECTED,
        (S.CONNECTED, E.CONFERENCE_ENDED): S.COMPLETED,
    }


def test_no_transition_leads_back_to_an_initial_state() -> None:
    # A state may stay where it is (a new bridge code while awaiting the bridge), never return.
    targets = {t for s, row in TRANSITIONS.items() for t in row.values() if t is not s}
    assert not targets & INITIAL_STATES


def test_every_state_is_reachable_and_every_live_state_can_end() -> None:
    reachable = set(INITIAL_STATES)
    queue = deque(INITIAL_STATES)
    while queue:
        for nxt in TRANSITIONS.get(queue.popleft(), {}).values():
            if nxt not in reachable:
                reachable.add(nxt)
                queue.append(nxt)
    assert reachable == set(TransferState)

    def ends(state: TransferState, seen: frozenset[TransferState] = frozenset()) -> bool:
        if state in TERMINAL_STATES:
            return True
        return any(
            ends(nxt, seen | {state})
            for nxt in TRANSITIONS[state].values()
            if nxt not in seen | {state}
        )

    assert all(ends(s) for s in TransferState)


def test_generated_lua_header_names_every_row_and_terminal_state() -> None:
    header = table_header(TRANSITIONS, TERMINAL_STATES)
    for state, row in TRANSITIONS.items():
        cells = ", ".join(f"['{e}'] = '{t}'" for e, t in row.items())
        assert f"['{state}'] = {{{cells}}}," in header
    for state in TERMINAL_STATES:
        assert f"['{state}'] = true" in header
    for state in set(TransferState) - TERMINAL_STATES:
        assert f"['{state}'] = true" not in header


# --- the Redis script agrees with the pure function ---------------------------------------------


async def test_script_agrees_with_apply_event_for_every_pair(
    store: TransferStore, redis: Redis
) -> None:
    for state, event in PAIRS:
        tid = fresh_id(f"{state}-{event}")
        await store.create(tid, psap_id="p1", state=state, fields={})
        try:
            expected = apply_event(state, event)
        except IllegalTransition:
            with pytest.raises(TransitionNotAllowed) as raised:
                await store.transition(tid, event, psap_id="p1")
            assert (raised.value.state, raised.value.event) == (state, event)
            assert await stored(redis, tid) == (state, 1), f"{state}/{event} wrote"
            assert len(await store.audit(tid)) == 1
        else:
            result = await store.transition(tid, event, psap_id="p1", expected_version=1)
            assert (result.state, result.version) == (expected, 2), f"{state}/{event}"
            assert await stored(redis, tid) == (expected, 2)
            last = (await store.audit(tid))[-1]
            assert (last["from"], last["event"], last["to"]) == (state, event, expected)


@ON_REDIS
@given(
    state=st.sampled_from(TransferState),
    event=st.sampled_from(TransferEvent),
    state_guard=st.sampled_from(["none", "right", "wrong"]),
    version_guard=st.sampled_from(["none", "right", "wrong"]),
)
async def test_guards_are_checked_before_the_table_and_refusals_write_nothing(
    store: TransferStore,
    redis: Redis,
    state: TransferState,
    event: TransferEvent,
    state_guard: str,
    version_guard: str,
) -> None:
    EXAMPLES_RUN["test_guards_are_checked_before_the_table_and_refusals_write_nothing"] += 1
    tid = fresh_id("guard")
    await store.create(tid, psap_id="p1", state=state, fields={})
    other_state = next(s for s in TransferState if s is not state)
    expected_state = {"none": None, "right": state, "wrong": other_state}[state_guard]
    expected_version = {"none": None, "right": 1, "wrong": 7}[version_guard]
    guard_fails = "wrong" in (state_guard, version_guard)

    async def attempt() -> Transition:
        return await store.transition(
            tid,
            event,
            psap_id="p1",
            expected_state=expected_state,
            expected_version=expected_version,
        )

    if guard_fails:
        with pytest.raises(TransitionConflict) as conflict:
            await attempt()
        assert (conflict.value.state, conflict.value.version) == (state, 1)
    elif event not in allowed_events(state):
        with pytest.raises(TransitionNotAllowed):
            await attempt()
    else:
        result = await attempt()
        assert (result.state, result.version) == (apply_event(state, event), 2)
        return
    assert await stored(redis, tid) == (state, 1)
    assert [e["event"] for e in await store.audit(tid)] == ["created"]


# --- random event sequences through the store ---------------------------------------------------


async def check_retention(redis: Redis, tid: str, state: TransferState) -> None:
    for key in (keys.transfer(tid), keys.transfer_audit(tid)):
        ttl = await redis.ttl(key)
        if state in TERMINAL_STATES:
            assert 0 < ttl <= RETENTION_S, f"{key} in {state} has TTL {ttl}"
        else:
            assert ttl == -1, f"{key} in live state {state} has TTL {ttl}"


@ON_REDIS
@given(data=st.data())
async def test_random_event_sequences_never_leave_the_table(
    store: TransferStore, redis: Redis, data: st.DataObject
) -> None:
    EXAMPLES_RUN["test_random_event_sequences_never_leave_the_table"] += 1
    tid, psap = fresh_id("seq"), fresh_id("psap")
    state = data.draw(st.sampled_from(sorted(INITIAL_STATES)), label="initial")
    await store.create(tid, psap_id=psap, state=state, fields={})
    version = 1
    assert (tid in await store.active_for_psap(psap)) is (state not in TERMINAL_STATES)
    await check_retention(redis, tid, state)

    steps = data.draw(st.integers(min_value=1, max_value=12), label="steps")
    for _ in range(steps):
        # Mostly events the state allows (so sequences get deep), sometimes any event at all.
        legal = sorted(allowed_events(state))
        pool = legal if legal and data.draw(st.booleans(), label="legal?") else list(E)
        event = data.draw(st.sampled_from(pool), label="event")
        stale = data.draw(st.integers(min_value=0, max_value=5), label="stale") == 0
        guard = version - 1 if stale else data.draw(st.sampled_from([None, version]))
        step = store.transition(tid, event, psap_id=psap, expected_version=guard)
        if stale:
            with pytest.raises(TransitionConflict) as conflict:
                await step
            assert (conflict.value.state, conflict.value.version) == (state, version)
        elif event not in allowed_events(state):
            with pytest.raises(TransitionNotAllowed):
                await step
            with pytest.raises(IllegalTransition):
                apply_event(state, event)
        else:
            result = await step
            state, version = apply_event(state, event), version + 1
            assert (result.state, result.version) == (state, version)
        assert await stored(redis, tid) == (state, version)
        assert (tid in await store.active_for_psap(psap)) is (state not in TERMINAL_STATES)
        await check_retention(redis, tid, state)

    trail = await store.audit(tid)
    assert trail[0]["event"] == "created"
    assert (trail[0]["to"], trail[0]["version"]) in {(str(s), "1") for s in INITIAL_STATES}
    assert [int(e["version"]) for e in trail] == list(range(1, version + 1))
    for previous, entry in itertools.pairwise(trail):
        frm, ev, to = S(entry["from"]), E(entry["event"]), S(entry["to"])
        assert TRANSITIONS[frm][ev] is to, f"{frm} --{ev}--> {to} is not in the table"
        assert entry["from"] == previous["to"]
    assert trail[-1]["to"] == state
    # The PSAP's index of every transfer keeps it whatever state it ends in.
    assert await redis.zscore(keys.psap_transfers(psap), tid) is not None


def test_the_property_tests_ran_their_examples(request: pytest.FixtureRequest) -> None:
    """Guard against an async ``@given`` test passing while running no example at all."""
    selected = {item.name for item in request.session.items}
    for name in EXAMPLES_RUN.keys() | PROPERTY_TESTS:
        if name in selected:
            assert EXAMPLES_RUN[name] >= 20, f"{name} ran {EXAMPLES_RUN[name]} examples"
