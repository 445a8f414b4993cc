"""Structured JSON logs that cannot leak personal data.

Redaction lives in the handler's filter, not at call sites: whatever a call site passes — a
message with a phone number in it, an ``extra`` field named ``address``, an exception whose text
quotes its input — is scrubbed before any formatter sees it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from gateway.core.phone import redact_phones

# Fields whose values are personal or free text, whatever their content looks like.
SENSITIVE_FIELDS = frozenset(
    {
        "address",
        "location",
        "description",
        "summary",
        "risk",
        "notes",
        "note",
        "free_text",
        "text",
        "callback_number",
        "caller_number",
        "number",
        "phone",
        "from",
        "to",
        "from_",
        "caller",
        "called",
        "name",
        "lat",
        "lon",
        "body",
        "payload",
        "counselor_ref",
    }
)

# pydantic's messages quote the offending input: "input_value='1 Main St', input_type=str".
_INPUT_VALUE_RE = re.compile(r"input_value=(?:'[^']*'|\"[^\"]*\"|\{.*?\}|\[.*?\]|\S+)")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

REDACTED = "[redacted]"

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
"""The id of the HTTP request being served, stamped on every log record made while serving it."""


def scrub_text(text: str) -> str:
    if len(text) <= _REMEMBERED_CHARS:
        return _scrub_short(text)
    return _scrub(text)


_REMEMBERED_CHARS = 160
"""Texts this short (a method, a peer address, a path, a message) recur from line to line:
their scrubbed form is remembered (``_scrub_short``) instead of run through the patterns again."""


def _scrub(text: str) -> str:
    if "input_value=" in text:
        text = _INPUT_VALUE_RE.sub("input_value=[redacted]", text)
    return redact_phones(text)


_scrub_short = functools.lru_cache(maxsize=2048)(_scrub)


def scrub(value: Any, key: str | None = None) -> Any:
    """``value`` with sensitive fields replaced and phone numbers removed from all text."""
    if key is not None and key.lower() in SENSITIVE_FIELDS and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):  # before the ABC check below
        return value
    if isinstance(value, Mapping):
        return {str(k): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    return scrub_text(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites each record in place: message rendered and scrubbed, extras scrubbed,
    exception text rendered and scrubbed. Runs before every formatter of its handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a call site's broken format string must not lose the record
            message = str(record.msg)
        record.request_id = request_id_var.get()
        record.msg = scrub_text(message)
        record.args = None
        fields = vars(record)
        for attr in [a for a in fields if a not in _RECORD_ATTRS]:
            fields[attr] = scrub(fields[attr], attr)
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub_text("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


class ProtocolErrorFilter(logging.Filter):
    """aiohttp answers a request it cannot even frame (a bad request line or header, broken
    chunked encoding, an unknown content encoding) with a 4xx before any middleware runs, and
    logs it as an error with a traceback. Bad input is not a fault of the gateway: such a record
    becomes one INFO line naming the kind of error, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiohttp.server" or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            record.msg, record.args = "malformed HTTP request refused", None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
            record.error = type(exc).__name__
        return True


_JSON = json.JSONEncoder(default=str, ensure_ascii=False)
"""``json.dumps(entry, default=str, ensure_ascii=False)``, without building an encoder a line."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # ``extra`` fields in the order the call site gave them
        entry.update((a, v) for a, v in vars(record).items() if a not in _RECORD_ATTRS)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return _JSON.encode(entry)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records through one redacting JSON handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ProtocolErrorFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx's own line per request repeats what the access log and the dial's records say.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The lines carry none of where a call was made, nor its thread or process: not looking
    # them up saves a frame walk and three calls per record (the logging HOWTO's
    # "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return handler


class RequestIdAccessLogger(AbstractAccessLogger):
    """One structured line per request — ``access`` with its method, path, status, size,
    duration (ms), peer and the request id the response carries (the access log is written
    after the request's own context has ended). Built from the request directly: no format
    string is parsed on every request. (``log_format`` is accepted and not used.)"""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        request_id = response.headers.get("X-Request-Id", "-")
        token = request_id_var.set(request_id)
        try:
            self.logger.info(
                "access",
                extra={
                    "method": request.method,
                    "path": request.path_qs,
                    "status": response.status,
                    "bytes": response.body_length,
                    "ms": round(time * 1000, 2),
                    "remote": request.remote,
                },
            )
        finally:
            request_id_var.reset(token)
