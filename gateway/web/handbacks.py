"""``/v1/handbacks`` (988 → 911), dispositions, and the handback leg's Twilio callbacks."""

from __future__ import annotations

import re
from datetime import date, timedelta

from aiohttp import web

from gateway.core.auth import Role
from gateway.core.errors import NotFound
from gateway.handback.models import (
    HANDBACK_ID_PATTERN,
    PSAP_ID_PATTERN,
    READABLE_FIELDS,
    TRANSFER_ID_PATTERN,
    ContactRequest,
    HandbackPage,
    HandbackRequest,
    HandbackView,
)
from gateway.handback.states import HandbackState
from gateway.handback.store import HandbackNotFound
from gateway.transfer.dispositions import DispositionRequest
from gateway.transfer.models import Transfer
from gateway.web.appkeys import DISPOSITIONS, HANDBACKS
from gateway.web.bodies import query_date, read_model
from gateway.web.lists import list_query
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
    if view.summary is None:  # not for this reader (``HandbackView.of``)
        hidden |= READABLE_FIELDS
    return web.json_response(text=view.model_dump_json(exclude=hidden), status=status)


async def open_handback(request: web.Request) -> web.Response:
    body = await read_handback_request(request)
    view = await request.app[HANDBACKS].open(body, principal_of(request))
    return _json(view, status=201)


_LAST_DAY = date.max - timedelta(days=1)
"""``to`` is read as before the next day: one day short of the calendar's end."""


async def list_handbacks(request: web.Request) -> web.Response:
    """``?state=&psap_id=&since=&from=&to=&limit=&cursor=`` — newest first, paged (§9)."""
    query = list_query(request, HandbackState)
    start, end = query_date(request, "from"), query_date(request, "to")
    end = None if end is None else min(end, _LAST_DAY)
    page = await request.app[HANDBACKS].find(
        principal_of(request),
        psap_id=query.psap_id,
        start=start,
        end=end,
        states=frozenset(HandbackState(s) for s in query.states),
        since=query.since,
        before=query.before,
        limit=query.limit,
    )
    hidden: set[str] = {"bridge_code", "bridge_number"}
    if page.items and page.items[0].summary is None:
        hidden |= READABLE_FIELDS
    exclude = {"items": {"__all__": hidden}}
    return web.json_response(text=page.model_dump_json(exclude=exclude))


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
        "Handbacks, newest first, paged: a PSAP its own, a crisis center its org's, an admin all",
        "handbacks",
        roles=(Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN),
        response=HandbackPage,
        query=(
            ("psap_id", "one PSAP (a psap key: its own; another is 403)"),
            ("since", "created at or after this ISO 8601 instant (with its offset)"),
            ("from", "first PSAP-local date, YYYY-MM-DD"),
            ("to", "last PSAP-local date, inclusive"),
            Query(
                "state",
                "only handbacks in this state (repeatable: any of them)",
                {"type": "string", "enum": [str(state) for state in HandbackState]},
                repeatable=True,
            ),
            ("limit", "at most this many (1-200, default 50)"),
            ("cursor", "the next_cursor of the previous page"),
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
