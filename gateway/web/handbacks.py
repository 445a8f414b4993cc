"""``/v1/handbacks`` (988 → 911), dispositions, and the handback leg's Twilio callbacks."""

from __future__ import annotations

import re
from datetime import date, timedelta

from aiohttp import web

from gateway.core.auth import Role
from gateway.core.errors import Invalid, NotFound
from gateway.handback.models import (
    HANDBACK_ID_PATTERN,
    PSAP_ID_PATTERN,
    TRANSFER_ID_PATTERN,
    ContactRequest,
    HandbackList,
    HandbackRequest,
    HandbackView,
)
from gateway.handback.states import HandbackState
from gateway.handback.store import HandbackNotFound
from gateway.transfer.dispositions import DispositionRequest
from gateway.transfer.models import Transfer
from gateway.web.appkeys import DISPOSITIONS, HANDBACKS
from gateway.web.bodies import query_date, query_int, query_text, read_model
from gateway.web.middlewares import principal_of
from gateway.web.routes import Query, Route
from gateway.web.scope import read_handback_request
from gateway.web.twilio import PARAMS, attempt_param, status_callback

_ID_RE = re.compile(HANDBACK_ID_PATTERN)
_TRANSFER_ID_RE = re.compile(TRANSFER_ID_PATTERN)
_PSAP_ID_RE = re.compile(PSAP_ID_PATTERN)


def _handback_id(request: web.Request) -> str:
    handback_id = request.match_info["id"]
    if not _ID_RE.match(handback_id):
        raise NotFound(f"handback {handback_id[:40]} not found")
    return handback_id


def _json(view: HandbackView, status: int = 200) -> web.Response:
    # The bridge number and code appear only in the 201 of a data-only handback.
    hidden = {f for f in ("bridge_code", "bridge_number") if getattr(view, f) is None}
    return web.json_response(text=view.model_dump_json(exclude=hidden), status=status)


async def open_handback(request: web.Request) -> web.Response:
    body = await read_handback_request(request)
    view = await request.app[HANDBACKS].open(body, principal_of(request))
    return _json(view, status=201)


MAX_PAGE = 200
_LAST_DAY = date.max - timedelta(days=1)
"""The service reads ``to`` as before the next day's midnight: one day short of the calendar's
end (no handback is that late, so the list is the same)."""


async def list_handbacks(request: web.Request) -> web.Response:
    """``?psap_id=&from=&to=&state=&limit=`` — newest first, at most ``limit`` (1..200)."""
    psap_id = query_text(request, "psap_id")
    if psap_id is not None and not _PSAP_ID_RE.match(psap_id):
        raise Invalid("unknown psap_id", [{"path": "psap_id", "message": "not a PSAP id"}])
    state: HandbackState | None = None
    if (asked := query_text(request, "state")) is not None:
        try:
            state = HandbackState(asked)
        except ValueError:
            allowed = ", ".join(s.value for s in HandbackState)
            raise Invalid(
                "unknown state", [{"path": "state", "message": f"one of {allowed}"}]
            ) from None
    limit = query_int(request, "limit", default=50, low=1, high=MAX_PAGE)
    start, end = query_date(request, "from"), query_date(request, "to")
    end = None if end is None else min(end, _LAST_DAY)
    views = await request.app[HANDBACKS].find(
        principal_of(request), psap_id=psap_id, start=start, end=end, state=state, limit=limit
    )
    page = HandbackList(handbacks=views)
    hidden = {"handbacks": {"__all__": {"bridge_code", "bridge_number"}}}
    return web.json_response(text=page.model_dump_json(exclude=hidden))


async def get_handback(request: web.Request) -> web.Response:
    service = request.app[HANDBACKS]
    return _json(await service.read(_handback_id(request), principal_of(request)))


async def get_eido(request: web.Request) -> web.Response:
    service = request.app[HANDBACKS]
    document = await service.eido(_handback_id(request), principal_of(request))
    return web.Response(text=document, content_type="application/json")


async def confirm_contact(request: web.Request) -> web.Response:
    handback_id = _handback_id(request)
    body = await read_model(request, ContactRequest, allow_empty=True)
    service = request.app[HANDBACKS]
    return _json(await service.contact(handback_id, body, principal_of(request)))


async def record_disposition(request: web.Request) -> web.Response:
    transfer_id = request.match_info["id"]
    if not _TRANSFER_ID_RE.match(transfer_id):
        raise NotFound(f"transfer {transfer_id[:40]} not found")
    body = await read_model(request, DispositionRequest)
    transfer = await request.app[DISPOSITIONS].record(transfer_id, body, principal_of(request))
    return web.json_response(text=transfer.model_dump_json())


# ---- Twilio callbacks for the handback leg (signature checked by the twilio middleware) -----


async def _known(request: web.Request, handback_id: str, identity: str) -> bool:
    """404 for an unknown handback; False for a callback already acted on."""
    service = request.app[HANDBACKS]
    try:
        await service.store.get(handback_id)
    except HandbackNotFound:
        raise NotFound("unknown handback") from None
    return await service.store.claim(handback_id, identity)


async def participant_event(request: web.Request) -> web.Response:
    """Progress of the PSAP's handback leg (``?attempt=<n>``)."""
    handback_id = _handback_id(request)
    attempt = attempt_param(request)
    params = request[PARAMS]
    status = params.get("CallStatus", "")
    call_sid = params.get("CallSid", "")
    identity = f"participant:{call_sid}:{status}"
    if not await _known(request, handback_id, identity):
        return web.Response(status=204)
    service = request.app[HANDBACKS]
    try:
        if call_sid:
            await service.store.set_leg(handback_id, f"attempt:{attempt}", call_sid)
        if status in ("in-progress", "answered"):
            await service.answered(handback_id, attempt)
        elif status == "busy":
            await service.attempt_over(handback_id, attempt, "busy")
        elif status == "no-answer":
            await service.attempt_over(handback_id, attempt, "no_answer")
        elif status == "failed":
            await service.attempt_over(handback_id, attempt, "failed")
        elif status == "completed":
            await service.leg_ended(handback_id, attempt)
    except Exception:
        await service.store.unclaim(handback_id, identity)
        raise
    return web.Response(status=204)


async def conference_event(request: web.Request) -> web.Response:
    """The data-only handback's own conference: the center's bridge leg leaving while the PSAP
    still rings abandons the handback (and cancels only the gateway's ringing leg); the PSAP
    leg leaving after it joined is its end (in case the leg's own callback is lost)."""
    handback_id = _handback_id(request)
    params = request[PARAMS]
    event = params.get("StatusCallbackEvent", "")
    call_sid = params.get("CallSid", "")
    sequence = params.get("SequenceNumber") or event + call_sid
    identity = f"conference:{params.get('ConferenceSid', '')}:{sequence}"
    if not await _known(request, handback_id, identity):
        return web.Response(status=204)
    service = request.app[HANDBACKS]
    try:
        handback = await service.store.get(handback_id)
        center_left = event == "participant-leave" and call_sid == handback.bridge_call_sid
        if center_left or event == "conference-end":
            await service.center_left(handback_id)
        elif event == "participant-leave":
            await service.leg_left(handback_id, call_sid, params.get("ReasonParticipantLeft", ""))
    except Exception:
        await service.store.unclaim(handback_id, identity)
        raise
    return web.Response(status=204)


ROUTES = [
    Route(
        "POST",
        "/v1/handbacks",
        open_handback,
        "Hand a call (or its information) back to 911",
        "handbacks",
        roles=(Role.CRISIS_CENTER,),
        request=HandbackRequest,
        response=HandbackView,
        status=201,
    ),
    Route(
        "GET",
        "/v1/handbacks",
        list_handbacks,
        "Handbacks, newest first (psap_id, from, to: PSAP-local dates, inclusive; state; "
        "limit ≤ 200): a PSAP its own, a crisis center its org's, an admin all",
        "handbacks",
        roles=(Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN),
        response=HandbackList,
        query=(
            ("psap_id", "one PSAP (a psap key: its own)"),
            ("from", "first PSAP-local date, YYYY-MM-DD"),
            ("to", "last PSAP-local date, inclusive"),
            Query(
                "state",
                "only handbacks in this state",
                {"type": "string", "enum": [str(state) for state in HandbackState]},
            ),
            ("limit", "at most this many (1-200, default 50)"),
        ),
    ),
    Route(
        "GET",
        "/v1/handbacks/{id}",
        get_handback,
        "A handback: state, flags, EIDO id, contact",
        "handbacks",
        roles=(Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN),
        response=HandbackView,
    ),
    Route(
        "GET",
        "/v1/handbacks/{id}/eido",
        get_eido,
        "The EIDO document as sent to CAD",
        "handbacks",
        roles=(Role.PSAP, Role.ADMIN),
    ),
    Route(
        "POST",
        "/v1/handbacks/{id}/contact",
        confirm_contact,
        "Emergency services made contact (or could not)",
        "handbacks",
        roles=(Role.PSAP,),
        request=ContactRequest,
        response=HandbackView,
    ),
    Route(
        "POST",
        "/v1/transfers/{id}/disposition",
        record_disposition,
        "How a connected transfer ended (once, by the center that took it)",
        "transfers",
        roles=(Role.CRISIS_CENTER,),
        request=DispositionRequest,
        response=Transfer,
    ),
    Route(
        "POST",
        "/twilio/participant/handback/{id}",
        status_callback(participant_event),
        "Handback leg status",
        "twilio",
    ),
    Route(
        "POST",
        "/twilio/conference/handback/{id}",
        status_callback(conference_event),
        "Data-only handback conference status",
        "twilio",
    ),
]
