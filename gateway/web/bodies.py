"""The one boundary for request input: bodies and query strings in, errors a client can act on out.

Every request body a handler sees is read here (``read_model``, ``read_json``, ``read_form``),
and so is every query parameter that needs converting (``query_text``, ``query_int``,
``query_date``). Whatever the input, the answer is a 4xx in the error shape of DESIGN.md §6 —
never a 500, never a traceback in the log — and nothing has been written when it is given:

    what is wrong                                            status  code
    body over the app's ``client_max_size``                  413     payload_too_large (aiohttp)
    the client went away before the body was complete        400     bad_request (one INFO line)
    the body did not arrive within ``body_timeout_s``        408     request_timeout
    broken chunked framing or content encoding (gzip …)      400     bad_request
    JSON: a multipart body, a charset other than UTF-8       415     unsupported_media_type
    JSON: not UTF-8, a byte-order mark, a syntax error       400     bad_request (line, column)
    JSON: nesting deeper than ``MAX_DEPTH``                  400     bad_request
    JSON: an integer of more than ``MAX_INT_DIGITS`` digits  400     bad_request
    JSON: NaN, Infinity, a number that overflows a double    400     bad_request
    JSON: an unpaired surrogate escape (``"\\ud800"``)        400     bad_request
    JSON: a key given twice in one object                    400     bad_request
    JSON: not an object (every body of this API is one)      400     bad_request
    JSON: content that does not validate                     422     invalid (paths, no values)
    JSON: a field the model does not know                    422     invalid (each named, with
                                                                     the closest known name)
    form: not urlencoded; a charset not UTF-8/ASCII/Latin-1  415     unsupported_media_type
    form: raw control bytes, bad percent-encoding, not       400     bad_request
          decodable in its charset, over ``MAX_FORM_FIELDS``
    query: repeated, not ASCII digits / ``YYYY-MM-DD``,      422     invalid (path: its name)
           out of range

Text that passes is valid Unicode that encodes to UTF-8 (no lone surrogates), so it can go to
Redis, into logs, and out in JSON without failing later.
"""

from __future__ import annotations

import asyncio
import codecs
import difflib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NoReturn, TypeVar, get_args
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict
from pydantic import AliasChoices, BaseModel, ValidationError

from gateway.core.errors import (
    BadRequest,
    BodyUnreadable,
    Invalid,
    RequestTimeout,
    UnsupportedMediaType,
    validation_details,
)
from gateway.web.appkeys import SETTINGS

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects in a JSON body (this API's deepest is about 6)."""
MAX_INT_DIGITS = 15
"""Longest integer literal in a JSON body, sign not counted: every integer of this API fits,
and any such integer survives a double (Redis's Lua scripts) exactly."""
MAX_FORM_FIELDS = 500
"""Most ``name=value`` pairs in one form body (Twilio sends a few dozen)."""

_JSON_CHARSETS = frozenset({"utf-8", "ascii"})
_FORM_CHARSETS = frozenset({"utf-8", "ascii", "iso8859-1"})
"""Codec names (as ``codecs.lookup`` gives them) a form may declare: UTF-8, US-ASCII, Latin-1."""
FORM_TYPE = "application/x-www-form-urlencoded"

# A JSON string token, possessive so that an unterminated one costs linear time.
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_RAW_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,9}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# ---- reading the bytes ---------------------------------------------------------------------


async def read_body(request: web.Request) -> bytes:
    """The raw body (``b""`` when there is none), read once and cached by aiohttp.

    Raises ``HTTPRequestEntityTooLarge`` (413) past the app's ``client_max_size``;
    ``RequestTimeout`` (408) when the body takes longer than ``GATEWAY_BODY_TIMEOUT_S`` (a
    client that sends part of a body and goes quiet must not hold a handler); and
    ``BodyUnreadable`` (400) when the client disconnects mid-body or the transfer or content
    encoding is malformed — each logged as one INFO line, without a traceback.
    """
    if not request.body_exists:
        return b""
    deadline_s = request.app[SETTINGS].body_timeout_s
    try:
        async with asyncio.timeout(deadline_s):
            return await request.read()
    except TimeoutError:
        log.info("request body too slow", extra={"path": request.path})
        _abandon_body(request)
        raise RequestTimeout(f"the request body did not arrive within {deadline_s:g} s") from None
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one
        log.info("client disconnected before the body was complete", extra={"path": request.path})
        raise BodyUnreadable("the connection closed before the request body was complete") from None
    except web.RequestPayloadError:
        log.info("request body unreadable", extra={"path": request.path})
        _abandon_body(request)
        raise BodyUnreadable(
            "the request body could not be read: malformed transfer or content encoding"
        ) from None


def _abandon_body(request: web.Request) -> None:
    """Mark the broken payload finished, so aiohttp does not try to drain it after the answer
    (and log the same error again as unhandled, with a traceback). The answer to a
    ``BodyUnreadable`` closes the connection (``error_middleware``)."""
    request.content.feed_eof()


# ---- JSON ------------------------------------------------------------------------------------


class _Refused(Exception):
    """A JSON value this API does not accept; raised from the decoder's hooks."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused("a number is too large to represent")
    return value


def _constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not a JSON number; send a finite number or null")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"the key {json.dumps(key[:40])} appears twice in one object")
            seen.add(key)
    return obj


def _check_depth(text: str) -> None:
    """Reject nesting deeper than ``MAX_DEPTH`` without recursing (before the decoder does)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def _check_strings(data: Any) -> None:
    """Every key and string is valid Unicode: no unpaired surrogate from a ``\\uD8xx`` escape."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise BadRequest(
                    "a string holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff); "
                    "send valid Unicode"
                )
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(raw: bytes) -> Any:
    """Any JSON value from ``raw``, within this API's limits (see the module's table).

    Raises ``BadRequest`` (400) with a message naming the limit or, for a syntax error, its
    line and column; never ``RecursionError``, ``ValueError`` or ``UnicodeError``.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raise BadRequest("the body starts with a byte-order mark; send UTF-8 JSON without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 (invalid byte at offset {exc.start})") from None
    if not text.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    _check_depth(text)
    try:
        data = json.loads(
            text,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except _Refused as exc:
        raise BadRequest(exc.message) from None
    except RecursionError:  # not reached after _check_depth; kept so no input can be a 500
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    _check_strings(data)
    return data


def _check_json_type(request: web.Request) -> None:
    """Any Content-Type that can carry JSON text (``curl -d`` sends a form type) is read as
    JSON; multipart bodies and charsets other than UTF-8 (RFC 8259) are 415."""
    if request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType(
            f"{request.content_type} is not read here; send application/json"
        )
    charset = request.charset
    if charset and _codec(charset) not in _JSON_CHARSETS:
        raise UnsupportedMediaType(f"charset {charset[:40]!r}: JSON bodies are UTF-8")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (every body of this API is one): 400/413/415 as above."""
    _check_json_type(request)
    data = parse_json(await read_body(request))
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


async def read_model(
    request: web.Request,
    model: type[M],
    *,
    allow_empty: bool = False,
    context: Mapping[str, Any] | None = None,
) -> M:
    """The body validated as ``model`` (under the validation ``context``, e.g. the region
    phone numbers are read in): 400/413/415 as ``read_json``, 422 with each invalid field's
    path (never its value). With ``allow_empty``, an empty body is ``{}``."""
    if allow_empty:
        _check_json_type(request)
        if not (await read_body(request)).strip():
            return validate(model, {}, context=context)
    return validate(model, await read_json(request), context=context)


def validate(model: type[M], data: Any, *, context: Mapping[str, Any] | None = None) -> M:
    """``data`` as ``model``, or ``Invalid`` (422) naming every bad field.

    A field the model does not know (``extra="forbid"``) is named in the message and in its
    detail, with the closest known name when there is one (``difflib.get_close_matches``):
    ``callback_numbr`` → ``did you mean 'callback_number'?`` (DESIGN.md §9)."""
    try:
        return model.model_validate(data, context=dict(context) if context else None)
    except ValidationError as exc:
        details = validation_details(exc)
        unknown = [_unknown_field(model, err["loc"]) for err in _extra_errors(exc)]
        if not unknown:
            raise Invalid(f"{exc.error_count()} invalid field(s)", details) from None
        for detail, (path, _, suggestion) in zip(
            (d for d in details if d["type"] == _EXTRA), unknown, strict=True
        ):
            detail["path"] = path
            detail["message"] = "unknown field" + (
                f"; did you mean {suggestion!r}?" if suggestion else ""
            )
            if suggestion:
                detail["did_you_mean"] = suggestion
        raise Invalid(_unknown_message(unknown, exc.error_count()), details) from None


_EXTRA = "extra_forbidden"
MAX_NAMED = 10
"""Unknown fields named in an error's message (every one is in its details)."""
_NAME_CHARS = 40
"""An unknown field's name is cut to this many characters wherever it is echoed."""


def _extra_errors(exc: ValidationError) -> list[Any]:
    return [e for e in exc.errors(include_url=False, include_input=False) if e["type"] == _EXTRA]


def _unknown_field(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, str, str]:
    """(path, name, closest known name or "") of the unknown field at ``loc``."""
    name = str(loc[-1])[:_NAME_CHARS]
    path = ".".join([*(str(part) for part in loc[:-1]), name])
    close = difflib.get_close_matches(name, _known_names(model, loc[:-1]), n=1)
    return path, name, close[0] if close else ""


def _known_names(model: type[BaseModel], parent: tuple[int | str, ...]) -> list[str]:
    """The field names (and plain aliases) of the model found at ``parent`` inside ``model``:
    list indexes are skipped, ``X | None`` and ``list[X]`` are looked through."""
    current: type[BaseModel] | None = model
    for part in parent:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current is not None else None
        current = _model_in(field.annotation) if field is not None else None
    if current is None:
        return []
    names: list[str] = []
    for name, field in current.model_fields.items():
        names.append(name)
        if isinstance(field.alias, str) and field.alias != name:
            names.append(field.alias)
        if isinstance(field.validation_alias, AliasChoices):
            names += [c for c in field.validation_alias.choices if isinstance(c, str)]
    return names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _unknown_message(unknown: list[tuple[str, str, str]], errors: int) -> str:
    named = [
        f"{path!r}" + (f" (did you mean {suggestion!r}?)" if suggestion else "")
        for path, _, suggestion in unknown[:MAX_NAMED]
    ]
    more = len(unknown) - len(named)
    message = "unknown field(s): " + ", ".join(named) + (f" and {more} more" if more else "")
    others = errors - len(unknown)
    return message + (f"; {others} other invalid field(s)" if others else "")


# ---- forms (Twilio's webhooks) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Form:
    """A urlencoded body: every ``(name, value)`` pair, in order, repeats kept."""

    pairs: tuple[tuple[str, str], ...] = ()

    @property
    def multi(self) -> MultiDict[str]:
        """All values of each name (what Twilio signs: ``RequestValidator`` calls ``getall``)."""
        return MultiDict(self.pairs)

    @property
    def params(self) -> dict[str, str]:
        """One value per name, the last one given (what handlers read)."""
        return dict(self.pairs)


def parse_form(raw: bytes, charset: str = "utf-8") -> Form:
    """The pairs of an ``application/x-www-form-urlencoded`` body in ``charset`` (a codec name
    from ``codecs.lookup``). ``+`` is a space, blank values are kept, empty ``&&`` segments are
    skipped. Raises ``BadRequest`` (400) for raw control bytes, a ``%`` not followed by two hex
    digits, bytes or escapes not valid in ``charset``, or more than ``MAX_FORM_FIELDS`` pairs."""
    if _RAW_CONTROL.search(raw):
        raise BadRequest("the form body holds raw control bytes; percent-encode them")
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the form body is not {charset} (invalid byte at offset {exc.start})"
        ) from None
    if _BAD_PERCENT.search(text):
        raise BadRequest("malformed percent-encoding: '%' must be followed by two hex digits")
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding=charset,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadRequest(f"a percent-encoded value is not valid {charset}") from None
    except ValueError:  # parse_qsl's only other error: too many fields
        raise BadRequest(f"more than {MAX_FORM_FIELDS} form fields") from None
    return Form(tuple(pairs))


async def read_form(request: web.Request) -> Form:
    """The body as a urlencoded form (an empty body, whatever its type, is an empty form).

    415 for another Content-Type or a charset other than UTF-8, US-ASCII or ISO-8859-1; 400 as
    ``parse_form`` and ``read_body``; 413 past the app's ``client_max_size``.
    """
    raw = await read_body(request)
    if not raw:
        return Form()
    if request.content_type != FORM_TYPE:
        raise UnsupportedMediaType(
            f"{request.content_type[:60]} is not read here; send {FORM_TYPE}"
        )
    charset = _codec(request.charset or "utf-8")
    if charset not in _FORM_CHARSETS:
        raise UnsupportedMediaType(
            f"charset {request.charset!r}: forms are read as UTF-8, US-ASCII or ISO-8859-1"
        )
    return parse_form(raw, charset)


def _codec(charset: str) -> str:
    """The codec's canonical name, or ``UnsupportedMediaType`` for a charset Python lacks."""
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise UnsupportedMediaType(f"unknown charset {charset[:40]!r}") from None


# ---- query strings ---------------------------------------------------------------------------


def _bad_query(name: str, expected: str) -> Invalid:
    return Invalid(f"bad query parameter '{name}'", [{"path": name, "message": expected}])


def query_text(request: web.Request, name: str) -> str | None:
    """The one value of query parameter ``name`` (None when absent or empty); 422 if repeated."""
    values: Sequence[str] = request.query.getall(name, [])
    if len(values) > 1:
        raise _bad_query(name, "given more than once")
    return values[0] if values and values[0] else None


def query_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer in ``[low, high]`` written in ASCII digits
    (``default`` when absent); 422 otherwise."""
    text = query_text(request, name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise _bad_query(name, f"an integer from {low} to {high}")
    return int(text)


def query_date(request: web.Request, name: str) -> date | None:
    """Query parameter ``name`` as a calendar date written ``YYYY-MM-DD`` in ASCII digits
    (None when absent); 422 otherwise."""
    text = query_text(request, name)
    if text is None:
        return None
    try:
        if not _DAY.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise _bad_query(name, "a date, YYYY-MM-DD") from None
