"""The Twilio REST API subset the gateway uses, under ``/2010-04-01/Accounts/{AccountSid}/``.

HTTP Basic auth with (account SID, auth token); form-encoded parameters in Twilio's PascalCase;
JSON answers in Twilio's snake_case; errors as ``{"code", "message", "more_info", "status"}``.
Every request is recorded in the timeline (``rest.request``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from .appkeys import ENGINE
from .engine import (
    CALL_EVENTS,
    E164,
    CallRequest,
    JoinOptions,
    ParticipantRequest,
    SandboxEngine,
    parse_events,
)
from .errors import InvalidParameter, NotFound, TwilioApiError
from .model import API_VERSION, Conference

PREFIX = f"/{API_VERSION}/Accounts/{{account_sid}}"
Form = MultiDict[str]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _form(request: web.Request) -> Form:
    if request.method in ("GET", "DELETE"):
        return MultiDict(request.query)
    data: MultiDictProxy[Any] = await request.post()
    return MultiDict((k, v) for k, v in data.items() if isinstance(v, str))


def _flat(form: Form) -> dict[str, str | list[str]]:
    flat: dict[str, str | list[str]] = {}
    for key in form:
        values = form.getall(key)
        flat[key] = values[0] if len(values) == 1 else values
    return flat


def _auth_ok(request: web.Request, account_sid: str, auth_token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), account_sid.encode()) and hmac.compare_digest(
        password.encode(), auth_token.encode()
    )


@web.middleware
async def twilio_api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(f"/{API_VERSION}/"):
        return await handler(request)
    engine = request.app[ENGINE]
    form = await _form(request)
    auth_ok = _auth_ok(request, engine.config.account_sid, engine.config.auth_token)
    response: web.StreamResponse
    try:
        if not auth_ok:
            raise TwilioApiError(401, 20003, "Authenticate")
        if request.match_info.get("account_sid") != engine.config.account_sid:
            raise NotFound(request.path)
        if engine.config.rest_unavailable:
            raise TwilioApiError(503, 20503, "Service Unavailable")
        response = await handler(request)
    except TwilioApiError as exc:
        response = web.json_response(exc.as_json(), status=exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    except web.HTTPNotFound:
        response = web.json_response(NotFound(request.path).as_json(), status=404)
    except web.HTTPMethodNotAllowed:
        error = TwilioApiError(405, 20004, "Method not allowed")
        response = web.json_response(error.as_json(), status=405)
    engine.timeline.record(
        "rest.request",
        method=request.method,
        path=request.path,
        params=_flat(form),
        auth_ok=auth_ok,
        status=response.status,
    )
    return response


# ----- parameter parsing ---------------------------------------------------------------------


def _bool(form: Form, name: str, default: bool) -> bool:
    value = form.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise InvalidParameter(21218, f"Invalid value for {name}: {value}")
    return lowered == "true"


def _optional_bool(form: Form, name: str) -> bool | None:
    return _bool(form, name, False) if form.get(name) else None


def _timeout(form: Form, default: int, low: int, high: int) -> float:
    raw = form.get("Timeout")
    if raw is None or raw == "":
        return float(default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidParameter(21208, f"Invalid Timeout: {raw}") from exc
    return float(min(max(value, low), high))


def _numbers(form: Form) -> tuple[str, str]:
    to, from_ = form.get("To", ""), form.get("From", "")
    if not to:
        raise InvalidParameter(21604, "A 'To' phone number is required.")
    if not from_:
        raise InvalidParameter(21603, "A 'From' phone number is required.")
    if not E164.match(to):
        raise InvalidParameter(21211, f"Invalid 'To' Phone Number: {to}")
    if not E164.match(from_):
        raise InvalidParameter(21212, f"Invalid 'From' Number: {from_}")
    return to, from_


def _callback(form: Form, prefix: str = "") -> tuple[str | None, str, frozenset[str]]:
    url = form.get(f"{prefix}StatusCallback") or None
    method = (form.get(f"{prefix}StatusCallbackMethod") or "POST").upper()
    raw_events = form.getall(f"{prefix}StatusCallbackEvent", [])
    return url, method, frozenset(raw_events)


def _page(key: str, items: list[dict[str, Any]], request: web.Request) -> dict[str, Any]:
    page_size = int(request.query.get("PageSize", "50") or 50)
    uri = request.path_qs
    return {
        key: items[:page_size],
        "end": max(0, min(len(items), page_size) - 1),
        "first_page_uri": uri,
        "next_page_uri": None,
        "page": 0,
        "page_size": page_size,
        "previous_page_uri": None,
        "start": 0,
        "uri": uri,
    }


def _engine(request: web.Request) -> SandboxEngine:
    return request.app[ENGINE]


# ----- conferences and participants --------------------------------------------------------


def _conference(request: web.Request) -> Conference:
    engine = _engine(request)
    ref = request.match_info["conference"]
    conference = engine.conference(ref)
    if conference is None:
        raise NotFound(request.path)
    return conference


async def create_participant(request: web.Request) -> web.Response:
    form = await _form(request)
    to, from_ = _numbers(form)
    callback, method, raw_events = _callback(form)
    events = parse_events(list(raw_events), CALL_EVENTS) or frozenset({"completed"})
    conf_callback, conf_method, conf_events = _callback(form, "Conference")
    join = JoinOptions(
        muted=_bool(form, "Muted", False),
        start_conference_on_enter=_bool(form, "StartConferenceOnEnter", True),
        end_conference_on_exit=_bool(form, "EndConferenceOnExit", False),
        beep=form.get("Beep") or "true",
        label=form.get("Label") or None,
        coaching=_bool(form, "Coaching", False),
        status_callback=conf_callback,
        status_callback_method=conf_method,
        status_callback_events=frozenset(
            part for value in conf_events for part in value.replace(",", " ").split()
        ),
    )
    participant_request = ParticipantRequest(
        from_=from_,
        to=to,
        timeout_s=_timeout(form, 60, 5, 600),
        status_callback=callback,
        status_callback_method=method,
        status_callback_events=events,
        join=join,
        early_media=_bool(form, "EarlyMedia", True),
    )
    engine = _engine(request)
    if engine.config.participant_create_hold_s:
        engine.timeline.record("participant.held", to=to, label=join.label)
        await asyncio.sleep(engine.config.participant_create_hold_s)
        if request.transport is None or request.transport.is_closing():
            engine.timeline.record("participant.dropped", to=to, label=join.label)
            raise NotFound(request.path)  # nobody is left to read it
    _, participant = await engine.add_participant(
        request.match_info["conference"], participant_request
    )
    if engine.config.participant_create_reply_delay_s:
        await asyncio.sleep(engine.config.participant_create_reply_delay_s)
    return web.json_response(participant.as_json(), status=201)


async def list_participants(request: web.Request) -> web.Response:
    conference = _conference(request)
    items = [p.as_json() for p in [*conference.participants.values(), *conference.pending.values()]]
    return web.json_response(_page("participants", items, request))


async def participant(request: web.Request) -> web.Response:
    engine = _engine(request)
    conference, found = engine.conference_participant(
        request.match_info["conference"], request.match_info["call"]
    )
    if request.method == "DELETE":
        engine.remove_participant(conference, found)
        return web.Response(status=204)
    if request.method == "POST":
        form = await _form(request)
        engine.update_participant(
            conference,
            found,
            muted=_optional_bool(form, "Muted"),
            hold=_optional_bool(form, "Hold"),
            end_conference_on_exit=_optional_bool(form, "EndConferenceOnExit"),
            coaching=_optional_bool(form, "Coaching"),
            label=form.get("Label") or None,
            announce_url=form.get("AnnounceUrl") or None,
            announce_method=(form.get("AnnounceMethod") or "POST").upper(),
        )
    return web.json_response(found.as_json())


async def list_conferences(request: web.Request) -> web.Response:
    engine = _engine(request)
    name = request.query.get("FriendlyName")
    status = request.query.get("Status")
    items = [
        c.as_json()
        for c in sorted(engine.conferences.values(), key=lambda c: c.created_at, reverse=True)
        if (name is None or c.friendly_name == name) and (status is None or c.status == status)
    ]
    return web.json_response(_page("conferences", items, request))


async def conference(request: web.Request) -> web.Response:
    found = _conference(request)
    if request.method == "POST":
        form = await _form(request)
        _engine(request).update_conference(
            found,
            status=form.get("Status") or None,
            announce_url=form.get("AnnounceUrl") or None,
            announce_method=(form.get("AnnounceMethod") or "POST").upper(),
        )
    return web.json_response(found.as_json())


# ----- calls ---------------------------------------------------------------------------------


async def create_call(request: web.Request) -> web.Response:
    form = await _form(request)
    to, from_ = _numbers(form)
    url, twiml = form.get("Url") or None, form.get("Twiml") or None
    if url is None and twiml is None:
        raise InvalidParameter(21205, "Url parameter is required.")
    callback, method, raw_events = _callback(form)
    call = await _engine(request).create_call(
        CallRequest(
            from_=from_,
            to=to,
            url=url,
            method=(form.get("Method") or "POST").upper(),
            twiml=twiml,
            fallback_url=form.get("FallbackUrl") or None,
            fallback_method=(form.get("FallbackMethod") or "POST").upper(),
            timeout_s=_timeout(form, 60, 1, 600),
            status_callback=callback,
            status_callback_method=method,
            status_callback_events=parse_events(list(raw_events), CALL_EVENTS)
            or frozenset({"completed"}),
        )
    )
    return web.json_response(call.as_json(), status=201)


async def list_calls(request: web.Request) -> web.Response:
    engine = _engine(request)
    query = request.query
    items = [
        c.as_json()
        for c in sorted(engine.calls.values(), key=lambda c: c.created_at, reverse=True)
        if all(
            query.get(param) in (None, value)
            for param, value in (("To", c.to), ("From", c.from_), ("Status", c.status))
        )
    ]
    return web.json_response(_page("calls", items, request))


async def call(request: web.Request) -> web.Response:
    engine = _engine(request)
    sid = request.match_info["call"]
    if request.method == "POST":
        form = await _form(request)
        found = engine.update_call(
            sid,
            status=form.get("Status") or None,
            url=form.get("Url") or None,
            method=(form.get("Method") or "POST").upper(),
            document=form.get("Twiml") or None,
        )
    else:
        found = engine.get_call(sid)
    return web.json_response(found.as_json())


def register(app: web.Application) -> None:
    conferences = f"{PREFIX}/Conferences"
    participants = f"{conferences}/{{conference}}/Participants"
    app.router.add_post(f"{participants}.json", create_participant)
    app.router.add_get(f"{participants}.json", list_participants)
    app.router.add_route("GET", f"{participants}/{{call}}.json", participant)
    app.router.add_route("POST", f"{participants}/{{call}}.json", participant)
    app.router.add_route("DELETE", f"{participants}/{{call}}.json", participant)
    app.router.add_get(f"{conferences}.json", list_conferences)
    app.router.add_route("GET", f"{conferences}/{{conference}}.json", conference)
    app.router.add_route("POST", f"{conferences}/{{conference}}.json", conference)
    app.router.add_post(f"{PREFIX}/Calls.json", create_call)
    app.router.add_get(f"{PREFIX}/Calls.json", list_calls)
    app.router.add_route("GET", f"{PREFIX}/Calls/{{call}}.json", call)
    app.router.add_route("POST", f"{PREFIX}/Calls/{{call}}.json", call)
