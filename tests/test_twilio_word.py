"""Twilio's word before a timer's: what the provider says of a leg beats the gateway's own ring
timer, and a leg that answered is never cancelled or hung up because a timer ran out.

Callbacks are lost the way they are lost in production — delivered to nowhere (the sandbox's
delivery is pointed at a closed port for a while), never retried — so the gateway can learn
what happened only by asking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.settings import Settings
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import (
    BACKUP,
    PRIMARY,
    PSAP,
    PUBLIC,
    Line,
    free_port,
    short_ring_timeouts,
    wired,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def psap_key(make_key: KeyMaker, config_dir: Path) -> str:
    short_ring_timeouts(config_dir)
    return make_key(PSAP, "psap")


def lose_callbacks(line: Line) -> None:
    line.sandbox.configure(deliver_via={PUBLIC: f"http://127.0.0.1:{free_port()}"})


def deliver_callbacks(line: Line) -> None:
    line.sandbox.configure(deliver_via={PUBLIC: f"http://127.0.0.1:{line.client.port}"})


async def lost(line: Line, purpose: str, **params: str) -> None:
    """Wait until a callback with ``params`` was sent to nobody (and so is gone)."""
    await line.sandbox.wait_for(
        lambda e: (
            e["kind"] == "webhook.failed"
            and e["details"].get("purpose") == purpose
            and all(e["details"]["params"].get(k) == v for k, v in params.items())
        ),
        timeout=10,
    )


def changes_to(line: Line, call_sid: str) -> list[dict[str, Any]]:
    """REST requests that changed a leg (a GET only asks)."""
    return [
        e["details"]
        for e in line.sandbox.timeline("rest.request")
        if call_sid in e["details"]["path"] and e["details"]["method"] != "GET"
    ]


async def test_a_leg_that_answered_unreported_is_connected_by_the_ring_timer(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    parties = {PRIMARY: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=1.0)}
    async with wired(make_client, settings, psap_key, parties=parties, time_scale=1.0) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        added = await line.sandbox.wait_for_kind("participant.added", timeout=5)
        leg = added["details"]["call_sid"]
        await line.wait_state(opened["id"], "ringing")
        lose_callbacks(line)  # the answer is reported to nobody
        await lost(line, "call-status", CallSid=leg, CallStatus="in-progress")
        await lost(line, "conference-status", CallSid=leg, StatusCallbackEvent="participant-join")
        deliver_callbacks(line)
        assert (await line.get(opened["id"]))["state"] == "ringing"

        connected = await line.wait_state(opened["id"], "connected", within_s=10)  # ring timer
        assert connected["connected_destination_id"] == "crisis-connections-988"
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert line.dials(opened["id"]) == [PRIMARY]
        assert changes_to(line, leg) == []
        assert line.sandbox.call(leg)["status"] == "in-progress"


async def test_an_unanswered_leg_reported_to_nobody_ends_its_attempt_as_no_answer(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    parties = {
        PRIMARY: PartyConfig(behaviour=Behaviour.NO_ANSWER),
        BACKUP: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=0.5),
    }
    async with wired(make_client, settings, psap_key, parties=parties, time_scale=0.2) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        leg = (await line.sandbox.wait_for_kind("participant.added", timeout=5))["details"][
            "call_sid"
        ]
        lose_callbacks(line)  # the no-answer (after 1 s: 5 s x 0.2) goes nowhere
        await lost(line, "call-status", CallSid=leg, CallStatus="no-answer")
        await lost(line, "conference-status", CallSid=leg, StatusCallbackEvent="participant-leave")
        deliver_callbacks(line)

        connected = await line.wait_state(opened["id"], "connected", within_s=15)
        assert [a["outcome"] for a in connected["attempts"]] == ["no_answer", "answered"]
        assert line.dials(opened["id"]) == [PRIMARY, BACKUP]


async def test_a_late_answer_after_the_ring_timer_moved_on_is_taken(
    make_client: AppFactory, settings: Settings, psap_key: str, redis: Any
) -> None:
    """The ring timer moved on (the provider said the leg still rang) and the next destination
    rings; then the first counselor's answer arrives. That counselor is talking with the caller:
    the transfer connects to them and the later leg is cancelled while it rings."""
    parties = {
        PRIMARY: PartyConfig(behaviour=Behaviour.SILENT),
        BACKUP: PartyConfig(behaviour=Behaviour.NO_ANSWER),
    }
    async with wired(make_client, settings, psap_key, parties=parties, time_scale=1.0) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        first = (await line.sandbox.wait_for_kind("participant.added", timeout=5))["details"]
        second = (await line.sandbox.wait_for_kind("participant.added", timeout=10, to=BACKUP))[
            "details"
        ]
        moved = await line.get(opened["id"])
        assert [a["outcome"] for a in moved["attempts"]] == ["timeout", None]

        # What Twilio posts when the first counselor picks up, signed for the public URL.
        path = f"/twilio/participant/{opened['id']}?attempt=1"
        params = {"CallSid": first["call_sid"], "CallStatus": "in-progress", "To": PRIMARY}
        token = line.sandbox.auth_token
        signature = RequestValidator(token).compute_signature(PUBLIC + path, params)
        answer = await line.client.post(
            path, data=params, headers={"X-Twilio-Signature": signature}
        )
        assert answer.status == 204

        connected = await line.wait_state(opened["id"], "connected")
        assert connected["connected_destination_id"] == "crisis-connections-988"
        assert [a["outcome"] for a in connected["attempts"]] == ["answered", "cancelled"]
        ended = await line.sandbox.wait_for_call_end(second["call_sid"], timeout=5)
        assert (ended["status"], ended["ended_by"]) == ("canceled", "rest-api")
        assert not any(
            h.get("params", {}).get("Status") == "completed"
            for h in changes_to(line, first["call_sid"])
        ), "the gateway hung up the counselor who answered"
        load = await line.client.get("/metrics")
        assert load.status == 200
