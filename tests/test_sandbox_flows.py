"""The Twilio sandbox end to end over real HTTP, against a stand-in for the gateway's webhooks.

The stand-in answers the bridge number with ``<Gather>`` for a code, puts the caller into a
``<Conference>`` with a status callback, and (when told to) adds a participant through the
sandbox's REST API after returning its TwiML, as the gateway does. It checks every webhook's
X-Twilio-Signature with ``RequestValidator`` against the URL it is published under.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from adapters.twilio_sandbox import (
    NumberConfig,
    Sandbox,
    SandboxConfig,
    run_sandbox,
)

BRIDGE = "+15550100000"
CALLER = "+15550300001"
COUNSELOR = "+15550200001"
CODE = "123456"
CONFERENCE = "xfer-0001"
SCALE = 0.05  # every simulated second lasts 50 ms

ALL_CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


@dataclass(frozen=True)
class Hit:
    path: str
    params: dict[str, str]
    signature_ok: bool
    headers: dict[str, str]


class StandIn:
    """A tiny gateway: fixed TwiML, a participant add after the code, every webhook recorded."""

    def __init__(self, auth_token: str, public_base: str | None = None) -> None:
        self.auth_token = auth_token
        self.public_base = public_base
        self.hits: list[Hit] = []
        self.dial: str | None = None
        self.dial_params: dict[str, Any] = {}
        self.rest_responses: list[httpx.Response] = []
        self.sandbox: Sandbox | None = None
        self.base_url = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/voice", self.voice)
        self.app.router.add_post("/voice/code", self.code)
        self.app.router.add_post("/voice/broken-action", self.broken_action)
        self.app.router.add_post("/conference", self.record_only)
        self.app.router.add_post("/participant", self.record_only)
        self.app.router.add_post("/announce", self.announce)
        self.app.router.add_post("/fallback", self.fallback)
        self.app.router.add_post("/broken", self.broken)
        self.app.router.add_post("/slow", self.slow)
        self.app.router.add_post("/bye", self.bye)
        self.app.router.add_post("/hangup", self.hangup)
        self.app.router.add_post("/redirect", self.redirect)

    def url(self, path: str) -> str:
        return (self.public_base or self.base_url) + path

    async def _hit(self, request: web.Request) -> Hit:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        url = (self.public_base or self.base_url) + request.path_qs
        expected = RequestValidator(self.auth_token).compute_signature(url, params)
        hit = Hit(
            path=request.path,
            params=params,
            signature_ok=request.headers.get("X-Twilio-Signature") == expected,
            headers=dict(request.headers),
        )
        self.hits.append(hit)
        self._changed.set()
        self._changed = asyncio.Event()
        return hit

    @staticmethod
    def twiml(body: str) -> web.Response:
        return web.Response(
            text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
            content_type="application/xml",
        )

    async def voice(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return self.twiml(
            '<Gather input="dtmf" numDigits="6" timeout="3" action="/voice/code" method="POST">'
            "<Say>Enter the transfer code.</Say></Gather>"
            "<Say>No code was entered.</Say>"
        )

    async def broken_action(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return self.twiml(
            '<Gather input="dtmf" numDigits="6" timeout="3" action="/broken" method="POST">'
            "<Say>Enter the transfer code.</Say></Gather>"
        )

    async def code(self, request: web.Request) -> web.Response:
        hit = await self._hit(request)
        if hit.params.get("Digits") != CODE:
            return self.twiml("<Say>That code is not valid.</Say>")
        if self.dial is not None:
            task = asyncio.create_task(self._add_participant(self.dial))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self.twiml(
            "<Say>Connecting you now.</Say><Dial><Conference"
            ' statusCallback="/conference" statusCallbackEvent="start end join leave mute hold"'
            ' startConferenceOnEnter="true" endConferenceOnExit="false" beep="false">'
            f"{CONFERENCE}</Conference></Dial>"
        )

    async def _add_participant(self, number: str) -> None:
        assert self.sandbox is not None
        params: dict[str, Any] = {
            "From": BRIDGE,
            "To": number,
            "Timeout": "5",
            "StatusCallback": self.url("/participant"),
            "StatusCallbackEvent": ALL_CALL_EVENTS,
            "EndConferenceOnExit": "false",
            "Label": "destination",
        } | self.dial_params
        async with rest_client(self.sandbox) as client:
            response = await client.post(
                f"/Conferences/{CONFERENCE}/Participants.json", data=params
            )
        self.rest_responses.append(response)

    async def record_only(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return web.Response(status=204)

    async def announce(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return self.twiml("<Say>A counselor is joining the call.</Say>")

    async def fallback(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return self.twiml("<Say>Fallback answer.</Say>")

    async def broken(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return web.Response(status=500, text="boom")

    async def slow(self, request: web.Request) -> web.Response:
        await self._hit(request)
        await asyncio.sleep(2)
        return self.twiml("<Say>Too late.</Say>")

    async def bye(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return self.twiml("<Say>Goodbye.</Say>")

    async def hangup(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return self.twiml("<Say>Hanging up.</Say><Hangup/><Say>Never said.</Say>")

    async def redirect(self, request: web.Request) -> web.Response:
        await self._hit(request)
        return self.twiml('<Redirect method="POST">bye</Redirect>')

    # --- what the tests read ---

    def at(self, path: str, **match: str) -> list[Hit]:
        return [
            h
            for h in self.hits
            if h.path == path and all(h.params.get(k) == v for k, v in match.items())
        ]

    async def wait_hit(self, path: str, timeout: float = 5.0, **match: str) -> Hit:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not self.at(path, **match):
                await self._changed.wait()
        return self.at(path, **match)[0]

    async def drain(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task


@contextlib.asynccontextmanager
async def rest_client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    base = f"{sandbox.base_url}/2010-04-01/Accounts/{sandbox.account_sid}"
    async with httpx.AsyncClient(
        base_url=base, auth=(sandbox.account_sid, sandbox.auth_token), timeout=5
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def started(standin: StandIn) -> AsyncIterator[StandIn]:
    server = TestServer(standin.app, host="127.0.0.1")
    await server.start_server()
    standin.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield standin
    finally:
        await standin.drain()
        await server.close()


def sandbox_config(standin: StandIn, **overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "numbers": {
            BRIDGE: NumberConfig(
                voice_url=standin.url("/voice"), voice_fallback_url=standin.url("/fallback")
            )
        },
        "time_scale": SCALE,
    }
    values.update(overrides)
    return SandboxConfig(**values)


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with started(StandIn(SandboxConfig().auth_token)) as running:
        yield running


@pytest.fixture
async def sandbox(standin: StandIn) -> AsyncIterator[Sandbox]:
    async with run_sandbox(sandbox_config(standin)) as running:
        standin.sandbox = running
        yield running


def conference_events(standin: StandIn) -> list[tuple[str, str]]:
    return [
        (h.params["StatusCallbackEvent"], h.params.get("CallSid", ""))
        for h in standin.at("/conference")
    ]


async def connected_caller(sandbox: Sandbox, standin: StandIn, **call: Any) -> str:
    sid = sandbox.start_call(CALLER, BRIDGE, digits=[CODE], **call)
    await standin.wait_hit("/conference", StatusCallbackEvent="conference-start")
    return sid


# ----- the caller's side: Gather, action, conference ----------------------------------------


async def test_gather_posts_digits_to_the_action_and_the_caller_joins(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sid = await connected_caller(sandbox, standin)

    voice = standin.at("/voice")[0]
    assert voice.params["CallSid"] == sid
    assert voice.params["AccountSid"] == sandbox.account_sid
    assert voice.params["CallStatus"] == "ringing"
    assert voice.params["Direction"] == "inbound"
    assert voice.params["From"] == voice.params["Caller"] == CALLER
    assert voice.params["To"] == voice.params["Called"] == BRIDGE
    assert voice.params["ApiVersion"] == "2010-04-01"
    action = standin.at("/voice/code")[0]
    assert action.params["Digits"] == CODE
    assert action.params["CallStatus"] == "in-progress"

    sandbox.hang_up(sid)
    await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    events = conference_events(standin)
    assert events == [
        ("participant-join", sid),
        ("conference-start", ""),
        ("participant-leave", sid),
        ("conference-end", ""),
    ]
    hits = standin.at("/conference")
    assert [int(h.params["SequenceNumber"]) for h in hits] == [1, 2, 3, 4]
    assert {h.params["ConferenceSid"] for h in hits} == {sandbox.conferences()[0]["sid"]}
    assert all(h.params["FriendlyName"] == CONFERENCE for h in hits)
    leave = hits[2].params
    assert leave["ReasonParticipantLeft"] == "participant_hung_up"
    assert leave["EndConferenceOnExit"] == "false"
    assert leave["StartConferenceOnEnter"] == "true"
    assert hits[3].params["ReasonConferenceEnded"] == "last-participant-left"

    for hit in standin.hits:
        assert hit.signature_ok, hit.path
        assert hit.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert hit.headers["I-Twilio-Idempotency-Token"]
    view = sandbox.call(sid)
    assert view["status"] == "completed"
    assert view["ended_by"] == "party"
    assert view["conference"] == CONFERENCE
    assert view["said"] == ["Enter the transfer code.", "Connecting you now."]


async def test_gather_without_digits_falls_through_and_the_document_end_hangs_up(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sid = sandbox.start_call(CALLER, BRIDGE, digits=[])
    view = await sandbox.wait_for_call_end(sid)
    assert view["ended_by"] == "twiml-end"
    assert view["said"] == ["Enter the transfer code.", "No code was entered."]
    assert standin.at("/voice/code") == []
    gather = sandbox.timeline("twiml.gather")[0]["details"]
    assert gather["timed_out"] is True


async def test_hangup_verb_and_redirect(sandbox: Sandbox, standin: StandIn) -> None:
    sandbox.set_number(BRIDGE, standin.url("/hangup"))
    first = sandbox.start_call(CALLER, BRIDGE)
    view = await sandbox.wait_for_call_end(first)
    assert view["ended_by"] == "hangup-verb"
    assert view["said"] == ["Hanging up."]

    sandbox.set_number(BRIDGE, standin.url("/redirect"))
    second = sandbox.start_call(CALLER, BRIDGE)
    view = await sandbox.wait_for_call_end(second)
    assert view["ended_by"] == "twiml-end"
    assert view["said"] == ["Goodbye."]
    assert standin.at("/bye", CallSid=second)  # relative Redirect resolved against /redirect


# ----- participants added through the REST API ------------------------------------------------


async def test_participant_rings_answers_joins_and_hangs_up(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.set_party(COUNSELOR, "answer", answer_after_s=1, hangup_after_s=2)
    standin.dial = COUNSELOR
    caller = await connected_caller(sandbox, standin)
    answered = await standin.wait_hit("/participant", CallStatus="in-progress")
    leg = answered.params["CallSid"]
    await standin.wait_hit("/conference", StatusCallbackEvent="participant-join", CallSid=leg)
    completed = await standin.wait_hit("/participant", CallStatus="completed")

    created = standin.rest_responses[0]
    assert created.status_code == 201
    body = created.json()
    assert body["call_sid"] == leg
    assert body["status"] == "queued"
    assert body["label"] == "destination"
    assert body["end_conference_on_exit"] is False
    assert body["conference_sid"].startswith("CF")

    progress = standin.at("/participant")
    assert [h.params["CallStatus"] for h in progress] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [h.params["SequenceNumber"] for h in progress] == ["0", "1", "2", "3"]
    for hit in progress:
        assert hit.params["CallbackSource"] == "call-progress-events"
        assert hit.params["Direction"] == "outbound-api"
        assert hit.params["To"] == COUNSELOR
        assert hit.params["From"] == BRIDGE
        assert hit.params["ConferenceSid"] == body["conference_sid"]
        assert hit.params["Timestamp"]
        assert hit.signature_ok
    assert int(completed.params["CallDuration"]) >= 2  # hangup_after_s, in simulated seconds

    leave = await standin.wait_hit(
        "/conference", StatusCallbackEvent="participant-leave", CallSid=leg
    )
    assert leave.params["ReasonParticipantLeft"] == "participant_hung_up"
    assert leave.params["ParticipantLabel"] == "destination"
    # the caller is still there: the conference goes on
    assert sandbox.call(caller)["in_conference"] is True
    assert sandbox.call(leg)["ended_by"] == "party"
    sandbox.hang_up(caller)
    await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    numbers = [int(h.params["SequenceNumber"]) for h in standin.at("/conference")]
    assert numbers == sorted(numbers) == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize(
    ("behaviour", "call_status", "ended_by"),
    [
        ("busy", "busy", "party"),
        ("no_answer", "no-answer", "ring-timeout"),
        ("fail", "failed", "party"),
    ],
)
async def test_unanswered_participant_leaves_with_add_failed(
    sandbox: Sandbox, standin: StandIn, behaviour: str, call_status: str, ended_by: str
) -> None:
    sandbox.set_party(COUNSELOR, behaviour)
    standin.dial = COUNSELOR
    await connected_caller(sandbox, standin)
    leave = await standin.wait_hit(
        "/conference",
        StatusCallbackEvent="participant-leave",
        ReasonParticipantLeft="participant_add_failed",
    )
    assert leave.params["ParticipantCallStatus"] == call_status
    completed = await standin.wait_hit("/participant", CallStatus=call_status)
    assert completed.params["CallSid"] == leave.params["CallSid"]
    assert standin.at("/participant", CallStatus="in-progress") == []
    assert sandbox.call(leave.params["CallSid"])["ended_by"] == ended_by
    # the caller never left: the conference is still live
    assert [c["status"] for c in sandbox.conferences()] == ["in-progress"]


async def test_no_answer_waits_for_the_ring_timeout(sandbox: Sandbox, standin: StandIn) -> None:
    sandbox.set_party(COUNSELOR, "no_answer")
    standin.dial = COUNSELOR
    await connected_caller(sandbox, standin)
    ringing = await standin.wait_hit("/participant", CallStatus="ringing")
    await standin.wait_hit("/participant", CallStatus="no-answer")
    timeline = sandbox.timeline()
    leg = ringing.params["CallSid"]
    rang_at = next(
        e["t"]
        for e in timeline
        if e["kind"] == "call.status" and e["details"] == {"call_sid": leg, "status": "ringing"}
    )
    ended_at = next(
        e["t"] for e in timeline if e["kind"] == "call.ended" and e["details"]["call_sid"] == leg
    )
    assert ended_at - rang_at >= 5 * SCALE * 0.9  # Timeout=5 simulated seconds


async def test_silent_party_sends_no_callbacks_at_all(sandbox: Sandbox, standin: StandIn) -> None:
    sandbox.set_party(COUNSELOR, "silent")
    standin.dial = COUNSELOR
    await connected_caller(sandbox, standin)
    await sandbox.wait_for_kind("call.silent", to=COUNSELOR)
    leg = standin.rest_responses[0].json()["call_sid"]
    await asyncio.sleep(10 * SCALE)  # twice the ring timeout
    assert standin.at("/participant") == []
    assert [e for e, sid in conference_events(standin) if sid == leg] == []

    async with rest_client(sandbox) as client:
        response = await client.post(f"/Calls/{leg}.json", data={"Status": "canceled"})
    assert response.json()["status"] == "canceled"
    await asyncio.sleep(0.1)
    assert standin.at("/participant") == []


async def test_caller_hangs_up_while_participant_rings_then_the_leg_is_canceled(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.set_party(COUNSELOR, "no_answer")
    standin.dial = COUNSELOR
    standin.dial_params = {"Timeout": "600"}
    # The caller hangs up 1 s (x0.05) after answering: long after the counselor's leg rings,
    # even on a loaded machine.
    caller = await connected_caller(sandbox, standin, hangup_after_s=20)
    ringing = await standin.wait_hit("/participant", CallStatus="ringing")
    leg = ringing.params["CallSid"]

    await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    assert sandbox.call(caller)["ended_by"] == "party"
    leave = standin.at("/conference", StatusCallbackEvent="participant-leave")
    assert [h.params["CallSid"] for h in leave] == [caller]  # a ringing leg is no participant
    assert leave[0].params["ReasonParticipantLeft"] == "participant_hung_up"
    assert sandbox.call(leg)["status"] == "ringing"  # Twilio keeps ringing it: cancel it

    async with rest_client(sandbox) as client:
        response = await client.post(f"/Calls/{leg}.json", data={"Status": "canceled"})
    assert response.status_code == 200
    completed = await standin.wait_hit("/participant", CallStatus="canceled")
    assert completed.params["CallSid"] == leg
    assert sandbox.call(leg)["ended_by"] == "rest-api"


async def test_a_leg_ringing_when_the_conference_ends_is_no_participant_of_it(
    sandbox: Sandbox, standin: StandIn
) -> None:
    """A completed conference lists no participants (Twilio's Participants resource covers
    only conferences not completed), not even a leg that was still being dialed into it: that
    leg keeps ringing and, answered, starts a new conference of the same friendly name — alone,
    reporting to no conference callback (it set none)."""
    sandbox.set_party(COUNSELOR, "answer", answer_after_s=20)  # x0.05: 1 s
    standin.dial = COUNSELOR
    standin.dial_params = {"Timeout": "600"}
    caller = await connected_caller(sandbox, standin)
    leg = (await standin.wait_hit("/participant", CallStatus="ringing")).params["CallSid"]
    sandbox.hang_up(caller)
    end = await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    ended_sid = end.params["ConferenceSid"]
    async with rest_client(sandbox) as client:
        listed = await client.get(f"/Conferences/{ended_sid}/Participants.json")
        assert listed.json()["participants"] == []
        gone = await client.get(f"/Conferences/{ended_sid}/Participants/{leg}.json")
        assert gone.status_code == 404
    assert sandbox.call(leg)["status"] == "ringing"

    await standin.wait_hit("/participant", CallStatus="in-progress", CallSid=leg)
    live = [c for c in sandbox.conferences() if c["status"] == "in-progress"]
    assert [c["friendly_name"] for c in live] == [CONFERENCE]
    assert live[0]["sid"] != ended_sid
    assert [p["call_sid"] for p in live[0]["participants"]] == [leg]
    assert standin.at("/conference", CallSid=leg) == []


async def test_canceling_a_ringing_participant_in_a_live_conference(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.set_party(COUNSELOR, "no_answer")
    standin.dial = COUNSELOR
    standin.dial_params = {"Timeout": "600"}
    await connected_caller(sandbox, standin)
    leg = (await standin.wait_hit("/participant", CallStatus="ringing")).params["CallSid"]
    async with rest_client(sandbox) as client:
        listed = await client.get(f"/Conferences/{CONFERENCE}/Participants.json")
        assert {p["status"] for p in listed.json()["participants"]} == {"connected", "ringing"}
        response = await client.post(f"/Calls/{leg}.json", data={"Status": "canceled"})
    assert response.json()["status"] == "canceled"
    await standin.wait_hit("/participant", CallStatus="canceled")
    leave = await standin.wait_hit("/conference", StatusCallbackEvent="participant-leave")
    assert leave.params["ParticipantCallStatus"] == "canceled"
    assert leave.params["ReasonParticipantLeft"] == "participant_add_failed"


async def test_rest_hangup_and_conference_end_via_api(sandbox: Sandbox, standin: StandIn) -> None:
    sandbox.set_party(COUNSELOR, "answer", answer_after_s=0.5)
    standin.dial = COUNSELOR
    caller = await connected_caller(sandbox, standin)
    leg = (await standin.wait_hit("/participant", CallStatus="in-progress")).params["CallSid"]
    await standin.wait_hit("/conference", StatusCallbackEvent="participant-join", CallSid=leg)
    async with rest_client(sandbox) as client:
        await client.post(f"/Calls/{leg}.json", data={"Status": "completed"})
        leave = await standin.wait_hit(
            "/conference", StatusCallbackEvent="participant-leave", CallSid=leg
        )
        assert leave.params["ReasonParticipantLeft"] == "participant_updated_via_api"
        conference_sid = leave.params["ConferenceSid"]
        ended = await client.post(
            f"/Conferences/{conference_sid}.json", data={"Status": "completed"}
        )
    assert ended.json()["status"] == "completed"
    end = await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    assert end.params["ReasonConferenceEnded"] == "conference-ended-via-api"
    # the caller's <Dial> is over and no verb follows: Twilio hangs up
    view = await sandbox.wait_for_call_end(caller)
    assert view["ended_by"] == "twiml-end"
    assert sandbox.call(leg)["ended_by"] == "rest-api"


# ----- delivery modes, signing, announcements, fallback --------------------------------------


async def test_duplicate_mode_delivers_every_status_callback_twice(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.configure(duplicate_callbacks=True)
    sid = await connected_caller(sandbox, standin)
    sandbox.hang_up(sid)
    await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    await asyncio.sleep(0.1)
    hits = standin.at("/conference")
    assert len(hits) == 8
    by_sequence: dict[str, list[Hit]] = {}
    for hit in hits:
        by_sequence.setdefault(hit.params["SequenceNumber"], []).append(hit)
    assert sorted(by_sequence) == ["1", "2", "3", "4"]
    for copies in by_sequence.values():
        assert len(copies) == 2
        assert copies[0].params == copies[1].params
        token = copies[0].headers["I-Twilio-Idempotency-Token"]
        assert copies[1].headers["I-Twilio-Idempotency-Token"] == token
    assert len(standin.at("/voice")) == 1  # TwiML fetches are never duplicated


async def test_shuffle_mode_still_delivers_every_callback(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.configure(shuffle_callbacks=True, shuffle_window_s=0.1)
    sid = await connected_caller(sandbox, standin)
    sandbox.hang_up(sid)
    await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
    await asyncio.sleep(0.2)
    numbers = sorted(int(h.params["SequenceNumber"]) for h in standin.at("/conference"))
    assert numbers == [1, 2, 3, 4]
    assert sandbox.timeline("callbacks.shuffled")


async def test_deliver_via_signs_the_public_url_and_delivers_locally() -> None:
    public = "https://gateway.example.test"
    async with started(StandIn(SandboxConfig().auth_token, public_base=public)) as standin:
        config = sandbox_config(standin)
        async with run_sandbox(
            config.model_copy(update={"deliver_via": {public: standin.base_url}})
        ) as sandbox:
            standin.sandbox = sandbox
            sid = await connected_caller(sandbox, standin)
            sandbox.hang_up(sid)
            await standin.wait_hit("/conference", StatusCallbackEvent="conference-end")
            assert standin.hits
            assert all(h.signature_ok for h in standin.hits)
            sent = sandbox.timeline("webhook.sent")
            assert sent[0]["details"]["url"] == f"{public}/voice"
            assert sent[0]["details"]["delivered_to"] == f"{standin.base_url}/voice"


async def test_announce_url_is_fetched_signed_and_heard_by_everyone(
    sandbox: Sandbox, standin: StandIn
) -> None:
    caller = await connected_caller(sandbox, standin)
    conference_sid = sandbox.conferences()[0]["sid"]
    async with rest_client(sandbox) as client:
        response = await client.post(
            f"/Conferences/{conference_sid}.json",
            data={"AnnounceUrl": standin.url("/announce"), "AnnounceMethod": "POST"},
        )
    assert response.status_code == 200
    hit = await standin.wait_hit("/announce")
    assert hit.signature_ok
    assert hit.params["ConferenceSid"] == conference_sid
    event = await sandbox.wait_for_kind("conference.announcement")
    assert event["details"]["texts"] == ["A counselor is joining the call."]
    assert event["details"]["heard_by"] == [caller]
    assert sandbox.call(caller)["said"][-1] == "A counselor is joining the call."


async def test_failing_voice_url_falls_back(standin: StandIn) -> None:
    config = SandboxConfig(
        numbers={
            BRIDGE: NumberConfig(
                voice_url=standin.url("/broken"), voice_fallback_url=standin.url("/fallback")
            )
        },
        time_scale=SCALE,
    )
    async with run_sandbox(config) as sandbox:
        sid = sandbox.start_call(CALLER, BRIDGE)
        view = await sandbox.wait_for_call_end(sid)
    fallback = standin.at("/fallback")[0]
    assert fallback.signature_ok
    assert fallback.params["ErrorCode"] == "11200"
    assert fallback.params["ErrorUrl"] == standin.url("/broken")
    assert view["said"] == ["Fallback answer."]
    assert view["ended_by"] == "twiml-end"


async def test_slow_voice_url_times_out_then_falls_back(standin: StandIn) -> None:
    config = SandboxConfig(
        numbers={
            BRIDGE: NumberConfig(
                voice_url=standin.url("/slow"), voice_fallback_url=standin.url("/fallback")
            )
        },
        webhook_timeout_s=0.3,
    )
    async with run_sandbox(config) as sandbox:
        sid = sandbox.start_call(CALLER, BRIDGE)
        view = await sandbox.wait_for_call_end(sid)
        failed = sandbox.timeline("webhook.failed")
    assert failed[0]["details"]["error"].startswith("timeout")
    assert standin.at("/fallback")[0].params["ErrorCode"] == "11205"
    assert view["said"] == ["Fallback answer."]


async def test_without_fallback_an_error_ends_the_call(standin: StandIn) -> None:
    config = SandboxConfig(numbers={BRIDGE: NumberConfig(voice_url=standin.url("/broken"))})
    async with run_sandbox(config) as sandbox:
        sid = sandbox.start_call(CALLER, BRIDGE)
        view = await sandbox.wait_for_call_end(sid)
        assert sandbox.timeline("twiml.error")[0]["details"]["code"] == 11200
    assert view["ended_by"] == "application-error"


async def test_calls_update_url_redirects_a_conference_participant(
    sandbox: Sandbox, standin: StandIn
) -> None:
    caller = await connected_caller(sandbox, standin)
    async with rest_client(sandbox) as client:
        response = await client.post(f"/Calls/{caller}.json", data={"Url": standin.url("/bye")})
    assert response.status_code == 200
    leave = await standin.wait_hit("/conference", StatusCallbackEvent="participant-leave")
    assert leave.params["ReasonParticipantLeft"] == "participant_updated_via_api"
    view = await sandbox.wait_for_call_end(caller)
    assert view["said"][-1] == "Goodbye."
    assert view["ended_by"] == "twiml-end"


async def test_outbound_call_runs_its_twiml_after_answer(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.set_party(COUNSELOR, "answer", answer_after_s=0.5)
    async with rest_client(sandbox) as client:
        response = await client.post(
            "/Calls.json",
            data={
                "To": COUNSELOR,
                "From": BRIDGE,
                "Twiml": "<Response><Say>Handback for you.</Say></Response>",
                "StatusCallback": standin.url("/participant"),
                "StatusCallbackEvent": ["answered", "completed"],
            },
        )
    assert response.status_code == 201
    sid = response.json()["sid"]
    view = await sandbox.wait_for_call_end(sid)
    assert view["said"] == ["Handback for you."]
    assert view["ended_by"] == "twiml-end"
    await standin.wait_hit("/participant", CallStatus="completed")
    statuses = [h.params["CallStatus"] for h in standin.at("/participant")]
    assert statuses == ["in-progress", "completed"]


def _kinds(sandbox: Sandbox) -> Callable[[str], list[dict[str, Any]]]:
    return lambda kind: [e["details"] for e in sandbox.timeline(kind)]


async def test_timeline_records_rest_webhooks_verbs_and_endings(
    sandbox: Sandbox, standin: StandIn
) -> None:
    standin.dial = COUNSELOR
    sandbox.set_party(COUNSELOR, "busy")
    await connected_caller(sandbox, standin)
    await standin.wait_hit("/participant", CallStatus="busy")
    kinds = _kinds(sandbox)
    rest = kinds("rest.request")[0]
    assert rest["method"] == "POST"
    assert rest["auth_ok"] is True
    assert rest["status"] == 201
    assert rest["params"]["StatusCallbackEvent"] == ALL_CALL_EVENTS
    assert {v["verb"] for v in kinds("twiml.verb")} >= {"Gather", "Say", "Dial"}
    assert any(w["purpose"] == "gather-action" for w in kinds("webhook.sent"))
    assert any(e["ended_by"] == "party" and e["status"] == "busy" for e in kinds("call.ended"))
    times = [e["t"] for e in sandbox.timeline()]
    assert times == sorted(times)


async def test_unreachable_callback_is_recorded_and_the_call_goes_on(
    sandbox: Sandbox, standin: StandIn
) -> None:
    sandbox.set_party(COUNSELOR, "answer", answer_after_s=0.5)
    standin.dial = COUNSELOR
    standin.dial_params = {"StatusCallback": "http://127.0.0.1:9/nowhere"}
    await connected_caller(sandbox, standin)
    failed = await sandbox.wait_for_kind("webhook.failed", purpose="call-status")
    assert failed["details"]["url"] == "http://127.0.0.1:9/nowhere"
    leg = failed["details"]["params"]["CallSid"]
    await standin.wait_hit("/conference", StatusCallbackEvent="participant-join", CallSid=leg)
    assert sandbox.call(leg)["status"] == "in-progress"


async def test_an_error_from_an_action_url_ends_the_call_without_the_fallback(
    standin: StandIn,
) -> None:
    """As on Twilio: the number's fallback URL serves its voice URL only; an error answered to
    a ``<Gather action>`` ends the call with an application error."""
    config = SandboxConfig(
        numbers={
            BRIDGE: NumberConfig(
                voice_url=standin.url("/voice/broken-action"),
                voice_fallback_url=standin.url("/fallback"),
            )
        },
        time_scale=SCALE,
    )
    async with run_sandbox(config) as sandbox:
        sid = sandbox.start_call(CALLER, BRIDGE, digits=["123456"])
        view = await sandbox.wait_for_call_end(sid)
    assert standin.at("/broken"), "the action URL was fetched"
    assert standin.at("/fallback") == []
    assert view["ended_by"] == "application-error"
