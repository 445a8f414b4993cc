"""``/v1/transfers``: open, list, read, cancel and release warm transfers; a new bridge code."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.core.auth import Role, require_role
from gateway.core.errors import NotFound
from gateway.core.paging import Page
from gateway.transfer.models import Transfer
from gateway.transfer.service import ReleaseRequest, TransferRequest, TransferView
from gateway.transfer.states import TransferState
from gateway.web.appkeys import TRANSFERS
from gateway.web.bodies import read_model
from gateway.web.lists import list_query, query_id
from gateway.web.middlewares import principal_of
from gateway.web.routes import Query, Route
from gateway.web.scope import read_call_request

_ID_RE = re.compile(r"^tr_[0-9a-f]{24}$")


class TransferPage(Page[Transfer]):
    """``GET /v1/transfers``: ``items`` shaped exactly as ``GET /v1/transfers/{id}``."""


def _transfer_id(request: web.Request) -> str:
    transfer_id = request.match_info["id"]
    if not _ID_RE.match(transfer_id):
        raise NotFound(f"transfer {transfer_id[:40]} not found")
    return transfer_id


def _json(transfer: Transfer, status: int = 200) -> web.Response:
    return web.json_response(text=transfer.model_dump_json(), status=status)


async def open_transfer(request: web.Request) -> web.Response:
    principal = require_role(principal_of(request), Role.PSAP)  # 403 before any 422
    body = await read_call_request(request, TransferRequest, principal)
    view = await request.app[TRANSFERS].open(body, principal)
    return web.json_response(text=view.model_dump_json(), status=201)


async def get_transfer(request: web.Request) -> web.Response:
    service = request.app[TRANSFERS]
    return _json(await service.read(_transfer_id(request), principal_of(request)))


async def list_transfers(request: web.Request) -> web.Response:
    """``?state=&psap_id=&destination_id=&since=&limit=&cursor=`` (DESIGN.md §9)."""
    principal = principal_of(request)
    require_role(principal, Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN)
    query = list_query(request, TransferState)
    found = await request.app[TRANSFERS].find(
        principal,
        states=frozenset(TransferState(s) for s in query.states),
        psap_id=query.psap_id,
        destination_id=query_id(request, "destination_id"),
        since=query.since,
        before=query.before,
        limit=query.limit,
    )
    page = TransferPage(items=found.items, next_cursor=found.cursor)
    return web.json_response(text=page.model_dump_json())


async def new_code(request: web.Request) -> web.Response:
    transfer_id = _transfer_id(request)
    view = await request.app[TRANSFERS].new_code(transfer_id, principal_of(request))
    return web.json_response(text=view.model_dump_json(exclude={"ignored_fields"}))


async def cancel_transfer(request: web.Request) -> web.Response:
    service = request.app[TRANSFERS]
    return _json(await service.cancel(_transfer_id(request), principal_of(request)))


async def release_transfer(request: web.Request) -> web.Response:
    await read_model(request, ReleaseRequest, allow_empty=True)
    service = request.app[TRANSFERS]
    return _json(await service.release(_transfer_id(request), principal_of(request)))


ROUTES = [
    Route(
        "POST",
        "/v1/transfers",
        open_transfer,
        "Decide and open a transfer",
        "transfers",
        roles=(Role.PSAP,),
        request=TransferRequest,
        response=TransferView,
        status=201,
    ),
    Route(
        "GET",
        "/v1/transfers",
        list_transfers,
        "Transfers, newest first, paged: a PSAP its own, a crisis center those whose chain "
        "names one of its destinations, an admin all",
        "transfers",
        roles=(Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN),
        response=TransferPage,
        query=(
            Query(
                "state",
                "only transfers in this state (repeatable: any of them)",
                {"type": "string", "enum": [str(state) for state in TransferState]},
                repeatable=True,
            ),
            ("psap_id", "one PSAP (a psap key: its own; another is 403)"),
            ("destination_id", "only transfers whose chain names this destination"),
            ("since", "created at or after this ISO 8601 instant (with its offset)"),
            ("limit", "at most this many (1-200, default 50)"),
            ("cursor", "the next_cursor of the previous page"),
        ),
    ),
    Route(
        "POST",
        "/v1/transfers/{id}/code",
        new_code,
        "A new bridge code while the transfer awaits its bridge; the old one stops working",
        "transfers",
        roles=(Role.PSAP,),
        response=TransferView,
    ),
    Route(
        "GET",
        "/v1/transfers/{id}",
        get_transfer,
        "A transfer: state, decision, attempts, timestamps",
        "transfers",
        roles=(Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN),
        response=Transfer,
    ),
    Route(
        "POST",
        "/v1/transfers/{id}/cancel",
        cancel_transfer,
        "Cancel: any ringing leg is cancelled",
        "transfers",
        roles=(Role.PSAP,),
        response=Transfer,
    ),
    Route(
        "POST",
        "/v1/transfers/{id}/release",
        release_transfer,
        "The call-taker released from the conference",
        "transfers",
        roles=(Role.PSAP,),
        request=ReleaseRequest,
        response=Transfer,
    ),
]
