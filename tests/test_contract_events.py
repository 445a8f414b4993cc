"""``GET /v1/events`` as an integrator meets it (DESIGN.md §9, README "Live events").

What a CAD vendor's or console developer's own client does with the stream, beyond what
EventSource hides: reading it by splitting on blank lines, reconnecting with an id the stream
never gave out, sending ``Accept: application/json`` out of habit, probing it with HEAD. Each
test is a mismatch once found from outside, kept so it stays fixed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests import test_events as events_tests
from tests.conftest import AppFactory, KeyMaker
from tests.faults import GatewayProcess
from tests.telephony import BRIDGE, PSAP, PUBLIC
from tests.test_events import Sse, bearer, cancel, open_transfer, stream

# The same app (heartbeat every 0.2 s) and PSAP key as tests/test_events.py.
app = events_tests.app
psap_key = events_tests.psap_key


async def _until(resp: aiohttp.ClientResponse, *needles: bytes, within_s: float = 10.0) -> bytes:
    """The raw bytes read until every one of ``needles`` is among them."""
    raw = b""
    async with asyncio.timeout(within_s):
        while not all(needle in raw for needle in needles):
            chunk = await resp.content.readany()
            assert chunk, f"the stream ended before {needles!r}: {raw!r}"
            raw += chunk
    return raw


async def test_messages_are_separated_by_a_bare_blank_line(
    app: TestClient[Any, Any], psap_key: str
) -> None:
    """A client that splits the body on ``\\n\\n`` (the most common hand-written reader) sees
    every message and every heartbeat: lines end with LF, never CRLF."""
    async with app.get("/v1/events", headers=bearer(psap_key)) as resp:
        assert resp.status == 200
        opened = await open_transfer(app, psap_key)
        raw = await _until(resp, b"\n\n: ping\n\n", opened["id"].encode() + b'"')
        assert b"\r" not in raw, raw
        blocks = [b for b in raw.decode().split("\n\n") if b.startswith("id: ")]
        assert blocks, raw
        first = blocks[0].split("\n")
        assert first[0].startswith("id: ")
        assert first[1].startswith("data: {")


async def test_an_id_the_stream_never_issued_resets_then_follows_live(
    app: TestClient[Any, Any], psap_key: str
) -> None:
    """A ``Last-Event-ID`` ahead of every id the stream gave out (a client's own invention,
    another deployment's) is not waited for in silence: one ``stream.reset``, then live."""
    opened = await open_transfer(app, psap_key)
    future = "99999999999999-0"
    async with stream(app, "/v1/events", psap_key, last_event_id=future) as events:
        reset = await events.next()
        assert reset.id is None
        assert reset.data["type"] == "stream.reset"
        assert reset.data["last_event_id"] == future
        await cancel(app, psap_key, opened["id"])
        live = await events.next()
        assert (live.data["type"], live.data["transfer_id"]) == ("transfer.state", opened["id"])
        assert live.data["state"] == "cancelled"


async def test_an_id_past_what_redis_can_hold_is_a_400_not_a_503(
    app: TestClient[Any, Any], psap_key: str
) -> None:
    """Each part of a stream id is an unsigned 64-bit number; a bigger one is malformed (Redis
    refuses it, which read as 'state store unavailable')."""
    for bad in ("1-99999999999999999999", "99999999999999999999-0", "18446744073709551616-0"):
        for headers, query in (({"Last-Event-ID": bad}, ""), ({}, f"?last_event_id={bad}")):
            resp = await app.get("/v1/events" + query, headers={**bearer(psap_key), **headers})
            assert resp.status == 400, (bad, await resp.text())
            error = (await resp.json())["error"]
            assert error["code"] == "bad_request"
            assert error["details"][0]["field"] == "Last-Event-ID"
    # The largest id Redis accepts is still an id: answered as one never issued.
    biggest = f"{2**64 - 1}-{2**64 - 1}"
    async with stream(app, "/v1/events", psap_key, last_event_id=biggest) as events:
        assert (await events.next()).data["type"] == "stream.reset"


async def test_accept_json_still_gets_the_stream(app: TestClient[Any, Any], psap_key: str) -> None:
    """The events endpoint has one representation. A client that sends ``Accept:
    application/json`` on every call (a generic API client) still gets the stream rather than
    a 406 it cannot act on; the content type tells it what it got."""
    for accept in ("application/json", "text/event-stream", "*/*", "text/html"):
        headers = {**bearer(psap_key), "Accept": accept}
        async with app.get("/v1/events", headers=headers) as resp:
            assert resp.status == 200, accept
            assert resp.headers["Content-Type"] == "text/event-stream", accept
            assert resp.headers["Cache-Control"] == "no-cache"
            message = await Sse(resp).next(comments=True, within_s=5)
            assert message.comment == "ping"


async def test_other_methods_get_a_json_405_naming_get(
    app: TestClient[Any, Any], psap_key: str
) -> None:
    for method in ("HEAD", "POST", "PUT", "DELETE"):
        resp = await app.request(method, "/v1/events", headers=bearer(psap_key))
        assert resp.status == 405, method
        assert resp.headers["Allow"] == "GET"
        assert resp.headers["Content-Type"].startswith("application/json")
        if method != "HEAD":
            assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_the_document_names_the_last_event_id_header(app: TestClient[Any, Any]) -> None:
    """An integrator reading only /openapi.json learns how to resume (the header EventSource
    sends), not only the query fallback."""
    document = await (await app.get("/openapi.json")).json()
    parameters = document["paths"]["/v1/events"]["get"]["parameters"]
    where = {(p["name"], p["in"]) for p in parameters}
    assert {("Last-Event-ID", "header"), ("last_event_id", "query")} <= where
    header = next(p for p in parameters if p["name"] == "Last-Event-ID")
    assert "stream.reset" in header["description"]


async def test_comment_lines_come_within_the_heartbeat_interval(
    make_client: AppFactory, psap_key: str
) -> None:
    """'A comment line at least every 15 s' (DESIGN.md §9): measured by the client, the gap
    from the headers to each ``: ping`` stays under the setting (here 4 s, to keep it short)."""
    app = await make_client(events_heartbeat_s=4.0)
    loop = asyncio.get_running_loop()
    async with app.get("/v1/events", headers=bearer(psap_key)) as resp:
        assert resp.status == 200
        events = Sse(resp)
        last = loop.time()
        for _ in range(2):
            message = await events.next(comments=True, within_s=8)
            assert message.comment == "ping"
            now = loop.time()
            assert now - last < 4.0, now - last
            last = now


@pytest.mark.slow
async def test_a_client_that_left_frees_its_place_within_seconds(
    redis_url: str, config_dir: Path, tmp_path: Path, make_key: KeyMaker
) -> None:
    """A console reconnecting more times than the per-key bound (page reloads, a flaky
    network) is not refused 429 for streams it already closed: a closed connection stops
    counting within about a second, not only when the next heartbeat (15 s) fails to be
    written. A real ``serve`` process: the test server notices a closed client differently."""
    psap_key = make_key(PSAP, "psap")
    env = {
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_CONFIG_DIR": str(config_dir),
        "GATEWAY_STATE_DIR": str(tmp_path / "state"),
        "GATEWAY_PUBLIC_BASE_URL": PUBLIC,
        "GATEWAY_SANDBOX": "false",  # nothing is dialed
        "GATEWAY_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "GATEWAY_TWILIO_AUTH_TOKEN": "events-contract-token",
        "GATEWAY_TWILIO_API_BASE_URL": "http://127.0.0.1:9",
        "GATEWAY_BRIDGE_NUMBER": BRIDGE,
        "GATEWAY_EVENTS_MAX_STREAMS_PER_KEY": "2",
    }
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    gateway.start()
    try:
        await gateway.wait_ready()
        loop = asyncio.get_running_loop()
        for attempt in range(6):
            deadline = loop.time() + 4  # a second or so each; never the 15 s heartbeat
            while True:
                async with (
                    aiohttp.ClientSession() as session,  # its own connection, closed after
                    session.get(gateway.url + "/v1/events", headers=bearer(psap_key)) as resp,
                ):
                    if resp.status == 200:
                        break
                    assert resp.status == 429, await resp.text()
                assert loop.time() < deadline, f"closed streams still count ({attempt})"
                await asyncio.sleep(0.1)
    finally:
        gateway.stop()
