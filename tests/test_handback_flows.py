"""Handbacks end to end: the real gateway and the Twilio sandbox over real HTTP.

Live: a transfer is brought to ``connected`` through the sandbox, then the 988 center hands it
back and the gateway dials the PSAP's handback line into the caller's conference. Data-only: the
center's phone system keys a handback code in on the bridge line. Throughout, the gateway never
ends the caller's (PSAP-side bridge) leg or the counselor's leg.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.logs import configure_logging
from gateway.core.settings import Settings
from gateway.web.twilio import WRONG_CODE
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import BRIDGE, PRIMARY, PSAP, Line, short_ring_timeouts, wired
from tests.test_eido import eido_errors
from tests.test_handback_api import FULL, Receiver, receiver  # noqa: F401 - the fixture
from tests.test_transfer_flows import psap_leg_untouched

pytestmark = pytest.mark.slow

HANDBACK_LINE = "+12065550100"  # kc-valleycom's handback_number
CENTER_LINE = "+12065550177"  # the 988 center's PBX calling the bridge line
FAST = {"handback_retry_delay_s": 0.2, "handback_ring_timeout_s": 5}


@pytest.fixture
def psap_key(make_key: KeyMaker, config_dir: Path) -> str:
    short_ring_timeouts(config_dir)
    return make_key(PSAP, "psap")


@pytest.fixture
def center(make_key: KeyMaker) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"}


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Everything the gateway logs, through its real redacting JSON handler."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def answer(after_s: float = 0.5, hangup_after_s: float | None = None) -> PartyConfig:
    return PartyConfig(
        behaviour=Behaviour.ANSWER, answer_after_s=after_s, hangup_after_s=hangup_after_s
    )


async def handback_state(
    line: Line, handback_id: str, state: str, within_s: float = 10.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        resp = await line.client.get(f"/v1/handbacks/{handback_id}", headers=line.headers)
        shown: dict[str, Any] = await resp.json()
        assert resp.status == 200, shown
        if shown["state"] == state:
            return shown
        assert asyncio.get_running_loop().time() < deadline, f"still {shown['state']}: {shown}"
        await asyncio.sleep(0.05)


async def connected_transfer(line: Line) -> tuple[dict[str, Any], str, str]:
    """A transfer connected to the primary 988 center: (transfer, caller leg, counselor leg)."""
    opened = await line.open(callback_number="+12065550123")
    caller_leg = line.dial_bridge(opened["bridge_code"])
    await line.wait_state(opened["id"], "connected")
    while True:
        transfer = await line.get(opened["id"])
        counselor_leg = transfer["attempts"][0]["call_sid"]
        if counselor_leg:
            return transfer, caller_leg, counselor_leg
        await asyncio.sleep(0.05)


def leg_untouched(line: Line, call_sid: str) -> None:
    """A leg the gateway must never end: not ended by the gateway, no REST request on it."""
    call = line.sandbox.call(call_sid)
    assert call.get("ended_by") in (None, "party"), call
    for event in line.sandbox.timeline("rest.request"):
        assert call_sid not in event["details"]["path"], "the gateway touched the leg by REST"


def dials_to(line: Line, conference: str, number: str) -> int:
    return sum(1 for n in line.dials(conference) if n == number)


async def test_live_handback_dials_the_psap_into_the_callers_conference(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    log_text: io.StringIO,
) -> None:
    # The call-taker hangs up when the test says so: a timed hang-up could come before a slow
    # run had looked at the conference with all three in it.
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer()}
    async with wired(make_client, settings, psap_key, parties=parties, **FAST) as line:
        transfer, caller_leg, counselor_leg = await connected_transfer(line)
        resp = await line.client.post(
            "/v1/handbacks", json={"transfer_id": transfer["id"], **FULL}, headers=center
        )
        created = await resp.json()
        assert resp.status == 201, created
        assert created["mode"] == "live"
        assert created["state"] == "dialing"
        assert "bridge_code" not in created

        connected = await handback_state(line, created["id"], "connected")
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert line.dials(transfer["id"]) == [PRIMARY, HANDBACK_LINE]
        (conference,) = line.sandbox.conferences()
        assert conference["friendly_name"] == transfer["id"]
        in_conference = {p["call_sid"] for p in conference["participants"]}
        assert {caller_leg, counselor_leg} <= in_conference, "the counselor stays on"
        assert len(in_conference) == 3

        resp = await line.client.post(
            f"/v1/handbacks/{created['id']}/contact",
            json={"contact_made": True, "note": "officer spoke with her at the door"},
            headers=line.headers,
        )
        assert resp.status == 200
        (call_taker,) = in_conference - {caller_leg, counselor_leg}
        line.sandbox.hang_up(call_taker)
        await handback_state(line, created["id"], "completed")
        eido = await (
            await line.client.get(f"/v1/handbacks/{created['id']}/eido", headers=line.headers)
        ).json()
        assert eido_errors(eido) == []
        assert eido["callComponent"][0]["callStateRegistryText"] == "partyAdd"
        still = await line.get(transfer["id"])
        assert still["state"] == "connected"
        psap_leg_untouched(line, caller_leg)
        leg_untouched(line, counselor_leg)
        assert line.sandbox.call(counselor_leg)["status"] == "in-progress"

    logged = log_text.getvalue()
    assert "handback transition" in logged, "the capture saw the handback"
    for secret in (
        "stockpiled pills",
        "1200 Main St",
        "47.381234",
        "122.234567",
        "+12065550123",
        "2065550123",
        "officer spoke with her",
        "c-104",
    ):
        assert secret not in logged, secret


async def test_a_busy_handback_line_fails_loudly_and_drops_nobody(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    receiver: Receiver,  # noqa: F811
    log_text: io.StringIO,
) -> None:
    parties = {PRIMARY: answer(), HANDBACK_LINE: PartyConfig(behaviour=Behaviour.BUSY)}
    async with wired(make_client, settings, psap_key, parties=parties, **FAST) as line:
        transfer, caller_leg, counselor_leg = await connected_transfer(line)
        resp = await line.client.post(
            "/v1/handbacks", json={"transfer_id": transfer["id"], **FULL}, headers=center
        )
        created = await resp.json()
        assert resp.status == 201, created

        failed = await handback_state(line, created["id"], "failed")
        assert [a["outcome"] for a in failed["attempts"]] == ["busy", "busy", "busy"]
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 3
        while "failed" not in failed["notices"]:  # the notice follows the transition
            await asyncio.sleep(0.05)
            failed = await handback_state(line, created["id"], "failed")
        assert failed["notices"]["failed"]["delivered"] is True
        (notice,) = receiver.of_type("handback.failed")
        assert notice["handback_id"] == created["id"]
        assert notice["transfer_id"] == transfer["id"]
        assert notice["attempts"] == ["busy", "busy", "busy"]
        assert receiver.bad_signatures == 0
        metrics = await (await line.client.get("/metrics")).text()
        assert 'gateway_handbacks_total{outcome="failed"} 1.0' in metrics

        # Nobody was dropped: the caller and the counselor are still talking.
        assert line.sandbox.call(caller_leg)["status"] == "in-progress"
        assert line.sandbox.call(counselor_leg)["status"] == "in-progress"
        psap_leg_untouched(line, caller_leg)
        leg_untouched(line, counselor_leg)
        assert (await line.get(transfer["id"]))["state"] == "connected"

    errors = [
        json.loads(entry)
        for entry in log_text.getvalue().splitlines()
        if '"level": "error"' in entry
    ]
    assert any(e["msg"].startswith("handback failed") for e in errors), errors


async def test_a_data_only_handback_through_the_bridge_line(
    make_client: AppFactory, settings: Settings, psap_key: str, center: dict[str, str]
) -> None:
    parties = {HANDBACK_LINE: answer(hangup_after_s=10)}  # x0.2: 2 s
    async with wired(make_client, settings, psap_key, parties=parties, **FAST) as line:
        resp = await line.client.post(
            "/v1/handbacks", json={"psap_id": PSAP, **FULL}, headers=center
        )
        created = await resp.json()
        assert resp.status == 201, created
        assert created["state"] == "awaiting_bridge"
        assert created["bridge_number"] == BRIDGE

        center_leg = line.sandbox.start_call(CENTER_LINE, BRIDGE, digits=[created["bridge_code"]])
        connected = await handback_state(line, created["id"], "connected")
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert line.dials(created["id"]) == [HANDBACK_LINE]
        (conference,) = line.sandbox.conferences()
        assert conference["friendly_name"] == created["id"], "named by the opaque id"
        assert center_leg in {p["call_sid"] for p in conference["participants"]}
        said = " ".join(line.sandbox.call(center_leg)["said"]).lower()
        assert "nine one one" in said

        await handback_state(line, created["id"], "completed")
        leg_untouched(line, center_leg)
        assert line.sandbox.call(center_leg)["status"] == "in-progress"
        # The code was single use: keyed in again, it opens nothing — the caller is told the
        # code was not recognized and asked again.
        again = line.sandbox.start_call(CENTER_LINE, BRIDGE, digits=[created["bridge_code"]])
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "twiml.verb"
                and e["details"]["call_sid"] == again
                and e["details"]["verb"] == "Say"
                and WRONG_CODE in (e["details"]["text"] or "")
            ),
            timeout=5,
        )
        assert line.dials(created["id"]) == [HANDBACK_LINE]
        assert len(line.sandbox.conferences()) == 1
        assert again not in {p["call_sid"] for p in line.sandbox.conferences()[0]["participants"]}


async def test_two_handbacks_on_one_transfer_dial_the_psap_once(
    make_client: AppFactory, settings: Settings, psap_key: str, center: dict[str, str]
) -> None:
    # The call-taker stays on until the test hangs up: a timed hang-up could end the handback
    # before a slow poll ever saw it connected.
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer()}
    async with wired(make_client, settings, psap_key, parties=parties, **FAST) as line:
        transfer, _, _ = await connected_transfer(line)
        body = {"transfer_id": transfer["id"], **FULL}
        responses = await asyncio.gather(
            *(line.client.post("/v1/handbacks", json=body, headers=center) for _ in range(2))
        )
        assert sorted(r.status for r in responses) == [201, 409]
        created = await next(r for r in responses if r.status == 201).json()
        refused = await next(r for r in responses if r.status == 409).json()
        assert refused["error"]["code"] == "conflict"
        assert refused["error"]["details"] == [{"handback_id": created["id"]}]

        await handback_state(line, created["id"], "connected")
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 1
        # While it is live, any further handback is refused, naming it.
        resp = await line.client.post("/v1/handbacks", json=body, headers=center)
        assert resp.status == 409
        assert (await resp.json())["error"]["details"] == [{"handback_id": created["id"]}]

        # Once it has ended, the transfer may be handed back again.
        added = await line.sandbox.wait_for_kind("participant.added", 5, to=HANDBACK_LINE)
        line.sandbox.hang_up(added["details"]["call_sid"])
        await handback_state(line, created["id"], "completed")
        resp = await line.client.post("/v1/handbacks", json=body, headers=center)
        assert resp.status == 201, await resp.text()


async def test_a_call_taker_answering_as_the_ring_timer_runs_out_is_kept(
    make_client: AppFactory, settings: Settings, psap_key: str, center: dict[str, str]
) -> None:
    """The handback line answers just before the gateway's ring timer fires, and Twilio's
    answered callback arrives just after it (held back 1.2 s): the timer finds the leg in
    progress, leaves it alone and takes the answer — it never hangs up the call-taker."""
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer(after_s=4.8)}  # rings 5 s (x1)
    async with wired(
        make_client, settings, psap_key, parties=parties, time_scale=1.0, **FAST
    ) as line:
        transfer, caller_leg, counselor_leg = await connected_transfer(line)
        line.sandbox.configure(shuffle_callbacks=True, shuffle_window_s=1.2)
        resp = await line.client.post(
            "/v1/handbacks", json={"transfer_id": transfer["id"], **FULL}, headers=center
        )
        created = await resp.json()
        assert resp.status == 201, created

        connected = await handback_state(line, created["id"], "connected", within_s=15)
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        await asyncio.sleep(1.0)  # past the held-back callback and any redial delay
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 1
        (conference,) = line.sandbox.conferences()
        (call_taker,) = {p["call_sid"] for p in conference["participants"]} - {
            caller_leg,
            counselor_leg,
        }
        leg_untouched(line, caller_leg)
        leg_untouched(line, counselor_leg)
        assert line.sandbox.call(call_taker)["status"] == "in-progress"
        assert line.sandbox.call(call_taker).get("ended_by") is None
        # The ring timer did run out while the leg was in progress: one cancel, nothing else.
        on_leg = [
            e["details"]["params"]
            for e in line.sandbox.timeline("rest.request")
            if call_taker in e["details"]["path"]
        ]
        assert on_leg == [{"Status": "canceled"}]


async def test_no_redial_into_a_call_that_has_ended(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    receiver: Receiver,  # noqa: F811
) -> None:
    parties = {PRIMARY: answer(), HANDBACK_LINE: PartyConfig(behaviour=Behaviour.BUSY)}
    # The redial waits long enough for the hang-ups to be reported even on a loaded machine
    # (a redial made first would be cancelled when the conference ends, but it was made).
    slow_redial = {**FAST, "handback_retry_delay_s": 4.0}
    async with wired(make_client, settings, psap_key, parties=parties, **slow_redial) as line:
        transfer, caller_leg, counselor_leg = await connected_transfer(line)
        resp = await line.client.post(
            "/v1/handbacks", json={"transfer_id": transfer["id"], **FULL}, headers=center
        )
        created = await resp.json()
        assert resp.status == 201, created
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            shown = await handback_state(line, created["id"], "dialing")
            if shown["attempts"][0]["outcome"] == "busy":
                break
            assert asyncio.get_running_loop().time() < deadline, shown
            await asyncio.sleep(0.05)
        # Busy; before the redial, the caller and the counselor hang up: the call is over.
        line.sandbox.hang_up(caller_leg)
        line.sandbox.hang_up(counselor_leg)
        await line.wait_state(transfer["id"], "completed")

        failed = await handback_state(line, created["id"], "failed")
        assert [a["outcome"] for a in failed["attempts"]] == ["busy", "failed"]
        redial_due = datetime.fromisoformat(failed["attempts"][1]["started_at"])
        await asyncio.sleep((redial_due - datetime.now(UTC)).total_seconds() + 0.5)  # past it
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 1, "dialed into an empty call"
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            if receiver.of_type("handback.failed"):
                break
            assert asyncio.get_running_loop().time() < deadline, "the center was not told"
            await asyncio.sleep(0.05)
        (notice,) = receiver.of_type("handback.failed")
        assert notice["failure"] == "call_ended"
