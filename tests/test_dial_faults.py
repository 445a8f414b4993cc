"""Dials under a misbehaving provider and lost callbacks: the real gateway and the Twilio sandbox
over real HTTP, with the sandbox made slow, silent or unavailable on purpose.

- a provider that never answers a create does not hold the caller: the attempt is given up
  after a bounded number of dials and the next destination rings;
- a ring timer that cannot reach the provider asks again before it moves on, so an answered
  leg whose callbacks were lost is connected, not timed out;
- a caller who left while the callbacks saying so were lost is not followed by a counselor
  rung into an empty conference;
- a connected transfer whose caller hung up during a Redis outage is completed once Redis is
  back, not half an hour later.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.legs import MAX_CLAIMS
from gateway.core.settings import Settings
from gateway.transfer.service import JOIN_GRACE_S
from tests.conftest import AppFactory, KeyMaker
from tests.faults import RedisProcess
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


def creates_to(line: Line, number: str) -> int:
    return sum(
        1 for e in line.sandbox.timeline("participant.added") if e["details"]["to"] == number
    )


async def test_a_provider_that_never_answers_a_create_does_not_hold_the_caller(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    """Every create times out (the provider holds it, and drops it when the gateway gives up
    waiting): after ``MAX_CLAIMS`` dials the attempt is failed and the next destination rings —
    the caller is not left in a silent conference."""
    async with wired(
        make_client,
        settings,
        psap_key,
        parties={BACKUP: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=0.5)},
        time_scale=0.2,
        create_hold_s=30,
        twilio_timeout_s=0.5,
    ) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            transfer = await line.get(opened["id"])
            if len(transfer["attempts"]) > 1:
                break
            assert asyncio.get_running_loop().time() < deadline, transfer
            await asyncio.sleep(0.1)
        assert transfer["attempts"][0]["outcome"] == "failed"
        held = [
            e for e in line.sandbox.timeline("participant.held") if e["details"]["to"] == PRIMARY
        ]
        assert 1 <= len(held) <= MAX_CLAIMS
        assert creates_to(line, PRIMARY) == 0  # every one was dropped: nobody was rung twice
        line.sandbox.configure(participant_create_hold_s=0.0)
        connected = await line.wait_state(opened["id"], "connected", within_s=20)
        assert connected["connected_destination_id"] == "wa-988-backup"


async def test_a_ring_timer_that_cannot_reach_the_provider_asks_again(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    """The counselor answers, the callbacks saying so are lost, and Twilio's API is down when
    the ring time is up: the timer asks again rather than moving on blind, and connects the
    transfer once the API answers."""
    parties = {PRIMARY: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=1.0)}
    async with wired(make_client, settings, psap_key, parties=parties, time_scale=1.0) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        leg = (await line.sandbox.wait_for_kind("participant.added", timeout=5))["details"][
            "call_sid"
        ]
        lose_callbacks(line)
        await lost(line, "call-status", CallSid=leg, CallStatus="in-progress")
        await lost(line, "conference-status", CallSid=leg, StatusCallbackEvent="participant-join")
        line.sandbox.configure(rest_unavailable=True)
        deliver_callbacks(line)
        # Past the ring time (5 s + 0.5 s grace): the timer found Twilio's API down.
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "rest.request"
                and e["details"]["method"] == "GET"
                and leg in e["details"]["path"]
                and e["details"]["status"] == 503
            ),
            timeout=10,
        )
        assert (await line.get(opened["id"]))["state"] == "ringing"
        line.sandbox.configure(rest_unavailable=False)
        connected = await line.wait_state(opened["id"], "connected", within_s=10)
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert line.dials(opened["id"]) == [PRIMARY]


async def test_no_counselor_is_rung_into_a_conference_the_caller_left(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    """The caller hangs up while the first destination rings, and the callbacks saying so are
    lost. When the ring time is up the next destination is due — but the conference is gone
    (real Twilio would make a new, empty one for the dial): the transfer ends abandoned and the
    next destination is never rung."""
    parties = {
        PRIMARY: PartyConfig(behaviour=Behaviour.NO_ANSWER),
        BACKUP: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=0.5),
    }
    async with wired(
        make_client, settings, psap_key, parties=parties, time_scale=1.0, create_conference=True
    ) as line:
        opened = await line.open()
        caller = line.dial_bridge(opened["bridge_code"])
        await line.sandbox.wait_for_kind("participant.added", timeout=5)
        lose_callbacks(line)
        line.sandbox.hang_up(caller)
        await lost(line, "conference-status", StatusCallbackEvent="conference-end")
        deliver_callbacks(line)
        done = await line.wait_state(opened["id"], "abandoned", within_s=JOIN_GRACE_S + 15)
        assert creates_to(line, BACKUP) == 0
        assert done["attempts"][-1]["outcome"] == "caller_left"


async def test_a_caller_who_hung_up_during_an_outage_completes_the_transfer_after_it(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    redis_process: RedisProcess,
) -> None:
    """Connected; Redis stops; the caller hangs up (the counselor stays on, so the conference
    lives on); the callbacks get errors and are gone. Once Redis answers, the reconciliation
    asks Twilio about the caller's leg and completes the transfer — the destination's capacity
    is not held until the half-hourly conference check."""
    parties = {PRIMARY: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=0.5)}
    async with wired(
        make_client,
        settings,
        psap_key,
        parties=parties,
        time_scale=1.0,
        redis_url=redis_process.url,
    ) as line:
        opened = await line.open()
        caller = line.dial_bridge(opened["bridge_code"])
        await line.wait_state(opened["id"], "connected")
        redis_process.stop()
        line.sandbox.hang_up(caller)
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "webhook.sent"
                and e["details"].get("purpose") == "conference-status"
                and e["details"]["params"].get("CallSid") == caller
                and e["details"].get("status", 0) >= 500
            ),
            timeout=10,
        )
        redis_process.start()
        done = await line.wait_state(opened["id"], "completed", within_s=10)
        assert done["connected_destination_id"] == "crisis-connections-988"
