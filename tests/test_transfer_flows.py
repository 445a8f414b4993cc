"""Warm transfers end to end: the real gateway and the Twilio sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.settings import Settings
from gateway.core.signing import verify
from gateway.transfer.service import JOIN_GRACE_S
from gateway.web.appkeys import SETTINGS, TRANSFERS
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import (
    BACKUP,
    NATIONAL,
    PRIMARY,
    PSAP,
    PUBLIC,
    free_port,
    short_ring_timeouts,
    wired,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def psap_key(make_key: KeyMaker, config_dir: Path) -> str:
    short_ring_timeouts(config_dir)
    return make_key(PSAP, "psap")


def answer(after_s: float = 0.5, hangup_after_s: float | None = None) -> PartyConfig:
    return PartyConfig(
        behaviour=Behaviour.ANSWER, answer_after_s=after_s, hangup_after_s=hangup_after_s
    )


def party(behaviour: Behaviour) -> PartyConfig:
    return PartyConfig(behaviour=behaviour)


def psap_leg_untouched(line: Any, call_sid: str) -> None:
    """The gateway never ended the PSAP/caller leg: no REST hang-up, no <Hangup>, no TwiML end.
    (It may ask about the leg: a GET changes nothing.)"""
    call = line.sandbox.call(call_sid)
    assert call.get("ended_by") in (None, "party"), call
    for event in line.sandbox.timeline("rest.request"):
        if event["details"]["method"] != "GET":
            assert call_sid not in event["details"]["path"], "the gateway changed the PSAP leg"


async def test_connected_then_completed(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    async with wired(make_client, settings, psap_key, parties={PRIMARY: answer()}) as line:
        opened = await line.open(callback_number="+12065550123")
        assert opened["state"] == "awaiting_bridge"
        assert len(opened["bridge_code"]) == 6
        assert opened["bridge_number"] == "+12065550199"
        call_sid = line.dial_bridge(opened["bridge_code"], hangup_after_s=15)  # x0.2: 3 s

        connected = await line.wait_state(opened["id"], "connected")
        assert connected["connected_destination_id"] == "crisis-connections-988"
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert line.dials(opened["id"]) == [PRIMARY]

        done = await line.wait_state(opened["id"], "completed")
        assert done["attempts"][0]["destination_id"] == "crisis-connections-988"
        psap_leg_untouched(line, call_sid)
        said = " ".join(line.sandbox.call(call_sid)["said"])
        assert "counselor" in said.lower()


async def test_no_answer_moves_to_the_next_destination(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    parties = {PRIMARY: party(Behaviour.NO_ANSWER), BACKUP: answer()}
    async with wired(make_client, settings, psap_key, parties=parties) as line:
        opened = await line.open()
        call_sid = line.dial_bridge(opened["bridge_code"])
        connected = await line.wait_state(opened["id"], "connected")
        assert [a["destination_id"] for a in connected["attempts"]] == [
            "crisis-connections-988",
            "wa-988-backup",
        ]
        assert [a["outcome"] for a in connected["attempts"]] == ["no_answer", "answered"]
        assert connected["connected_destination_id"] == "wa-988-backup"
        assert line.dials(opened["id"]) == [PRIMARY, BACKUP]
        psap_leg_untouched(line, call_sid)


async def test_all_busy_fails_and_tells_the_psap_leg_without_ending_it(
    make_client: AppFactory, settings: Settings, psap_key: str, store: Any
) -> None:
    parties = {n: party(Behaviour.BUSY) for n in (PRIMARY, BACKUP, NATIONAL)}
    async with wired(make_client, settings, psap_key, parties=parties) as line:
        opened = await line.open()
        call_sid = line.dial_bridge(opened["bridge_code"])
        failed = await line.wait_state(opened["id"], "failed")
        assert [a["outcome"] for a in failed["attempts"]] == ["busy", "busy", "busy"]
        assert line.dials(opened["id"]) == [PRIMARY, BACKUP, NATIONAL]
        announced = await line.sandbox.wait_for_kind("conference.announcement", timeout=5)
        assert "stays with nine one one" in " ".join(announced["details"]["texts"])
        assert call_sid in announced["details"]["heard_by"]
        assert line.sandbox.call(call_sid)["status"] == "in-progress"
        psap_leg_untouched(line, call_sid)
        load = await store.destination_load(
            ["crisis-connections-988", "wa-988-backup", "national-988-backup"]
        )
        assert set(load.values()) == {0}


async def test_caller_hangs_up_while_ringing_cancels_the_leg(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    parties = {PRIMARY: party(Behaviour.NO_ANSWER)}
    async with wired(make_client, settings, psap_key, parties=parties, time_scale=1.0) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"], hangup_after_s=1.5)
        abandoned = await line.wait_state(opened["id"], "abandoned")
        assert abandoned["attempts"][-1]["outcome"] == "caller_left"
        leg = abandoned["attempts"][-1]["call_sid"]
        ended = await line.sandbox.wait_for_call_end(leg, timeout=5)
        assert ended["status"] == "canceled"
        assert ended["ended_by"] == "rest-api"


async def test_cancel_by_the_call_taker_cancels_the_ringing_leg(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    parties = {PRIMARY: party(Behaviour.NO_ANSWER)}
    async with wired(make_client, settings, psap_key, parties=parties, time_scale=1.0) as line:
        opened = await line.open()
        call_sid = line.dial_bridge(opened["bridge_code"])
        ringing = await line.wait_state(opened["id"], "ringing")
        await line.sandbox.wait_for_kind("participant.added", timeout=5)
        resp = await line.client.post(f"/v1/transfers/{ringing['id']}/cancel", headers=line.headers)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["state"] == "cancelled"
        cancelled = await line.get(opened["id"])
        leg = cancelled["attempts"][-1]["call_sid"]
        ended = await line.sandbox.wait_for_call_end(leg, timeout=5)
        assert ended["status"] == "canceled"
        psap_leg_untouched(line, call_sid)
        again = await line.client.post(f"/v1/transfers/{opened['id']}/cancel", headers=line.headers)
        assert again.status == 409
        assert (await again.json())["error"]["code"] == "conflict"


async def test_unused_code_expires_and_is_then_refused(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    async with wired(make_client, settings, psap_key, bridge_code_ttl_s=5) as line:
        opened = await line.open()
        expired = await line.wait_state(opened["id"], "expired", within_s=15)
        assert expired["attempts"] == []
        call_sid = line.dial_bridge(opened["bridge_code"])
        await line.sandbox.wait_for_kind("twiml.verb", timeout=5, verb="Say")
        await line.sandbox.wait_for(
            lambda e: e["kind"] == "twiml.gather" and e["details"]["call_sid"] == call_sid,
            timeout=5,
        )
        assert line.dials(opened["id"]) == []


async def test_silent_destination_is_left_by_the_gateways_own_timer(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    parties = {PRIMARY: party(Behaviour.SILENT), BACKUP: answer()}
    async with wired(make_client, settings, psap_key, parties=parties) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        connected = await line.wait_state(opened["id"], "connected", within_s=15)
        assert [a["outcome"] for a in connected["attempts"]] == ["timeout", "answered"]
        assert line.dials(opened["id"]) == [PRIMARY, BACKUP]
        silent_leg = connected["attempts"][0]["call_sid"]
        cancels = [
            e
            for e in line.sandbox.timeline("rest.request")
            if e["details"]["path"].endswith(f"/Calls/{silent_leg}.json")
        ]
        assert cancels, "the silent leg was not cancelled"


async def test_wrong_code_three_times_leaves_the_call_to_the_call_taker(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    async with wired(make_client, settings, psap_key, parties={PRIMARY: answer()}) as line:
        opened = await line.open()
        wrong = [c for c in ("000000", "111111", "222222", "333333") if c != opened["bridge_code"]]
        call_sid = line.dial_bridge(*wrong[:3])
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "twiml.verb"
                and e["details"]["call_sid"] == call_sid
                and "could not be verified" in (e["details"].get("text") or "")
            ),
            timeout=10,
        )
        await line.sandbox.wait_for_kind("twiml.verb", timeout=5, verb="Pause")
        assert line.sandbox.call(call_sid)["status"] == "in-progress"
        psap_leg_untouched(line, call_sid)
        still = await line.get(opened["id"])
        assert still["state"] == "awaiting_bridge"
        # The real code was never burned by the wrong ones.
        line.dial_bridge(opened["bridge_code"])
        await line.wait_state(opened["id"], "connected")


async def test_duplicated_and_shuffled_callbacks_change_nothing_twice(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    parties = {PRIMARY: party(Behaviour.NO_ANSWER), BACKUP: answer()}
    async with wired(
        make_client, settings, psap_key, parties=parties, duplicate=True, shuffle=True
    ) as line:
        opened = await line.open()
        call_sid = line.dial_bridge(opened["bridge_code"], hangup_after_s=25)  # x0.2: 5 s
        connected = await line.wait_state(opened["id"], "connected")
        assert [a["outcome"] for a in connected["attempts"]] == ["no_answer", "answered"]
        done = await line.wait_state(opened["id"], "completed")
        assert done["connected_destination_id"] == "wa-988-backup"
        assert line.dials(opened["id"]) == [PRIMARY, BACKUP], "exactly one dial per attempt"
        duplicates = [
            e for e in line.sandbox.timeline("webhook.sent") if e["details"].get("duplicate")
        ]
        assert duplicates, "the sandbox did not duplicate callbacks"
        psap_leg_untouched(line, call_sid)


async def test_a_transfer_started_on_one_instance_is_finished_by_another(
    make_client: AppFactory, settings: Settings, psap_key: str, store: Any
) -> None:
    """Instance one stops mid-ring; instance two's timer worker takes the ring timer (exactly
    once), dials the backup and sees the transfer through to completion."""
    parties = {PRIMARY: party(Behaviour.SILENT), BACKUP: answer()}
    async with wired(make_client, settings, psap_key, parties=parties) as line:
        opened = await line.open()
        call_sid = line.dial_bridge(opened["bridge_code"], hangup_after_s=60)  # x0.2: 12 s
        await line.wait_state(opened["id"], "ringing")
        await line.sandbox.wait_for_kind("participant.added", timeout=5)
        second = await make_client(line.client.app[SETTINGS])
        await line.client.close()  # the first instance goes away mid-ring
        line.sandbox.configure(deliver_via={PUBLIC: f"http://127.0.0.1:{second.port}"})
        line.client = second

        connected = await line.wait_state(opened["id"], "connected", within_s=15)
        assert [a["outcome"] for a in connected["attempts"]] == ["timeout", "answered"]
        done = await line.wait_state(opened["id"], "completed", within_s=20)
        assert done["connected_destination_id"] == "wa-988-backup"
        audit = await store.audit(opened["id"])
        moves = [e for e in audit if e["event"] == "next_destination"]
        assert len(moves) == 1
        assert moves[0]["outcome"] == "timeout"
        assert line.dials(opened["id"]) == [PRIMARY, BACKUP]
        psap_leg_untouched(line, call_sid)


async def test_screen_pop_reaches_the_destination_signed_before_it_rings(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[tuple[bytes, str]] = []

    async def notice(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("X-Gateway-Signature", "")))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/pop", notice)
    async with TestServer(receiver, host="127.0.0.1") as server:
        destinations = config_dir / "destinations.yaml"
        destinations.write_text(
            destinations.read_text().replace(
                "    org: crisis-connections\n",
                "    org: crisis-connections\n"
                f"    notify_url: http://127.0.0.1:{server.port}/pop\n"
                "    notify_secret_env: CC_NOTIFY_SECRET\n",
            )
        )
        monkeypatch.setenv("CC_NOTIFY_SECRET", "shared-with-crisis-connections")
        async with wired(make_client, settings, psap_key, parties={PRIMARY: answer()}) as line:
            opened = await line.open(callback_number="+12065550123")
            line.dial_bridge(opened["bridge_code"])
            await line.wait_state(opened["id"], "connected")
    assert len(received) == 1
    body, header = received[0]
    assert verify("shared-with-crisis-connections", body, header)
    payload = json.loads(body)
    assert payload["transfer_id"] == opened["id"]
    assert payload["callback_number"] == "+12065550123"
    assert payload["caller_type"] == "first_person"
    assert payload["screening"]["consent_to_transfer"] is True


async def test_a_failed_screen_pop_never_blocks_the_call(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destinations = config_dir / "destinations.yaml"
    destinations.write_text(
        destinations.read_text().replace(
            "    org: crisis-connections\n",
            "    org: crisis-connections\n"
            f"    notify_url: http://127.0.0.1:{free_port()}/nobody-listens\n"
            "    notify_secret_env: CC_NOTIFY_SECRET\n",
        )
    )
    monkeypatch.setenv("CC_NOTIFY_SECRET", "s")
    async with wired(make_client, settings, psap_key, parties={PRIMARY: answer()}) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        await line.wait_state(opened["id"], "connected")
        metrics = await (await line.client.get("/metrics")).text()
    assert 'gateway_notices_failed_total{kind="screen_pop"} 1.0' in metrics


async def test_release_is_recorded_once_connected(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    async with wired(make_client, settings, psap_key, parties={PRIMARY: answer()}) as line:
        opened = await line.open()
        early = await line.client.post(
            f"/v1/transfers/{opened['id']}/release", headers=line.headers
        )
        assert early.status == 409
        line.dial_bridge(opened["bridge_code"])
        await line.wait_state(opened["id"], "connected")
        resp = await line.client.post(f"/v1/transfers/{opened['id']}/release", headers=line.headers)
        assert resp.status == 200
        released = await resp.json()
        assert released["state"] == "connected"
        assert released["released_at"] is not None


async def test_cancel_while_the_dial_is_in_flight_cancels_the_new_leg(
    make_client: AppFactory, settings: Settings, psap_key: str, store: Any
) -> None:
    """The provider takes a second over the dial; the call-taker cancels meanwhile. The leg
    dialed after the cancel must be cancelled at once, never left to connect."""
    parties = {PRIMARY: answer(after_s=5)}  # x0.2: answers 1 s after it rings
    async with wired(make_client, settings, psap_key, parties=parties, create_hold_s=1.0) as line:
        opened = await line.open()
        call_sid = line.dial_bridge(opened["bridge_code"])
        await line.sandbox.wait_for_kind("participant.held", timeout=5)
        resp = await line.client.post(f"/v1/transfers/{opened['id']}/cancel", headers=line.headers)
        assert (await resp.json())["state"] == "cancelled"
        added = await line.sandbox.wait_for_kind("participant.added", timeout=5)
        leg = added["details"]["call_sid"]
        ended = await line.sandbox.wait_for_call_end(leg, timeout=5)
        assert ended["ended_by"] == "rest-api"
        await asyncio.sleep(1.5)  # past the moment the counselor would have answered
        final = await line.get(opened["id"])
        assert final["state"] == "cancelled"
        assert final["connected_destination_id"] is None
        assert not any(
            e["details"].get("event") == "participant-join" and e["details"].get("call_sid") == leg
            for e in line.sandbox.timeline("conference.event")
        ), "the cancelled leg joined the conference"
        psap_leg_untouched(line, call_sid)
    load = await store.destination_load(["crisis-connections-988"])
    assert load == {"crisis-connections-988": 0}


async def test_a_hanging_screen_pop_never_holds_the_dial(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The screen pop goes out beside the dial, not before it: a 988 center whose notice URL
    hangs still has its phone ring — and answered — while the notice waits."""
    release = asyncio.Event()
    popped = asyncio.Event()

    async def hanging_pop(request: web.Request) -> web.Response:
        popped.set()
        await release.wait()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/pop", hanging_pop)
    async with TestServer(receiver, host="127.0.0.1") as server:
        destinations = config_dir / "destinations.yaml"
        destinations.write_text(
            destinations.read_text().replace(
                "    org: crisis-connections\n",
                "    org: crisis-connections\n"
                f"    notify_url: http://127.0.0.1:{server.port}/pop\n"
                "    notify_secret_env: CC_NOTIFY_SECRET\n",
            )
        )
        monkeypatch.setenv("CC_NOTIFY_SECRET", "s")
        try:
            async with wired(
                make_client,
                settings,
                psap_key,
                parties={PRIMARY: answer()},
                notice_timeout_s=30,  # a dial held by the notice would wait that long
            ) as line:
                opened = await line.open()
                line.dial_bridge(opened["bridge_code"])
                await line.wait_state(opened["id"], "connected")
                assert popped.is_set()  # and still hanging
                assert line.dials(opened["id"]) == [PRIMARY]
        finally:
            release.set()


async def test_conference_events_arrive_when_the_destination_leg_starts_the_conference(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    """With Twilio's own behaviour — the Participants API creates the conference when the dial
    wins the race against the caller's TwiML — the conference still reports to the gateway,
    so the caller leaving still completes the transfer."""
    parties = {PRIMARY: answer(after_s=0)}
    async with wired(
        make_client, settings, psap_key, parties=parties, create_conference=True
    ) as line:
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"], hangup_after_s=20)  # x0.2: 4 s
        await line.wait_state(opened["id"], "connected")
        done = await line.wait_state(opened["id"], "completed")
        assert done["connected_destination_id"] == "crisis-connections-988"
        creates = [
            e["details"]["params"]
            for e in line.sandbox.timeline("rest.request")
            if e["details"]["path"].endswith("/Participants.json")
        ]
        assert creates[0]["ConferenceStatusCallback"].endswith(f"/twilio/conference/{opened['id']}")


async def test_a_lost_conference_end_is_caught_by_the_liveness_check(
    make_client: AppFactory, settings: Settings, psap_key: str, store: Any
) -> None:
    """Twilio's conference-end never reaches the gateway: the periodic check asks Twilio, finds
    no conference in progress, completes the transfer and frees the destination's capacity. A
    conference still in progress is left alone, check after check."""
    parties = {PRIMARY: answer()}
    async with wired(
        make_client, settings, psap_key, parties=parties, connected_check_s=0.5
    ) as line:
        opened = await line.open()
        call_sid = line.dial_bridge(opened["bridge_code"])
        await line.wait_state(opened["id"], "connected")
        await asyncio.sleep(1.6)  # three checks while the conference lives
        assert (await line.get(opened["id"]))["state"] == "connected"
        checks = [
            e for e in line.sandbox.timeline("rest.request")
            if e["details"]["path"].endswith("/Conferences.json")
        ]  # fmt: skip
        assert len(checks) >= 2
        counselor = (await line.get(opened["id"]))["attempts"][0]["call_sid"]
        line.sandbox.configure(deliver_via={PUBLIC: f"http://127.0.0.1:{free_port()}"})
        line.sandbox.hang_up(call_sid)
        line.sandbox.hang_up(counselor)
        done = await line.wait_state(opened["id"], "completed", within_s=10)
        assert done["connected_destination_id"] == "crisis-connections-988"
    audit = await store.audit(opened["id"])
    assert audit[-1]["actor"] == "liveness-check"
    assert await store.destination_load(["crisis-connections-988"]) == {"crisis-connections-988": 0}


async def test_no_counselor_is_dialed_into_a_conference_the_caller_never_joined(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    """The code is accepted (the transfer is ringing) but its TwiML never puts the caller in
    the conference (the process died answering it, or Twilio took the fallback). Real Twilio
    would create an empty conference for a dial: the durable backup finds the caller absent
    and ends the transfer as abandoned instead of ringing a counselor into an empty room."""
    async with wired(
        make_client, settings, psap_key, parties={PRIMARY: answer()}, create_conference=True
    ) as line:
        opened = await line.open()
        service = line.client.app[TRANSFERS]
        result = await service.redeem("CA" + "7" * 32, opened["bridge_code"])
        assert result.accepted  # ... and start_dialing is never called
        done = await line.wait_state(opened["id"], "abandoned", within_s=JOIN_GRACE_S + 5)
        assert [a["outcome"] for a in done["attempts"]] == ["caller_left"]
        assert line.dials(opened["id"]) == []


async def _tasks_done(*names: str, within_s: float = 10.0) -> None:
    """Wait until no task of the running loop is named one of ``names``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while any(t.get_name() in names for t in asyncio.all_tasks()):
        assert asyncio.get_running_loop().time() < deadline, f"{names} still running"
        await asyncio.sleep(0.05)


async def test_a_counselor_who_answers_before_the_dial_is_acknowledged_is_never_touched(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    """The provider carries the create out at once but answers it a second later; meanwhile
    the counselor answers and the callbacks connect the transfer. When the create's answer
    arrives the leg is the counselor talking: the gateway sends nothing about it (it used to
    cancel it as a leg "no longer wanted" — the transfer had moved on to ``connected``)."""
    async with wired(make_client, settings, psap_key, parties={PRIMARY: answer()}) as line:
        line.sandbox.configure(participant_create_reply_delay_s=1.0)
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        added = await line.sandbox.wait_for_kind("participant.added", timeout=5)
        counselor = added["details"]["call_sid"]
        connected = await line.wait_state(opened["id"], "connected")
        assert connected["attempts"][0]["call_sid"] in (None, counselor)
        await _tasks_done(f"dial:{opened['id']}:1")  # the create's answer came and was taken
        await _tasks_done(f"cancel:{opened['id']}")
        assert (await line.get(opened["id"]))["state"] == "connected"
        call = line.sandbox.call(counselor)
        assert call["status"] == "in-progress", call
        touched = [
            e["details"]
            for e in line.sandbox.timeline("rest.request")
            if counselor in e["details"]["path"]
        ]
        assert touched == [], "the gateway touched the counselor's leg"


async def test_a_leg_whose_callbacks_beat_a_slow_create_answer_is_no_lost_dial_lease(
    make_client: AppFactory, settings: Settings, psap_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The create's answer takes longer than the lease's heartbeat; the counselor answers and
    the callbacks record the leg first. The heartbeat then finds the leg known: the dial is
    done, not a lease lost — no error in the log."""
    async with wired(make_client, settings, psap_key, parties={PRIMARY: answer()}) as line:
        dialer = line.client.app[TRANSFERS].dialer
        line.sandbox.configure(participant_create_reply_delay_s=dialer.lease_s / 3 + 1.5)
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"])
        await line.wait_state(opened["id"], "connected")
        await _tasks_done(f"dial:{opened['id']}:1", within_s=dialer.lease_s)
        assert (await line.get(opened["id"]))["state"] == "connected"
    lost = [r for r in caplog.records if r.getMessage() == "dial lease lost"]
    assert lost == []
