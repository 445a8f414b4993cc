"""A live handback when the transfer's conference ends: the real gateway and the Twilio sandbox
over real HTTP.

When the conference ends, Twilio removes every participant — the PSAP's handback leg too, whose
own ``completed`` callback and the conference's ``participant-leave`` both report it — but a
Participants API leg still ringing had not joined: Twilio keeps ringing it, and answered, it
would start a new, empty conference of the same name. The handback must leave ``connected`` (or
``dialing``) whatever happens, and never put a call-taker into an empty conference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.records import encode_fields
from gateway.core.settings import Settings
from gateway.core.timers import Timer
from gateway.handback.models import HandbackAttempt
from gateway.handback.service import DIAL_TIMER, dial_timer_id
from gateway.handback.states import HandbackState as S
from gateway.web.appkeys import HANDBACKS
from tests import test_handback_flows as flows
from tests.conftest import AppFactory
from tests.telephony import PRIMARY, PUBLIC, Line, free_port, wired
from tests.test_handback_api import FULL, Receiver, receiver  # noqa: F401 - the fixture
from tests.test_handback_flows import (
    FAST,
    HANDBACK_LINE,
    connected_transfer,
    dials_to,
    handback_state,
    leg_untouched,
)
from tests.test_transfer_flows import psap_leg_untouched

pytestmark = pytest.mark.slow

psap_key = flows.psap_key  # the fixtures, shared
center = flows.center

RINGING = {**FAST, "handback_ring_timeout_s": 30}  # x0.2: the line rings up to 6 s


def answer(after_s: float = 0.5, hangup_after_s: float | None = None) -> PartyConfig:
    return PartyConfig(
        behaviour=Behaviour.ANSWER, answer_after_s=after_s, hangup_after_s=hangup_after_s
    )


async def open_live(line: Line, center: dict[str, str]) -> tuple[str, str, str, str]:
    """A connected transfer handed back live: (transfer id, handback id, caller, counselor)."""
    transfer, caller_leg, counselor_leg = await connected_transfer(line)
    resp = await line.client.post(
        "/v1/handbacks", json={"transfer_id": transfer["id"], **FULL}, headers=center
    )
    created = await resp.json()
    assert resp.status == 201, created
    assert created["mode"] == "live"
    return transfer["id"], created["id"], caller_leg, counselor_leg


async def psap_leg(line: Line) -> str:
    """The handback leg, once the gateway has dialed it."""
    added = await line.sandbox.wait_for_kind("participant.added", 5, to=HANDBACK_LINE)
    call_sid: str = added["details"]["call_sid"]
    return call_sid


def hang_up_in_turn(line: Line, *legs: str) -> Callable[[], Any]:
    async def run() -> None:
        for leg in legs:
            line.sandbox.hang_up(leg)
            await asyncio.sleep(0.2)

    return run


def live_conferences(line: Line) -> list[dict[str, Any]]:
    return [c for c in line.sandbox.conferences() if c["status"] != "completed"]


@pytest.mark.parametrize("first", ["caller", "counselor"])
async def test_a_handback_line_still_ringing_when_the_conference_ends_is_cancelled(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    receiver: Receiver,  # noqa: F811
    first: str,
) -> None:
    """The caller and the counselor hang up (either first) while the PSAP's handback line
    rings: the gateway cancels its ringing leg — it would otherwise answer into a new, empty
    conference and the handback would sit ``connected`` — and fails the handback loudly."""
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer(after_s=10)}  # x0.2: answers at 2 s
    async with wired(make_client, settings, psap_key, parties=parties, **RINGING) as line:
        transfer_id, handback_id, caller, counselor = await open_live(line, center)
        leg = await psap_leg(line)
        await line.sandbox.wait_for_kind("call.status", 5, call_sid=leg, status="ringing")
        order = (caller, counselor) if first == "caller" else (counselor, caller)
        await hang_up_in_turn(line, *order)()
        await line.sandbox.wait_for_kind("conference.event", 5, event="conference-end")

        failed = await handback_state(line, handback_id, "failed", within_s=5)
        assert [a["outcome"] for a in failed["attempts"]] == ["failed"]
        ended = await line.sandbox.wait_for_call_end(leg)
        assert (ended["status"], ended["ended_by"]) == ("canceled", "rest-api")
        on_leg = [
            e["details"]["params"]
            for e in line.sandbox.timeline("rest.request")
            if leg in e["details"]["path"]
        ]
        assert on_leg == [{"Status": "canceled"}], "only ever cancelled while it rang"

        await asyncio.sleep(2.5)  # past the moment the call-taker would have answered
        assert (await handback_state(line, handback_id, "failed"))["connected_at"] is None
        assert live_conferences(line) == [], "nobody was put into an empty conference"
        assert dials_to(line, transfer_id, HANDBACK_LINE) == 1
        assert (await line.get(transfer_id))["state"] == "completed"
        psap_leg_untouched(line, caller)
        leg_untouched(line, counselor)

        deadline = asyncio.get_running_loop().time() + 5
        while not receiver.of_type("handback.failed"):
            assert asyncio.get_running_loop().time() < deadline, "the center was not told"
            await asyncio.sleep(0.05)
        (notice,) = receiver.of_type("handback.failed")
        assert notice["handback_id"] == handback_id
        assert notice["failure"] == "call_ended"
        assert "Reach 911 by another line" in notice["message"]


@pytest.mark.parametrize("ending", ["everyone_hangs_up", "counselor_first", "ended_via_api"])
async def test_an_answered_handback_completes_when_the_conference_ends(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    ending: str,
) -> None:
    """Connected, then the conference ends — the call-taker last to hang up, or the conference
    ended with everyone in it: the PSAP leg's end is recorded and the handback completes."""
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer()}
    async with wired(make_client, settings, psap_key, parties=parties, **FAST) as line:
        transfer_id, handback_id, caller, counselor = await open_live(line, center)
        leg = await psap_leg(line)
        await handback_state(line, handback_id, "connected")
        if ending == "ended_via_api":
            (conference,) = live_conferences(line)
            line.sandbox.engine.update_conference(
                line.sandbox.engine.conferences[conference["sid"]],
                status="completed",
                announce_url=None,
                announce_method="POST",
            )
        else:
            order = (caller, counselor) if ending == "everyone_hangs_up" else (counselor, caller)
            await hang_up_in_turn(line, *order, leg)()
        await line.sandbox.wait_for_kind("conference.event", 5, event="conference-end")

        await handback_state(line, handback_id, "completed", within_s=5)
        assert (await line.get(transfer_id))["state"] == "completed"
        for event in line.sandbox.timeline("rest.request"):
            assert leg not in event["details"]["path"], "the gateway touched the call-taker"


async def test_a_lost_leg_callback_is_covered_by_the_conference_participant_leave(
    make_client: AppFactory, settings: Settings, psap_key: str, center: dict[str, str]
) -> None:
    """The PSAP leg's own ``completed`` callback never reaches the gateway (Twilio does not
    retry it); the transfer's conference reports the leg leaving, and that ends the handback."""
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer()}
    async with wired(make_client, settings, psap_key, parties=parties, **FAST) as line:
        _, handback_id, caller, counselor = await open_live(line, center)
        leg = await psap_leg(line)
        await handback_state(line, handback_id, "connected")
        gateway = line.sandbox.engine.config.deliver_via[PUBLIC]
        lost = f"http://127.0.0.1:{free_port()}/twilio/participant/handback/"
        line.sandbox.configure(
            deliver_via={f"{PUBLIC}/twilio/participant/handback/": lost, PUBLIC: gateway}
        )
        await hang_up_in_turn(line, caller, counselor, leg)()
        await line.sandbox.wait_for_kind("conference.event", 5, event="conference-end")

        await handback_state(line, handback_id, "completed", within_s=5)
        failed = [
            e["details"]["url"]
            for e in line.sandbox.timeline("webhook.failed")
            if "/participant/handback/" in e["details"]["url"]
        ]
        assert failed, "the leg's completed callback was lost"


async def test_a_leg_end_nobody_reported_is_caught_by_the_liveness_check(
    make_client: AppFactory, settings: Settings, psap_key: str, center: dict[str, str]
) -> None:
    """Every callback is lost when the conference ends: the periodic check asks Twilio, finds
    no conference in progress, and completes the handback. While the conference lives, check
    after check leaves it connected."""
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer()}
    async with wired(
        make_client, settings, psap_key, parties=parties, connected_check_s=0.5, **FAST
    ) as line:
        _, handback_id, caller, counselor = await open_live(line, center)
        leg = await psap_leg(line)
        await handback_state(line, handback_id, "connected")
        await asyncio.sleep(1.6)  # three checks while the conference lives
        assert (await handback_state(line, handback_id, "connected"))["state"] == "connected"

        line.sandbox.configure(deliver_via={PUBLIC: f"http://127.0.0.1:{free_port()}"})
        await hang_up_in_turn(line, caller, counselor, leg)()
        await handback_state(line, handback_id, "completed", within_s=10)
        audit = await line.client.app[HANDBACKS].store.audit(handback_id)
        assert audit[-1]["actor"] == "liveness-check"


async def test_the_transfer_conference_ending_while_a_redial_waits_fails_it_at_once(
    client: TestClient[Any, Any],
) -> None:
    """A live handback's line was busy and its redial waits; the transfer's conference ends:
    the handback fails then and there (the caller is gone), and the redial is never made."""
    service = client.app[HANDBACKS]
    start = datetime.now(UTC)
    redial = start + timedelta(seconds=30)
    transfer_id = "tr_" + "e" * 24
    handback_id = "hb_" + "d" * 24
    await service.store.create(
        handback_id,
        psap_id="kc-valleycom",
        state=S.DIALING,
        fields=encode_fields(
            mode="live",
            transfer_id=transfer_id,
            center_org="crisis-connections",
            reason="other",
            eido_id="urn:emergency:uid:incidentid:x:y",
            attempts=[
                HandbackAttempt(started_at=start, outcome="busy", ended_at=start),
                HandbackAttempt(started_at=redial),
            ],
        ),
        eido='{"eidoVersion":"1.0"}',
        transfer_id=transfer_id,
        now=start,
    )
    await service.timers.arm(
        [Timer(dial_timer_id(handback_id, 2), redial, DIAL_TIMER, {"handback_id": handback_id})]
    )
    # Another transfer's conference, and this one's other events, change nothing.
    await service.transfer_conference_event("tr_" + "f" * 24, "conference-end", "")
    await service.transfer_conference_event(transfer_id, "participant-leave", "CA" + "0" * 32)
    assert (await service.store.get(handback_id)).state is S.DIALING

    await service.transfer_conference_event(transfer_id, "conference-end", "")
    # The failure is one write (state, attempts, timers, the transfer's guard): wait for it.
    # (Not ``service.tasks.drain()``: the app's task set holds its long-lived workers too —
    # the drain would wait them out for its whole timeout, then cancel them under the app.)
    deadline = asyncio.get_running_loop().time() + 10
    while (handback := await service.store.get(handback_id)).state is S.DIALING:
        assert asyncio.get_running_loop().time() < deadline, "the handback never failed"
        await asyncio.sleep(0.02)
    assert handback.state is S.FAILED
    assert handback.failure == "call_ended"
    assert [a.outcome for a in handback.attempts] == ["busy", "failed"]
    assert await service.timers.due_at(dial_timer_id(handback_id, 2)) is None
    assert await service.store.live_of_transfer(transfer_id) is None, "the guard is released"
    await service.on_dial_timer(
        dial_timer_id(handback_id, 2), {"handback_id": handback_id, "attempt": 2}
    )
    assert await service.store.legs(handback_id) == {}
