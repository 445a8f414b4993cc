"""The sandbox's Twilio REST surface (auth, errors, resources) and its control API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from twilio.rest import Client

from adapters.twilio_sandbox import Sandbox, SandboxConfig, run_sandbox
from tests.test_sandbox_flows import (
    BRIDGE,
    CALLER,
    CODE,
    CONFERENCE,
    COUNSELOR,
    StandIn,
    connected_caller,
    rest_client,
    sandbox_config,
    started,
)


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with started(StandIn(SandboxConfig().auth_token)) as running:
        yield running


@pytest.fixture
async def sandbox(standin: StandIn) -> AsyncIterator[Sandbox]:
    config = sandbox_config(standin, conference_join_grace_s=0)
    async with run_sandbox(config) as running:
        standin.sandbox = running
        yield running


@pytest.fixture
async def control(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{sandbox.base_url}/sandbox", timeout=5) as client:
        yield client


def api(sandbox: Sandbox, path: str) -> str:
    return f"{sandbox.base_url}/2010-04-01/Accounts/{sandbox.account_sid}{path}"


# ----- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, ("ACwrong", "token"), "wrong-token"],
    ids=["missing", "wrong-account", "wrong-token"],
)
async def test_basic_auth_is_enforced(sandbox: Sandbox, auth: Any) -> None:
    if auth == "wrong-token":
        auth = (sandbox.account_sid, "not-the-token")
    async with httpx.AsyncClient(auth=auth, timeout=5) as client:
        response = await client.get(api(sandbox, "/Conferences.json"))
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == 20003
    assert body["message"] == "Authenticate"
    assert body["status"] == 401
    assert body["more_info"].endswith("/20003")
    recorded = sandbox.timeline("rest.request")[-1]["details"]
    assert recorded["auth_ok"] is False
    assert recorded["status"] == 401


async def test_right_credentials_but_another_account_path_is_404(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(auth=(sandbox.account_sid, sandbox.auth_token)) as client:
        response = await client.get(
            f"{sandbox.base_url}/2010-04-01/Accounts/AC{'0' * 32}/Conferences.json"
        )
    assert response.status_code == 404
    assert response.json()["code"] == 20404


# ----- validation and missing resources ------------------------------------------------------


async def test_participant_add_to_a_conference_that_does_not_exist_is_404(
    sandbox: Sandbox,
) -> None:
    async with rest_client(sandbox) as client:
        response = await client.post(
            "/Conferences/no-such-conference/Participants.json",
            data={"From": BRIDGE, "To": COUNSELOR},
        )
    assert response.status_code == 404
    assert response.json()["code"] == 20404
    assert not sandbox.engine.calls


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"From": BRIDGE, "To": "5550200001"}, 21211),
        ({"From": BRIDGE}, 21604),
        ({"From": "bridge", "To": COUNSELOR}, 21212),
        ({"From": BRIDGE, "To": COUNSELOR, "StatusCallbackEvent": "rang"}, 21626),
    ],
)
async def test_participant_add_validates_its_parameters(
    sandbox: Sandbox, standin: StandIn, params: dict[str, str], code: int
) -> None:
    await connected_caller(sandbox, standin)
    async with rest_client(sandbox) as client:
        response = await client.post(f"/Conferences/{CONFERENCE}/Participants.json", data=params)
    assert response.status_code == 400
    assert response.json()["code"] == code


async def test_unknown_call_is_404_and_redirecting_an_ended_call_is_400(
    sandbox: Sandbox, standin: StandIn
) -> None:
    async with rest_client(sandbox) as client:
        missing = await client.get(f"/Calls/CA{'0' * 32}.json")
        assert missing.status_code == 404
        sid = sandbox.start_call(CALLER, BRIDGE, digits=["000000"])
        await sandbox.wait_for_call_end(sid)
        redirect = await client.post(f"/Calls/{sid}.json", data={"Url": standin.url("/bye")})
        assert redirect.status_code == 400
        assert redirect.json()["code"] == 21220
        cancel = await client.post(f"/Calls/{sid}.json", data={"Status": "canceled"})
        assert cancel.status_code == 200
        assert cancel.json()["status"] == "completed"


# ----- conference and participant resources --------------------------------------------------


async def test_conference_list_fetch_and_participant_update_and_delete(
    sandbox: Sandbox, standin: StandIn
) -> None:
    caller = await connected_caller(sandbox, standin)
    async with rest_client(sandbox) as client:
        listed = await client.get(
            "/Conferences.json", params={"FriendlyName": CONFERENCE, "Status": "in-progress"}
        )
        conferences = listed.json()["conferences"]
        assert [c["friendly_name"] for c in conferences] == [CONFERENCE]
        conference_sid = conferences[0]["sid"]
        assert conferences[0]["status"] == "in-progress"
        fetched = await client.get(f"/Conferences/{conference_sid}.json")
        assert fetched.json()["sid"] == conference_sid

        participants = await client.get(f"/Conferences/{conference_sid}/Participants.json")
        assert [p["call_sid"] for p in participants.json()["participants"]] == [caller]

        held = await client.post(
            f"/Conferences/{conference_sid}/Participants/{caller}.json",
            data={"Hold": "true", "Muted": "true"},
        )
        assert held.json()["hold"] is True
        assert held.json()["muted"] is True
        await standin.wait_hit("/conference", StatusCallbackEvent="participant-hold")
        await standin.wait_hit("/conference", StatusCallbackEvent="participant-mute")

        removed = await client.delete(f"/Conferences/{conference_sid}/Participants/{caller}.json")
        assert removed.status_code == 204
    leave = await standin.wait_hit("/conference", StatusCallbackEvent="participant-leave")
    assert leave.params["ReasonParticipantLeft"] == "participant_updated_via_api"
    end = await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    assert end.params["ReasonConferenceEnded"] == "last-participant-kicked"
    view = await sandbox.wait_for_call_end(caller)
    assert view["ended_by"] == "twiml-end"


async def test_the_twilio_python_client_speaks_to_the_sandbox(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.set_party(COUNSELOR, "answer", answer_after_s=0.5)
    await connected_caller(sandbox, standin)
    client = Client(sandbox.account_sid, sandbox.auth_token)
    client.api.base_url = sandbox.base_url

    def add() -> Any:
        return client.conferences(CONFERENCE).participants.create(
            from_=BRIDGE,
            to=COUNSELOR,
            timeout=20,
            status_callback=standin.url("/participant"),
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            end_conference_on_exit=False,
            label="destination",
        )

    participant = await asyncio.to_thread(add)
    assert participant.call_sid.startswith("CA")
    assert participant.label == "destination"
    answered = await standin.wait_hit("/participant", CallStatus="in-progress")
    assert answered.params["CallSid"] == participant.call_sid

    def hang_up() -> Any:
        return client.calls(participant.call_sid).update(status="completed")

    call = await asyncio.to_thread(hang_up)
    assert call.status == "completed"
    conferences = await asyncio.to_thread(
        lambda: client.conferences.list(friendly_name=CONFERENCE, status="in-progress")
    )
    assert [c.friendly_name for c in conferences] == [CONFERENCE]


# ----- control API ---------------------------------------------------------------------------


async def test_control_api_drives_a_call_and_reports_it(
    sandbox: Sandbox, standin: StandIn, control: httpx.AsyncClient
) -> None:
    party = await control.put(
        f"/parties/{COUNSELOR}", json={"behaviour": "busy", "answer_after_s": 0.2}
    )
    assert party.status_code == 200
    assert sandbox.engine.party(COUNSELOR).behaviour == "busy"

    created = await control.post(
        "/calls", json={"from": CALLER, "to": BRIDGE, "digits": [CODE], "hangup_after_s": 3}
    )
    assert created.status_code == 201
    sid = created.json()["call_sid"]
    await standin.wait_hit("/conference", StatusCallbackEvent="conference-start")

    conferences = (await control.get("/conferences")).json()["conferences"]
    assert conferences[0]["friendly_name"] == CONFERENCE
    assert [p["call_sid"] for p in conferences[0]["participants"]] == [sid]

    await sandbox.wait_for_call_end(sid)
    view = (await control.get(f"/calls/{sid}")).json()
    assert view["status"] == "completed"
    assert view["ended_by"] == "party"
    assert view["conference"] == CONFERENCE
    assert view["said"] == ["Enter the transfer code.", "Connecting you now."]

    timeline = (await control.get("/timeline", params={"kind": "webhook"})).json()["events"]
    assert timeline
    assert {e["kind"] for e in timeline} <= {"webhook.sent", "webhook.failed"}
    assert all({"seq", "t", "kind", "details"} <= set(e) for e in timeline)

    config = await control.put("/config", json={"duplicate_callbacks": True})
    assert config.json()["duplicate_callbacks"] is True
    assert "auth_token" not in config.json()

    reset = await control.post("/reset")
    assert reset.status_code == 200
    assert (await control.get("/conferences")).json()["conferences"] == []
    assert sandbox.engine.config.duplicate_callbacks is False
    assert [e["kind"] for e in sandbox.timeline()] == ["sandbox.reset"]


async def test_control_api_rejects_bad_bodies(sandbox: Sandbox, control: httpx.AsyncClient) -> None:
    unknown_number = await control.post("/calls", json={"from": CALLER, "to": "+15559999999"})
    assert unknown_number.status_code == 404
    invalid = await control.put(f"/parties/{COUNSELOR}", json={"behaviour": "sleepy"})
    assert invalid.status_code == 422
    not_json = await control.post("/calls", content=b"nope")
    assert not_json.status_code == 400
    missing = await control.get(f"/calls/CA{'0' * 32}")
    assert missing.status_code == 404
