"""The real logging setup, written to a string: JSON lines, request ids, and no personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import BaseModel

from gateway.core.logs import REDACTED, RequestIdAccessLogger, configure_logging, request_id_var

PHONES = [
    "+12065550123",
    "(206) 555-0123",
    "206-555-0123",
    "206.555.0123",
    "1-206-555-0123",
    "2065550123",
    "+1 206 555 0123",
    "+442079460123",
]
# Pieces of the numbers that would betray a partial redaction.
FRAGMENTS = ["555-0123", "555.0123", "555 0123", "5550123", "79460123"]

Logs = tuple[logging.Logger, Callable[[], list[dict[str, Any]]], io.StringIO]


@pytest.fixture
def logs() -> Iterator[Logs]:
    """The gateway's real handler on a StringIO; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)

    def lines() -> list[dict[str, Any]]:
        text = out.getvalue()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    yield logging.getLogger("gateway.test"), lines, out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def assert_no_phone(text: str) -> None:
    for phone in PHONES:
        assert phone not in text, phone
    for fragment in FRAGMENTS:
        assert fragment not in text, fragment


@pytest.mark.parametrize("phone", PHONES)
def test_a_phone_number_in_the_message_is_redacted(logs: Logs, phone: str) -> None:
    log, lines, out = logs
    log.info(f"calling {phone} now")
    assert_no_phone(out.getvalue())
    assert lines()[0]["msg"] == "calling [phone] now"


@pytest.mark.parametrize("phone", PHONES)
def test_a_phone_number_in_percent_args_is_redacted(logs: Logs, phone: str) -> None:
    log, lines, out = logs
    log.warning("dial %s failed after %d tries", phone, 3)
    assert_no_phone(out.getvalue())
    assert lines()[0]["msg"] == "dial [phone] failed after 3 tries"


@pytest.mark.parametrize("phone", PHONES)
def test_a_phone_number_in_extra_fields_is_redacted(logs: Logs, phone: str) -> None:
    log, lines, out = logs
    log.info(
        "leg update",
        extra={
            "detail": f"leg to {phone}",
            "context": {"dialed": phone, "attempts": [phone, "ok"]},
            "legs": (phone,),
        },
    )
    assert_no_phone(out.getvalue())
    entry = lines()[0]
    assert entry["detail"] == "leg to [phone]"
    assert entry["context"] == {"dialed": "[phone]", "attempts": ["[phone]", "ok"]}
    assert entry["legs"] == ["[phone]"]


@pytest.mark.parametrize("phone", PHONES)
def test_a_phone_number_inside_an_exception_is_redacted(logs: Logs, phone: str) -> None:
    log, lines, out = logs
    try:
        raise ValueError(f"Twilio refused the number {phone}")
    except ValueError as exc:
        log.exception("dial failed")
        log.error("dial failed: %s", exc)
        log.error("dial failed", extra={"error": exc})
    assert_no_phone(out.getvalue())
    first, second, third = lines()
    assert "ValueError: Twilio refused the number [phone]" in first["exc"]
    assert "Traceback" in first["exc"]
    assert second["msg"] == "dial failed: Twilio refused the number [phone]"
    assert third["error"] == "Twilio refused the number [phone]"


def test_a_number_quoted_in_the_traceback_source_is_redacted(logs: Logs) -> None:
    log, lines, out = logs
    try:
        raise RuntimeError("+12065550123 is unreachable")
    except RuntimeError:
        log.exception("boom")
    assert "raise RuntimeError" in lines()[0]["exc"]  # the source line is there, scrubbed
    assert_no_phone(out.getvalue())


class Location(BaseModel):
    address: str
    lat: float


BAD_LOCATION = {"address": "1200 Main St Apt 4", "lat": "north of 206-555-0123"}


def test_a_pydantic_error_does_not_quote_its_input(logs: Logs) -> None:
    log, lines, out = logs
    try:
        Location.model_validate(BAD_LOCATION)
    except Exception:
        log.exception("bad handback")
    text = out.getvalue()
    assert "north of" not in text
    assert_no_phone(text)
    assert "input_value=[redacted]" in lines()[0]["exc"]


@pytest.mark.parametrize(
    "field", ["address", "summary", "callback_number", "description", "location", "risk"]
)
@pytest.mark.parametrize(
    "value", ["1200 Main St, Seattle", "says they have a plan", "+12065550123", {"a": 1}, 42]
)
def test_sensitive_fields_are_redacted_whatever_their_content(
    logs: Logs, field: str, value: object
) -> None:
    log, lines, out = logs
    log.info("handback received", extra={field: value, "transfer_id": "t-1"})
    entry = lines()[0]
    assert entry[field] == REDACTED
    assert entry["transfer_id"] == "t-1"
    assert "Main St" not in out.getvalue()
    assert "a plan" not in out.getvalue()


def test_sensitive_fields_nested_in_an_extra_are_redacted(logs: Logs) -> None:
    log, lines, out = logs
    log.info(
        "handback",
        extra={"handback": {"id": "h1", "address": "1200 Main St", "risk": {"weapons": True}}},
    )
    assert lines()[0]["handback"] == {"id": "h1", "address": REDACTED, "risk": REDACTED}
    assert "Main St" not in out.getvalue()


def test_lines_are_json_with_timestamp_level_and_message(logs: Logs) -> None:
    log, lines, _ = logs
    log.debug("transfer t1 moved to ringing (attempt 2 of 3)")
    log.error("timer lag %.1f s", 12.5)
    first, second = lines()
    assert first["msg"] == "transfer t1 moved to ringing (attempt 2 of 3)"  # not over-redacted
    assert first["level"] == "debug"
    assert second == second | {"level": "error", "msg": "timer lag 12.5 s"}
    for entry in (first, second):
        assert entry["ts"].endswith("+00:00")
        assert entry["logger"] == "gateway.test"


def test_request_id_is_stamped(logs: Logs) -> None:
    log, lines, _ = logs
    log.info("outside a request")
    token = request_id_var.set("req-42")
    try:
        log.info("inside a request")
        logging.getLogger("aiohttp.access").info("from another library")
    finally:
        request_id_var.reset(token)
    outside, inside, other = lines()
    assert outside["request_id"] == "-"
    assert inside["request_id"] == "req-42"
    assert other["request_id"] == "req-42"


def test_a_broken_format_string_still_logs_and_redacts(logs: Logs) -> None:
    log, lines, out = logs
    log.info("dial %s to %s", "+12065550123")  # one argument short
    assert len(lines()) == 1
    assert_no_phone(out.getvalue())


def test_access_log_lines_carry_the_request_id(logs: Logs) -> None:
    _, lines, _ = logs
    request = make_mocked_request("GET", "/healthz")
    response = web.Response(headers={"X-Request-Id": "req-123"})
    RequestIdAccessLogger(logging.getLogger("aiohttp.access"), "%r %s").log(request, response, 0.01)
    assert lines()[-1]["request_id"] == "req-123"
    assert request_id_var.get() == "-", "the request id does not leak into later records"


@pytest.mark.parametrize(
    "text", ["tel+12065550123", "caller:+12065550123abc", "+1206555012345678", "x+442079460123"]
)
def test_a_number_glued_to_text_is_redacted(logs: Logs, text: str) -> None:
    log, lines, out = logs
    log.info("dialing %s", text)
    assert "5550123" not in out.getvalue()
    assert "79460123" not in out.getvalue()
    assert "[phone]" in lines()[0]["msg"]


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
    ],
    ids=["bad chunk size", "bad header", "header line too long"],
)
async def test_a_request_aiohttp_cannot_frame_is_one_line_without_a_traceback(
    logs: Logs, raw: bytes
) -> None:
    """aiohttp refuses these before any middleware runs; its own error log must not carry a
    traceback (bad input is not a fault of the gateway)."""
    import asyncio

    from aiohttp.test_utils import TestServer

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    async with TestServer(app, host="127.0.0.1") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
    assert answer.split(b" ")[1].startswith(b"4"), answer[:60]
    _, lines, out = logs
    assert "Traceback" not in out.getvalue()
    refused = [line for line in lines() if line["logger"] == "aiohttp.server"]
    assert refused, lines()
    assert all(
        (line["level"], line["msg"]) == ("info", "malformed HTTP request refused")
        for line in refused
    )
