"""The Twilio adapter's REST requests, exactly as sent (respx intercepts httpx)."""

from __future__ import annotations

import asyncio
import base64
import threading
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from adapters.twilio_rest import TwilioTelephony
from gateway.core.ports import TelephonyError

SID = "AC" + "1" * 32
TOKEN = "secret-token"
BASE = "https://api.twilio.test"
ACCOUNT = f"{BASE}/2010-04-01/Accounts/{SID}"
PARTICIPANTS = f"{ACCOUNT}/Conferences/tr_0123/Participants.json"


def _participant(call_sid: str = "CA" + "2" * 32) -> dict[str, object]:
    return {
        "account_sid": SID,
        "call_sid": call_sid,
        "conference_sid": "CF" + "3" * 32,
        "label": "attempt-1",
        "status": "queued",
        "muted": False,
        "hold": False,
        "coaching": False,
        "end_conference_on_exit": False,
        "start_conference_on_enter": True,
        "date_created": None,
        "date_updated": None,
        "uri": "/x.json",
    }


@pytest.fixture
async def telephony() -> TwilioTelephony:
    t = TwilioTelephony(SID, TOKEN, base_url=BASE, timeout_s=0.5)
    yield t  # type: ignore[misc]
    await t.aclose()


def _form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


@respx.mock
async def test_add_participant_sends_exact_request(telephony: TwilioTelephony) -> None:
    route = respx.post(PARTICIPANTS).mock(return_value=httpx.Response(201, json=_participant()))
    call_sid = await telephony.add_participant(
        "tr_0123",
        to="+12065550111",
        from_="+12065550100",
        timeout_s=20,
        status_callback="https://gw.example/twilio/participant/tr_0123?attempt=1",
        label="attempt-1",
    )
    assert call_sid == "CA" + "2" * 32
    assert route.call_count == 1
    request = route.calls.last.request
    expected_auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == expected_auth
    form = _form(request)
    assert form["To"] == ["+12065550111"]
    assert form["From"] == ["+12065550100"]
    assert form["Timeout"] == ["20"]
    assert form["StatusCallback"] == ["https://gw.example/twilio/participant/tr_0123?attempt=1"]
    assert form["StatusCallbackMethod"] == ["POST"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert form["EndConferenceOnExit"] == ["false"]
    assert form["Beep"] == ["false"]
    assert form["Label"] == ["attempt-1"]


@respx.mock
async def test_server_error_on_create_is_one_request_and_a_telephony_error(
    telephony: TwilioTelephony,
) -> None:
    route = respx.post(PARTICIPANTS).mock(
        return_value=httpx.Response(503, json={"code": 20500, "message": "down", "status": 503})
    )
    with pytest.raises(TelephonyError) as caught:
        await telephony.add_participant(
            "tr_0123", to="+12065550111", from_="+12065550100", timeout_s=20,
            status_callback="https://gw.example/cb", label="attempt-1",
        )  # fmt: skip
    assert caught.value.status == 503
    assert route.call_count == 1, "a POST that dials someone is never retried"


@respx.mock
async def test_timeout_is_enforced_and_not_retried(telephony: TwilioTelephony) -> None:
    route = respx.post(PARTICIPANTS).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TelephonyError):
        await telephony.add_participant(
            "tr_0123", to="+12065550111", from_="+12065550100", timeout_s=20,
            status_callback="https://gw.example/cb", label="attempt-1",
        )  # fmt: skip
    assert route.call_count == 1
    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout["read"] == 0.5


@respx.mock
async def test_cancel_ringing_call(telephony: TwilioTelephony) -> None:
    call = f"{ACCOUNT}/Calls/CA9.json"
    route = respx.post(call).mock(
        return_value=httpx.Response(200, json={"sid": "CA9", "status": "canceled"})
    )
    await telephony.cancel_call("CA9")
    assert route.call_count == 1
    assert _form(route.calls.last.request) == {"Status": ["canceled"]}


@respx.mock
async def test_cancel_answered_call_falls_back_to_completed(telephony: TwilioTelephony) -> None:
    call = f"{ACCOUNT}/Calls/CA9.json"
    route = respx.post(call).mock(
        side_effect=[
            httpx.Response(200, json={"sid": "CA9", "status": "in-progress"}),
            httpx.Response(200, json={"sid": "CA9", "status": "completed"}),
        ]
    )
    await telephony.cancel_call("CA9")
    statuses = [_form(c.request)["Status"] for c in route.calls]
    assert statuses == [["canceled"], ["completed"]]


@respx.mock
async def test_cancel_ringing_cancels_a_ringing_call(telephony: TwilioTelephony) -> None:
    route = respx.post(f"{ACCOUNT}/Calls/CA9.json").mock(
        return_value=httpx.Response(200, json={"sid": "CA9", "status": "canceled"})
    )
    assert await telephony.cancel_ringing("CA9") is True
    assert route.call_count == 1
    assert _form(route.calls.last.request) == {"Status": ["canceled"]}


@respx.mock
async def test_cancel_ringing_leaves_an_answered_call_alone(telephony: TwilioTelephony) -> None:
    route = respx.post(f"{ACCOUNT}/Calls/CA9.json").mock(
        return_value=httpx.Response(200, json={"sid": "CA9", "status": "in-progress"})
    )
    assert await telephony.cancel_ringing("CA9") is False
    assert route.call_count == 1, "never a second request that would hang it up"
    assert _form(route.calls.last.request) == {"Status": ["canceled"]}


@respx.mock
async def test_announce_by_name_looks_up_the_live_conference(telephony: TwilioTelephony) -> None:
    listing = respx.get(f"{ACCOUNT}/Conferences.json").mock(
        return_value=httpx.Response(
            200,
            json={
                "conferences": [{"sid": "CF" + "4" * 32, "friendly_name": "tr_0123"}],
                "meta": {"page": 0, "page_size": 50, "next_page_url": None, "key": "conferences"},
            },
        )
    )
    update = respx.post(f"{ACCOUNT}/Conferences/{'CF' + '4' * 32}.json").mock(
        return_value=httpx.Response(200, json={"sid": "CF" + "4" * 32})
    )
    await telephony.announce("tr_0123", "https://gw.example/twilio/conference/tr_0123/announce/x")
    assert listing.calls.last.request.url.params["FriendlyName"] == "tr_0123"
    assert listing.calls.last.request.url.params["Status"] == "in-progress"
    form = _form(update.calls.last.request)
    assert form["AnnounceUrl"] == ["https://gw.example/twilio/conference/tr_0123/announce/x"]
    assert form["AnnounceMethod"] == ["POST"]


@respx.mock
async def test_announce_without_live_conference_is_an_error(telephony: TwilioTelephony) -> None:
    respx.get(f"{ACCOUNT}/Conferences.json").mock(
        return_value=httpx.Response(
            200,
            json={
                "conferences": [],
                "meta": {"page": 0, "page_size": 50, "next_page_url": None, "key": "conferences"},
            },
        )
    )
    with pytest.raises(TelephonyError):
        await telephony.announce("tr_0123", "https://gw.example/a")


@respx.mock
async def test_add_participant_can_name_the_conference_callback(
    telephony: TwilioTelephony,
) -> None:
    route = respx.post(PARTICIPANTS).mock(return_value=httpx.Response(201, json=_participant()))
    await telephony.add_participant(
        "tr_0123", to="+12065550111", from_="+12065550100", timeout_s=20,
        status_callback="https://gw.example/p", label="attempt-1",
        conference_status_callback="https://gw.example/twilio/conference/tr_0123",
    )  # fmt: skip
    form = _form(route.calls.last.request)
    assert form["ConferenceStatusCallback"] == ["https://gw.example/twilio/conference/tr_0123"]
    assert form["ConferenceStatusCallbackMethod"] == ["POST"]
    assert form["ConferenceStatusCallbackEvent"] == ["start", "end", "join", "leave"]


@respx.mock
async def test_conference_live_asks_for_the_named_conference_in_progress(
    telephony: TwilioTelephony,
) -> None:
    meta = {"page": 0, "page_size": 50, "next_page_url": None, "key": "conferences"}
    route = respx.get(f"{ACCOUNT}/Conferences.json").mock(
        side_effect=[
            httpx.Response(200, json={"conferences": [{"sid": "CF1"}], "meta": meta}),
            httpx.Response(200, json={"conferences": [], "meta": meta}),
        ]
    )
    assert await telephony.conference_live("tr_0123") is True
    assert await telephony.conference_live("tr_0123") is False
    params = route.calls.last.request.url.params
    assert (params["FriendlyName"], params["Status"]) == ("tr_0123", "in-progress")


# ---- the requests' own event loop ------------------------------------------------------------


@respx.mock
async def test_requests_run_on_their_own_loop_not_the_callers(
    telephony: TwilioTelephony,
) -> None:
    """A create is sent from the adapter's request loop (its own thread), so it never waits
    behind the work queued on the serving loop."""
    seen: list[tuple[str, asyncio.AbstractEventLoop]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((threading.current_thread().name, asyncio.get_running_loop()))
        return httpx.Response(201, json=_participant())

    respx.post(PARTICIPANTS).mock(side_effect=answer)
    call_sid = await telephony.add_participant(
        "tr_0123", to="+12065550111", from_="+12065550100", timeout_s=20,
        status_callback="https://gw.example/cb", label="attempt-1",
    )  # fmt: skip
    assert call_sid == "CA" + "2" * 32
    assert [name for name, _ in seen] == ["twilio-rest"]
    assert seen[0][1] is not asyncio.get_running_loop()


@respx.mock
async def test_a_timeout_around_a_request_cancels_it_on_its_loop(
    telephony: TwilioTelephony,
) -> None:
    """The dial's own deadline (``asyncio.timeout`` on the serving loop) reaches the request
    running on the adapter's loop: it is cancelled there, not left running."""
    started, cancelled = threading.Event(), threading.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return httpx.Response(201, json=_participant())

    respx.post(PARTICIPANTS).mock(side_effect=slow)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await telephony.add_participant(
                "tr_0123", to="+12065550111", from_="+12065550100", timeout_s=20,
                status_callback="https://gw.example/cb", label="attempt-1",
            )  # fmt: skip
    assert started.is_set()
    assert await asyncio.to_thread(cancelled.wait, 5)


async def test_closing_stops_the_request_loop() -> None:
    before = set(threading.enumerate())
    t = TwilioTelephony(SID, TOKEN, base_url=BASE, timeout_s=0.5)
    started = [thread for thread in set(threading.enumerate()) - before]
    assert [thread.name for thread in started] == ["twilio-rest"]
    await t.aclose()
    assert not started[0].is_alive()
