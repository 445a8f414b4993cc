"""Input that fails before validation: a 4xx in the error shape, no traceback, nothing written.

Each case was a 500 (or a silent accept) before ``gateway.web.bodies`` became the one boundary.
The Twilio cases are signed with the real ``RequestValidator`` over the public URL, as Twilio
signs them, so a 4xx here is the body's fault and not the signature's.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import MultiDict
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from gateway.core.settings import Settings
from gateway.web import create_app
from gateway.web.bodies import MAX_DEPTH, MAX_INT_DIGITS
from tests.conftest import AppFactory, KeyMaker, with_overrides
from tests.telephony import PRIMARY, PSAP, PUBLIC, SAFE, free_port

TOKEN = "hostile-input-token"
FORM = "application/x-www-form-urlencoded"
JSON = {"Content-Type": "application/json"}
A_TRANSFER = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
A_HANDBACK = {"psap_id": PSAP, "reason": "other"}
CALL = [("CallSid", "CA" + "7" * 32), ("From", "+12065550111"), ("To", "+12065550199")]


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    redis: Redis
    caplog: pytest.LogCaptureFixture
    psap: dict[str, str]
    center: dict[str, str]
    admin: dict[str, str]

    async def keys(self) -> set[bytes]:
        return {k async for k in self.redis.scan_iter(match="*")}

    def assert_quiet(self) -> None:
        """No record at ERROR or above, and no traceback at any level."""
        loud = [
            (r.name, r.levelname, r.getMessage())
            for r in self.caplog.records
            if r.levelno >= logging.ERROR or r.exc_info
        ]
        assert loud == []


@pytest.fixture
async def gw(
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> Gateway:
    caplog.set_level(logging.INFO)
    client = await make_client(settings, public_base_url=PUBLIC, twilio_auth_token=TOKEN)

    def bearer(org: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_key(org, role)}"}

    return Gateway(
        client,
        redis,
        caplog,
        psap=bearer(PSAP, "psap"),
        center=bearer("crisis-connections", "crisis_center"),
        admin=bearer("ops", "admin"),
    )


async def refused(
    gw: Gateway,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    *,
    mentions: str = "",
) -> dict[str, Any]:
    """POST ``body``; the answer is ``status``/``code`` in the error shape, the log is quiet and
    Redis holds exactly the keys it held before."""
    before = await gw.keys()
    resp = await gw.client.post(path, data=body, headers=headers)
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json"
    error: dict[str, Any] = json.loads(text)["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert mentions in error["message"]
    assert "Traceback" not in text
    assert await gw.keys() == before
    gw.assert_quiet()
    return error


def with_literal(field: str, literal: str, base: dict[str, Any] = A_TRANSFER) -> bytes:
    """``base`` as JSON with ``field`` set to a raw JSON ``literal`` (one json.dumps can't make)."""
    text = json.dumps({**base, field: "@@"})
    return text.replace('"@@"', literal).encode()


# ---- JSON bodies ---------------------------------------------------------------------------


async def test_the_routes_used_here_accept_a_good_body(gw: Gateway) -> None:
    """So each refusal below is the hostile part's doing."""
    resp = await gw.client.post(
        "/v1/transfers", data=with_literal("transfers_so_far", "0"), headers={**gw.psap, **JSON}
    )
    assert resp.status == 201, await resp.text()
    handback = json.dumps({**A_HANDBACK, "callback_number": "+12065550123"}).encode()
    resp = await gw.client.post("/v1/handbacks", data=handback, headers={**gw.center, **JSON})
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"[" * 5000 + b"]" * 5000, f"{MAX_DEPTH} levels"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, f"{MAX_DEPTH} levels"),
        (b'{"a": ' + b"[{" * 17 + b"}]" * 17 + b"}", f"{MAX_DEPTH} levels"),  # 35 deep
        (with_literal("transfers_so_far", "9" * 5000), f"{MAX_INT_DIGITS} digits"),
        (with_literal("transfers_so_far", "-" + "9" * 16), f"{MAX_INT_DIGITS} digits"),
        (with_literal("transfers_so_far", "NaN"), "NaN"),
        (with_literal("transfers_so_far", "Infinity"), "Infinity"),
        (with_literal("transfers_so_far", "-Infinity"), "Infinity"),
        (with_literal("transfers_so_far", "1e999"), "too large"),
        (with_literal("language", r'"\ud800"'), "surrogate"),
        (with_literal("tags", r'["ok", "\udfff"]'), "surrogate"),
        (json.dumps({**A_TRANSFER, "x\ud800": 1}).encode(), "surrogate"),
        (with_literal("language", '"e\xffn"').replace(b"\xc3\xbf", b"\xff"), "not UTF-8"),
        (with_literal("language", '"en"').replace(b'"en"', b'"\xed\xa0\x80"'), "not UTF-8"),
        (b"\xef\xbb\xbf" + json.dumps(A_TRANSFER).encode(), "byte-order mark"),
        (json.dumps(A_TRANSFER).encode("utf-16"), "not UTF-8"),
        (json.dumps(A_TRANSFER).encode() + b"\x00", "line 1 column"),
        (with_literal("language", '"e\x00n"'), "control character"),
        (b'{"psap_id": "x", ' + json.dumps(A_TRANSFER).encode()[1:], "appears twice"),
        (b'{"psap_id": "kc-valleycom",\n "caller_type": }', "line 2 column"),
        (b"psap_id=kc-valleycom&caller_type=first_person", "line 1 column 1"),
        (b"", "empty"),
        (b"[]", "JSON object"),
    ],
    ids=[
        "deep-arrays",
        "deep-objects",
        "just-past-the-limit",
        "5000-digit-int",
        "16-digit-int",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "lone-surrogate",
        "lone-low-surrogate",
        "surrogate-in-a-key",
        "invalid-utf8",
        "utf8-encoded-surrogate",
        "bom",
        "utf16",
        "nul-byte",
        "raw-control-in-string",
        "duplicate-key",
        "syntax-error",
        "form-body-on-a-json-route",
        "empty",
        "not-an-object",
    ],
)
async def test_a_json_body_that_cannot_be_read_is_400(
    gw: Gateway, body: bytes, mentions: str
) -> None:
    await refused(
        gw, "/v1/transfers", body, {**gw.psap, **JSON}, 400, "bad_request", mentions=mentions
    )


async def test_every_json_route_reads_through_the_boundary(gw: Gateway) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    big = b'{"version": ' + b"9" * 5000 + b"}"
    tid, hid = "tr_" + "0" * 24, "hb_" + "0" * 24
    for path, who, body in [
        ("/v1/routing/decisions", gw.psap, deep),
        ("/v1/transfers/" + tid + "/release", gw.psap, deep),
        ("/v1/transfers/" + tid + "/disposition", gw.center, deep),
        ("/v1/handbacks", gw.center, deep),
        ("/v1/handbacks/" + hid + "/contact", gw.psap, deep),
        ("/v1/admin/routing/rollback", gw.admin, big),
    ]:
        await refused(gw, path, body, {**who, **JSON}, 400, "bad_request")
    before = await gw.keys()
    resp = await gw.client.put("/v1/admin/routing", data=deep, headers={**gw.admin, **JSON})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"
    assert await gw.keys() == before
    gw.assert_quiet()


@pytest.mark.parametrize(
    ("content_type", "mentions"),
    [
        ("application/json; charset=x-bogus-9", "x-bogus-9"),
        ("application/json; charset=utf-16", "UTF-8"),
        ("multipart/form-data; boundary=b", "multipart"),
    ],
)
async def test_a_json_route_refuses_a_type_it_cannot_read_with_415(
    gw: Gateway, content_type: str, mentions: str
) -> None:
    body = json.dumps(A_TRANSFER).encode()
    headers = {**gw.psap, "Content-Type": content_type}
    await refused(
        gw, "/v1/transfers", body, headers, 415, "unsupported_media_type", mentions=mentions
    )


async def test_an_over_long_body_is_413(gw: Gateway) -> None:
    body = json.dumps({**A_TRANSFER, "tags": ["x" * 1024] * 300}).encode()
    await refused(gw, "/v1/transfers", body, {**gw.psap, **JSON}, 413, "payload_too_large")


async def test_a_broken_content_encoding_is_400_and_closes_the_connection(gw: Gateway) -> None:
    headers = {**gw.psap, **JSON, "Content-Encoding": "gzip"}
    await refused(gw, "/v1/transfers", b"not gzip at all", headers, 400, "bad_request")
    # The next request (a fresh connection) is served as usual.
    good = gzip.compress(json.dumps(A_TRANSFER).encode())
    resp = await gw.client.post("/v1/routing/decisions", data=good, headers=headers)
    assert resp.status == 200, await resp.text()
    gw.assert_quiet()


@pytest.mark.parametrize(
    "number",
    [
        "+1206555\u0660\u0661\u0662\u0663",  # Arabic-Indic digits
        "+1206555\uff10\uff11\uff12\uff13",  # fullwidth digits
        "+\u0661\u0662\u0660\u0666\u0665\u0665\u0665\u0660\u0661\u0662\u0663",
        "+1206555\u09e6\u09e7\u09e8\u09e9",  # Bengali digits
        "+12065550123\n",
    ],
)
async def test_a_callback_number_is_ascii_e164(gw: Gateway, number: str) -> None:
    transfer = json.dumps({**A_TRANSFER, "callback_number": number}).encode()
    error = await refused(gw, "/v1/transfers", transfer, {**gw.psap, **JSON}, 422, "invalid")
    assert [d["path"] for d in error["details"]] == ["callback_number"]
    handback = json.dumps({**A_HANDBACK, "callback_number": number}).encode()
    error = await refused(gw, "/v1/handbacks", handback, {**gw.center, **JSON}, 422, "invalid")
    assert [d["path"] for d in error["details"]] == ["callback_number"]


# ---- Twilio's forms --------------------------------------------------------------------------


def signature(path: str, pairs: Iterable[tuple[str, str]], token: str = TOKEN) -> str:
    """What Twilio sends in ``X-Twilio-Signature`` for these parameters on the public URL."""
    return str(RequestValidator(token).compute_signature(PUBLIC + path, MultiDict(pairs)))


def form_headers(path: str, pairs: Iterable[tuple[str, str]], **extra: str) -> dict[str, str]:
    return {"Content-Type": FORM, "X-Twilio-Signature": signature(path, pairs), **extra}


REPEATED = [*CALL, ("StirVerstat", "TN-Validation-Passed-A"), ("StirVerstat", "No-TN-Validation")]
REPEATED_BODY = "&".join(f"{k}={v}" for k, v in REPEATED).replace("+", "%2B").encode()


async def test_a_repeated_key_signed_right_is_handled(gw: Gateway) -> None:
    resp = await gw.client.post(
        "/twilio/voice", data=REPEATED_BODY, headers=form_headers("/twilio/voice", REPEATED)
    )
    assert resp.status == 200, await resp.text()
    assert "<Gather" in await resp.text()
    gw.assert_quiet()


async def test_a_repeated_key_signed_wrong_is_403(gw: Gateway) -> None:
    before = await gw.keys()
    only_last = [*CALL, ("StirVerstat", "No-TN-Validation")]
    for headers in (
        form_headers("/twilio/voice", only_last),  # one value dropped from the signed set
        {"Content-Type": FORM, "X-Twilio-Signature": signature("/twilio/voice", REPEATED, "x")},
        {"Content-Type": FORM},
    ):
        resp = await gw.client.post("/twilio/voice", data=REPEATED_BODY, headers=headers)
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["error"]["code"] == "forbidden"
    assert await gw.keys() == before
    gw.assert_quiet()


async def test_the_fallback_answers_a_repeated_key_with_its_twiml(gw: Gateway) -> None:
    resp = await gw.client.post(
        "/twilio/fallback", data=REPEATED_BODY, headers=form_headers("/twilio/fallback", REPEATED)
    )
    assert resp.status == 200, await resp.text()
    assert f'<Dial timeout="30">{PRIMARY}</Dial>' in await resp.text()
    gw.assert_quiet()


@pytest.mark.parametrize(
    ("path", "pairs"),
    [
        ("/twilio/voice/code", [*CALL, ("Digits", "000000"), ("Digits", "123456")]),
        (
            "/twilio/participant/tr_x?attempt=1",
            [*CALL, ("CallStatus", "ringing"), ("CallStatus", "busy")],
        ),
        (
            "/twilio/conference/tr_x",
            [*CALL, ("StatusCallbackEvent", "conference-end"), ("SequenceNumber", "9" * 5000)],
        ),
        (
            "/twilio/conference/tr_x",
            [*CALL, ("StatusCallbackEvent", "conference-end"), ("SequenceNumber", "\u0663")],
        ),
    ],
    ids=["two codes", "two call statuses", "5,000-digit sequence", "Arabic-Indic sequence"],
)
async def test_a_parameter_the_gateway_reads_given_twice_or_malformed_is_400(
    gw: Gateway, path: str, pairs: list[tuple[str, str]]
) -> None:
    """Signed right, but which ``Digits`` or ``CallStatus`` to believe is not a guess to make:
    400 naming the parameter, and nothing written."""
    body = urlencode(pairs).encode()
    error = await refused(gw, path, body, form_headers(path, pairs), 400, "bad_request")
    assert error["details"][0]["path"] in {"Digits", "CallStatus", "SequenceNumber"}


async def test_a_form_in_latin_1_is_read_in_latin_1(gw: Gateway) -> None:
    pairs = [*CALL, ("CallerName", "José Müller")]
    body = REPEATED_BODY.split(b"&StirVerstat")[0] + b"&CallerName=Jos%E9+M%FCller"
    headers = form_headers("/twilio/voice", pairs)
    headers["Content-Type"] = FORM + "; charset=ISO-8859-1"
    resp = await gw.client.post("/twilio/voice", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    gw.assert_quiet()


CALL_BODY = b"CallSid=CA" + b"7" * 32 + b"&From=%2B12065550111&To=%2B12065550199"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "mentions"),
    [
        (CALL_BODY, FORM + "; charset=x-bogus-9", 415, "x-bogus-9"),
        (CALL_BODY, FORM + "; charset=utf-16", 415, "UTF-8"),
        (b'{"CallSid": "CA1"}', "application/json", 415, FORM),
        (
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
            415,
            FORM,
        ),
        (CALL_BODY, "text/plain", 415, FORM),
        (CALL_BODY + b"&Caller=%FF", FORM, 400, "utf-8"),
        (CALL_BODY + b"&Caller=%ED%A0%80", FORM, 400, "utf-8"),
        (CALL_BODY + b"&Caller=\xff", FORM, 400, "not utf-8"),
        (CALL_BODY + b"&Caller=%ZZ", FORM, 400, "percent-encoding"),
        (CALL_BODY + b"&Caller=50%", FORM, 400, "percent-encoding"),
        (CALL_BODY + b"&Caller=a\x00b", FORM, 400, "control bytes"),
        (b"&".join([b"a=1"] * 501), FORM, 400, "500 form fields"),
    ],
)
@pytest.mark.parametrize("path", ["/twilio/voice", "/twilio/fallback"])
async def test_a_webhook_body_that_is_not_a_readable_form_is_4xx(
    gw: Gateway, path: str, body: bytes, content_type: str, status: int, mentions: str
) -> None:
    headers = {"Content-Type": content_type, "X-Twilio-Signature": signature(path, CALL)}
    code = "unsupported_media_type" if status == 415 else "bad_request"
    await refused(gw, path, body, headers, status, code, mentions=mentions)


# ---- query strings -----------------------------------------------------------------------------


async def test_handback_listing_takes_any_calendar_date(gw: Gateway) -> None:
    for query in ({"from": "0001-01-01", "to": "9999-12-31"}, {"to": "9999-12-31"}):
        resp = await gw.client.get("/v1/handbacks", params=query, headers=gw.admin)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"items": [], "next_cursor": None}
    gw.assert_quiet()


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=%EF%BC%91", "limit"),  # fullwidth 1
        ("limit=%D9%A1", "limit"),  # Arabic-Indic 1
        ("limit=" + "9" * 5000, "limit"),
        ("limit=+5", "limit"),
        ("limit=5&limit=6", "limit"),
        ("from=2024-W01-1", "from"),
        ("from=%EF%BC%92024-01-01", "from"),
        ("to=2024-02-30", "to"),
        ("to=" + "9" * 5000, "to"),
        ("state=%ED%A0%80", "state"),
        ("psap_id=%00", "psap_id"),
    ],
)
async def test_a_query_parameter_that_does_not_parse_is_422(
    gw: Gateway, query: str, path: str
) -> None:
    resp = await gw.client.get("/v1/handbacks?" + query, headers=gw.admin)
    body = await resp.json()
    assert resp.status == 422, body
    assert body["error"]["code"] == "invalid"
    assert [d["path"] for d in body["error"]["details"]] == [path]
    gw.assert_quiet()


# ---- a client that goes away ---------------------------------------------------------------


@pytest.mark.parametrize("handler_cancellation", [False, True], ids=["run_app", "cancelling"])
async def test_a_client_that_disconnects_mid_body_leaves_no_traceback(
    gw: Gateway, settings: Settings, handler_cancellation: bool
) -> None:
    """``gateway serve`` runs the app as ``run_app`` does (the read fails with
    ConnectionResetError: one INFO line); aiohttp's test server cancels the handler instead."""
    port = free_port()
    runner = web.AppRunner(
        create_app(with_overrides(settings, public_base_url=PUBLIC)),
        handler_cancellation=handler_cancellation,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        before = await gw.keys()
        body = json.dumps(A_TRANSFER).encode()
        head = (
            "POST /v1/transfers HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Authorization: {gw.psap['Authorization']}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body[: len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is waiting for the rest
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.3)  # whatever the server logs once the handler is done

        noted = [r for r in gw.caplog.records if "disconnected" in r.getMessage()]
        if handler_cancellation:
            assert noted == []
        else:
            (record,) = noted
            assert record.levelno == logging.INFO
            assert record.exc_info is None
        gw.assert_quiet()
        assert await gw.keys() == before
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200 OK")
        writer.close()
        await writer.wait_closed()
    finally:
        await runner.cleanup()


async def test_a_body_that_stops_arriving_gets_408_and_frees_the_handler(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker, redis: Redis
) -> None:
    """A client that sends half a body and goes quiet does not hold a handler: after
    ``GATEWAY_BODY_TIMEOUT_S`` it gets 408 in the error shape and the connection is closed."""
    client = await make_client(settings, body_timeout_s=0.5)
    body = json.dumps(A_TRANSFER).encode()
    head = (
        "POST /v1/transfers HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{client.port}\r\n"
        f"Authorization: Bearer {make_key(PSAP, 'psap')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = set(await redis.keys("*"))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(head + body[:10])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # read to the close
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split(b" ")[1] == b"408", answer[:80]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert set(await redis.keys("*")) == before
