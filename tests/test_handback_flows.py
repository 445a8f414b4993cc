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
from pathlib import Path
from typing import Any

import pytest

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.logs import configure_logging
from gateway.settings import Settings
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
    parties = {PRIMARY: answer(), HANDBACK_LINE: answer(hangup_after_s=15)}  # x0.2: 3 s
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
        # The code was single use: keyed in again, it opens nothing.
        again = line.sandbox.start_call(CENTER_LINE, BRIDGE, digits=[created["bridge_code"]])
        await line.sandbox.wait_for(
            lambda e: e["kind"] == "twiml.gather" and e["details"]["call_sid"] == again,
            timeout=5,
        )
        await asyncio.sleep(0.3)
        assert line.dials(created["id"]) == [HANDBACK_LINE]
