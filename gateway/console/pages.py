"""The console's pages and the fragments htmx swaps into them (DESIGN.md §10).

Each handler reads or acts through the same services the JSON API uses, with the signed-in
person's principal, so a console can show nothing an integrator could not get from ``/v1``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from gateway.console import charts, views
from gateway.console.sessions import COOKIE, clear_cookie, same_origin, set_cookie
from gateway.console.web import (
    HOME,
    SESSION,
    current_session,
    fragment,
    key_still_valid,
    page,
    public_origin,
    render,
    secure_cookies,
    sessions,
)
from gateway.core.auth import Principal, Role, digest
from gateway.core.errors import Forbidden, NotFound
from gateway.handback.models import ContactRequest, HandbackRequest, HandbackView
from gateway.policy.decision import SCREENING_FLAGS, DecisionRequest
from gateway.policy.service import LoadedPolicy
from gateway.reports.figures import build_summary
from gateway.transfer.dispositions import DispositionRequest
from gateway.transfer.models import Transfer
from gateway.transfer.service import TransferRequest
from gateway.transfer.states import TransferState
from gateway.web.appkeys import DISPOSITIONS, HANDBACKS, KEYRING, POLICY, REDIS, STORE, TRANSFERS
from gateway.web.events import KEY_CHECK
from gateway.web.middlewares import PRINCIPAL

_TRANSFER_ID = re.compile(r"^tr_[0-9a-f]{24}$")
_HANDBACK_ID = re.compile(r"^hb_[0-9a-f]{24}$")

LANGUAGES = tuple(views.LANGUAGE_NAMES.items())


def _principal(request: web.Request) -> Principal:
    return request[SESSION].principal


def _names(loaded: LoadedPolicy) -> dict[str, str]:
    return {d.id: d.name for d in loaded.document.destinations}


def _zone(loaded: LoadedPolicy, psap_id: str | None) -> ZoneInfo:
    if psap_id is not None:
        psap = loaded.document.psap(psap_id)
        if psap is not None:
            return psap.zone
    psaps = loaded.document.psaps
    return psaps[0].zone if psaps else ZoneInfo("UTC")


# ---- signing in and out --------------------------------------------------------------------------


def _safe_next(value: str | None) -> str | None:
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value
    return None


async def home(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is None:
        raise web.HTTPSeeOther("/console/sign-in")
    raise web.HTTPSeeOther(HOME[session.role])


SESSION_ENDED = (
    "Your session has ended — you signed out, it was idle too long, or your key was revoked. "
    "Sign in again."
)
KEY_REFUSED = (
    "That key was not recognised: it may be mistyped or revoked. Ask your administrator for a "
    "new one if it keeps failing."
)


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    error = SESSION_ENDED if request.query.get("ended") else None
    notice = "You have signed out." if request.query.get("signed_out") else None
    return render(
        request,
        "sign_in.html",
        {"error": error, "notice": notice, "next": request.query.get("next", "")},
    )


async def sign_in(request: web.Request) -> web.StreamResponse:
    """``POST /console/sign-in`` with the form field ``key``: a session, or the form again."""
    if not same_origin(request, public_origin(request)):
        return render(
            request,
            "error.html",
            {"message": "Refused: sign in from this console's own page.", "status": 403},
            status=403,
        )
    form = await request.post()
    key = form.get("key")
    key = key.strip() if isinstance(key, str) else ""
    principal = None
    if key and key.isascii() and key.isprintable() and len(key) <= 200:
        principal = request.app[KEYRING].authenticate(key)
    next_raw = form.get("next")
    next_path = _safe_next(next_raw if isinstance(next_raw, str) else None)
    if principal is None:
        return render(
            request,
            "sign_in.html",
            {"error": KEY_REFUSED, "notice": None, "next": next_path or ""},
            status=401,
        )
    token, _ = await sessions(request.app).create(principal, digest(key))
    response = web.HTTPSeeOther(next_path or HOME[principal.role])
    set_cookie(
        response,
        token,
        secure=secure_cookies(request),
        max_age=sessions(request.app).max_age_s,
    )
    raise response


@page()
async def sign_out(request: web.Request) -> web.StreamResponse:
    await sessions(request.app).delete(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/console/sign-in?signed_out=1")
    clear_cookie(response, secure=secure_cookies(request))
    raise response


# ---- the call-taker -----------------------------------------------------------------------------


def _answer(value: object) -> bool | None:
    if value == "yes":
        return True
    if value == "no":
        return False
    return None


def call_facts(form: MultiDictProxy[Any], psap_id: str) -> dict[str, Any]:
    """The screening form as the body of ``POST /v1/routing/decisions`` / ``/v1/transfers``:
    each question ``yes`` / ``no`` / not asked → true / false / null."""
    screening = {flag: _answer(form.get(flag)) for flag in SCREENING_FLAGS}
    facts: dict[str, Any] = {
        "psap_id": psap_id,
        "caller_type": form.get("caller_type") or "unknown",
        "screening": screening,
        "language": form.get("language") or "en",
        "transfers_so_far": int(str(form.get("transfers_so_far") or "0"))
        if str(form.get("transfers_so_far") or "0").isdigit()
        else 0,
    }
    number = str(form.get("callback_number") or "").strip()
    if number:
        facts["callback_number"] = number
    return facts


@page(Role.PSAP)
async def call_taker(request: web.Request) -> web.StreamResponse:
    loaded = await request.app[POLICY].current()
    return render(
        request,
        "call_taker.html",
        {
            "title": "Call-taker",
            "flags": [(f, views.FLAG_LABELS[f]) for f in SCREENING_FLAGS],
            "caller_types": list(views.CALLER_TYPES.items()),
            "languages": LANGUAGES,
            "psap": loaded.document.psap(request[SESSION].org),
        },
    )


@fragment(Role.PSAP)
async def decision(request: web.Request) -> web.StreamResponse:
    """The decision the live policy would make for the form as it stands (a dry run)."""
    form = await request.post()
    facts = call_facts(form, request[SESSION].org)
    facts.pop("callback_number", None)
    policy = request.app[POLICY]
    try:
        body = DecisionRequest.model_validate(facts)
    except ValidationError as exc:
        return render(
            request, "_decision.html", {"view": None, "problem": str(exc.errors()[0]["msg"])}
        )
    made = await policy.decide(body)
    loaded = await policy.current()
    return render(
        request,
        "_decision.html",
        {"view": views.decision_view(made, _names(loaded)), "problem": None},
    )


async def _progress(request: web.Request, transfer: Transfer, **extra: Any) -> web.Response:
    loaded = await request.app[POLICY].current()
    view = views.progress_view(transfer, _names(loaded), _zone(loaded, transfer.psap_id))
    return render(request, "_progress.html", {"p": view, **extra})


@fragment(Role.PSAP)
async def open_transfer(request: web.Request) -> web.StreamResponse:
    """``Transfer``: opens it (``POST /v1/transfers``) and shows the bridge number and code."""
    form = await request.post()
    body = TransferRequest.model_validate(call_facts(form, request[SESSION].org))
    opened = await request.app[TRANSFERS].open(body, _principal(request))
    loaded = await request.app[POLICY].current()
    view = views.progress_view(opened, _names(loaded), _zone(loaded, opened.psap_id))
    return render(
        request,
        "_transfer.html",
        {
            "p": view,
            "bridge_number": opened.bridge_number,
            "bridge_code": opened.bridge_code,
            "decision": views.decision_view(opened.decision, _names(loaded)),
            "initial": True,  # no code on the page yet to hide out of band
        },
    )


def _transfer_id(request: web.Request) -> str:
    transfer_id = request.match_info["id"]
    if not _TRANSFER_ID.match(transfer_id):
        raise NotFound("no such transfer")
    return transfer_id


@fragment(Role.PSAP, Role.ADMIN)
async def progress(request: web.Request) -> web.StreamResponse:
    transfer = await request.app[TRANSFERS].read(_transfer_id(request), _principal(request))
    return await _progress(request, transfer)


@fragment(Role.PSAP)
async def cancel(request: web.Request) -> web.StreamResponse:
    transfer = await request.app[TRANSFERS].cancel(_transfer_id(request), _principal(request))
    return await _progress(request, transfer)


@fragment(Role.PSAP)
async def release(request: web.Request) -> web.StreamResponse:
    transfer = await request.app[TRANSFERS].release(_transfer_id(request), _principal(request))
    return await _progress(request, transfer)


@fragment(Role.PSAP)
async def new_code(request: web.Request) -> web.StreamResponse:
    """A new bridge code (``POST /v1/transfers/{id}/code``); the old one stops working."""
    issued = await request.app[TRANSFERS].new_code(_transfer_id(request), _principal(request))
    return render(
        request,
        "_code.html",
        {"bridge_number": issued.bridge_number, "bridge_code": issued.bridge_code},
    )


# ---- the handback inbox -------------------------------------------------------------------------


async def _handbacks(request: web.Request, limit: int = 50) -> list[HandbackView]:
    """The person's handbacks, newest first, as ``GET /v1/handbacks`` shows them."""
    found = await request.app[HANDBACKS].find(_principal(request), limit=limit)
    return list(found.items)


async def _inbox(request: web.Request) -> list[views.HandbackAlert]:
    loaded = await request.app[POLICY].current()
    zone = _zone(loaded, request[SESSION].org)
    return [views.handback_alert(h, zone) for h in await _handbacks(request)]


@page(Role.PSAP)
async def inbox(request: web.Request) -> web.StreamResponse:
    alerts = await _inbox(request)
    return render(request, "handbacks.html", {"title": "Handback inbox", "alerts": alerts})


@fragment(Role.PSAP)
async def inbox_list(request: web.Request) -> web.StreamResponse:
    return render(request, "_handbacks.html", {"alerts": await _inbox(request)})


@fragment(Role.PSAP)
async def inbox_waiting(request: web.Request) -> web.StreamResponse:
    """The count of unconfirmed handbacks beside "Handback inbox" on every PSAP page, so a
    call-taker on another console sees one arrive (refetched on each handback event)."""
    waiting = sum(1 for alert in await _inbox(request) if not alert.confirmed)
    return render(request, "_inbox_waiting.html", {"waiting": waiting})


@fragment(Role.PSAP)
async def contact(request: web.Request) -> web.StreamResponse:
    handback_id = request.match_info["id"]
    if not _HANDBACK_ID.match(handback_id):
        raise NotFound("no such handback")
    form = await request.post()
    made = form.get("contact_made")
    if made not in ("yes", "no"):
        raise Forbidden("choose contact made or could not make contact")
    body = ContactRequest(contact_made=made == "yes")
    await request.app[HANDBACKS].contact(handback_id, body, _principal(request))
    return render(request, "_handbacks.html", {"alerts": await _inbox(request)})


# ---- the supervisor board -----------------------------------------------------------------------

RECENT = timedelta(hours=12)
"""Ended transfers stay on the board this long (alarms such as a chain exhausted)."""
RECENT_MAX = 200


async def _transfers(request: web.Request) -> list[Transfer]:
    """Transfers created in the last ``RECENT``, newest first, as ``GET /v1/transfers`` lists
    them to the person (a PSAP its own, an admin all)."""
    since = datetime.now(UTC) - RECENT
    found = await request.app[TRANSFERS].find(_principal(request), since=since, limit=RECENT_MAX)
    return list(found.items)


async def board_data(request: web.Request) -> dict[str, Any]:
    principal = _principal(request)
    loaded = await request.app[POLICY].current()
    now = datetime.now(UTC)
    if principal.role is Role.PSAP:
        psap_ids = [principal.org]
    else:
        psap_ids = [p.id for p in loaded.document.psaps]
    zone = _zone(loaded, psap_ids[0] if psap_ids else None)
    names = _names(loaded)
    rows: list[views.BoardRow] = []
    alarms: list[views.Alarm] = []
    for transfer in await _transfers(request):
        row, more = views.transfer_row(transfer, names, now)
        if not transfer.state.terminal or more:
            rows.append(row)
        alarms += more
    for handback in await _handbacks(request):
        row, more = views.handback_row(handback, now)
        if not handback.state.terminal or more or handback.contact is None:
            rows.append(row)
        alarms += more
    load = await request.app[STORE].destination_load([d.id for d in loaded.document.destinations])
    destinations = [
        views.DestinationStatus(
            id=d.id,
            name=d.name,
            open_now=d.is_open(now, zone),
            load=load.get(d.id, 0),
            max_concurrent=d.max_concurrent,
        )
        for d in loaded.document.destinations
    ]
    psap_id = principal.org if principal.role is Role.PSAP else None
    summary = await build_summary(loaded, request.app[REDIS], psap_id, None, None)
    return {
        "rows": rows,
        "alarms": alarms,
        "destinations": destinations,
        "summary": summary,
        "capture_chart": charts.meter(
            "Capture rate of eligible calls today", summary.get("capture_rate")
        ),
        "answer_chart": charts.bar_chart(
            "Seconds to answer today",
            views.answer_histogram(summary["answer_time_s"]["histogram"]),
            unit="",
        ),
        "outcome_chart": charts.bar_chart(
            "Where today's calls ended", views.outcome_counts(summary)
        ),
        "now": views.local_time(now, zone),
        "zone": str(zone),
        "psap_names": {p.id: p.name for p in loaded.document.psaps},
        "percent": views.percent,
    }


@page(Role.ADMIN, Role.PSAP)
async def board(request: web.Request) -> web.StreamResponse:
    data = await board_data(request)
    return render(request, "board.html", {"title": "Supervisor board", **data})


@fragment(Role.ADMIN, Role.PSAP)
async def board_live(request: web.Request) -> web.StreamResponse:
    return render(request, "_board.html", await board_data(request))


# ---- the counselor -------------------------------------------------------------------------------

COUNSELOR_STATES = frozenset(
    {TransferState.RINGING, TransferState.CONNECTED, TransferState.COMPLETED}
)
COUNSELOR_RECENT = timedelta(hours=2)
"""Calls that ended stay on the counselor's screen this long, for the outcome and a handback."""


async def counselor_data(request: web.Request) -> dict[str, Any]:
    principal = _principal(request)
    loaded = await request.app[POLICY].current()
    names = _names(loaded)
    psaps = {p.id: p.name for p in loaded.document.psaps}
    zone = _zone(loaded, None)
    mine = [d.id for d in loaded.document.destinations if d.org == principal.org]
    since = datetime.now(UTC) - COUNSELOR_RECENT
    found = await request.app[TRANSFERS].find(
        principal, states=COUNSELOR_STATES, since=since, limit=50
    )
    handbacks = await request.app[HANDBACKS].find(principal, limit=20)
    handed_back = {h.transfer_id for h in handbacks.items if not h.state.terminal}
    calls = []
    for transfer in found.items:
        call = views.counselor_call(transfer, names, psaps, zone, mine)
        if call is not None and transfer.id in handed_back:
            call = dataclasses.replace(call, can_hand_back=False)  # one live handback a call
        if call is not None and (call.can_dispose or transfer.state is not TransferState.COMPLETED):
            calls.append(call)
    return {
        "calls": calls,
        "handbacks": [views.center_handback(h, psaps, zone) for h in handbacks.items],
        "outcomes": list(views.DISPOSITION_WORDS.items()),
        "reasons": [(str(k), v) for k, v in views.REASON_WORDS.items()],
    }


@page(Role.CRISIS_CENTER)
async def counselor(request: web.Request) -> web.StreamResponse:
    data = await counselor_data(request)
    return render(request, "counselor.html", {"title": "Counselor", **data})


@fragment(Role.CRISIS_CENTER)
async def counselor_live(request: web.Request) -> web.StreamResponse:
    return render(request, "_counselor.html", await counselor_data(request))


@fragment(Role.CRISIS_CENTER)
async def disposition(request: web.Request) -> web.StreamResponse:
    """The outcome of a call this center took (``POST /v1/transfers/{id}/disposition``)."""
    form = await request.post()
    body = DispositionRequest.model_validate(
        {"outcome": form.get("outcome"), "police_involved": form.get("police_involved") == "yes"}
    )
    await request.app[DISPOSITIONS].record(_transfer_id(request), body, _principal(request))
    return render(request, "_counselor.html", await counselor_data(request))


def _text(form: MultiDictProxy[Any], name: str) -> str | None:
    value = str(form.get(name) or "").strip()
    return value or None


@fragment(Role.CRISIS_CENTER)
async def hand_back(request: web.Request) -> web.StreamResponse:
    """A handback of this call to its PSAP (``POST /v1/handbacks``), prefilled from the
    transfer; its progress and the PSAP's confirmation then show under "Your handbacks"."""
    form = await request.post()
    address, where = _text(form, "address"), _text(form, "description")
    body = HandbackRequest.model_validate(
        {
            "transfer_id": _transfer_id(request),
            "reason": form.get("reason"),
            "location": (
                None
                if address is None and where is None
                else {"address": address, "description": where}
            ),
            "callback_number": _text(form, "callback_number"),
            "risk": {
                "weapons": _answer(form.get("weapons")),
                "means_access": _answer(form.get("means_access")),
                "summary": _text(form, "summary"),
            },
            "counselor_ref": _text(form, "counselor_ref"),
        }
    )
    await request.app[HANDBACKS].open(body, _principal(request))
    return render(request, "_counselor.html", await counselor_data(request))


# ---- the live stream ----------------------------------------------------------------------------


@fragment()
async def events(request: web.Request) -> web.StreamResponse:
    """The signed-in person's ``GET /v1/events`` stream (the same handler, with the session's
    principal; ``last_event_id`` / ``Last-Event-ID`` resume it)."""
    for route in request.app.router.routes():
        info = route.resource.canonical if route.resource is not None else ""
        if route.method == "GET" and info == "/v1/events":
            request[PRINCIPAL] = _principal(request)
            # No bearer key on a console request: the stream checks the session's key instead.
            check: Callable[[], bool] = functools.partial(
                key_still_valid, request, request[SESSION]
            )
            request[KEY_CHECK] = check
            return await route.handler(request)
    return web.Response(status=404, text="live events are not served by this gateway")


async def no_such_page(request: web.Request) -> web.StreamResponse:
    """Any other ``/console/…`` address: a page that says so (with the signed-in person's
    links), never the API's JSON 404."""
    session = await current_session(request)
    if session is not None:
        request[SESSION] = session
    return render(
        request,
        "error.html",
        {"message": "There is no such page in the console.", "status": 404},
        status=404,
    )


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/console", home)
    router.add_get("/console/", home)
    router.add_get("/console/sign-in", sign_in_page)
    router.add_post("/console/sign-in", sign_in)
    router.add_post("/console/sign-out", sign_out)
    router.add_get("/console/events", events)
    router.add_get("/console/call-taker", call_taker)
    router.add_post("/console/call-taker/decision", decision)
    router.add_post("/console/call-taker/transfers", open_transfer)
    router.add_get("/console/transfers/{id}/progress", progress)
    router.add_post("/console/transfers/{id}/cancel", cancel)
    router.add_post("/console/transfers/{id}/release", release)
    router.add_post("/console/transfers/{id}/code", new_code)
    router.add_get("/console/handbacks", inbox)
    router.add_get("/console/handbacks/list", inbox_list)
    router.add_get("/console/handbacks/waiting", inbox_waiting)
    router.add_post("/console/handbacks/{id}/contact", contact)
    router.add_get("/console/board", board)
    router.add_get("/console/board/live", board_live)
    router.add_get("/console/counselor", counselor)
    router.add_get("/console/counselor/live", counselor_live)
    router.add_post("/console/counselor/transfers/{id}/disposition", disposition)
    router.add_post("/console/counselor/transfers/{id}/handback", hand_back)
