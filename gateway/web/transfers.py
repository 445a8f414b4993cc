"""``/v1/transfers``: open, read, cancel and release warm transfers."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.core.auth import Role, require_role
from gateway.core.errors import NotFound
from gateway.transfer.models import Transfer
from gateway.transfer.service import ReleaseRequest, TransferRequest, TransferView
from gateway.web.appkeys import TRANSFERS
from gateway.web.bodies import read_model
from gateway.web.middlewares import principal_of
from gateway.web.routes import Route
from gateway.web.scope import read_call_request

_ID_RE = re.compile(r"^tr_[0-9a-f]{24}$")


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
