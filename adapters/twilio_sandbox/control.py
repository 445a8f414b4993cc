"""The sandbox's control API under ``/sandbox/``: no Twilio auth, loopback clients only.

POST /sandbox/calls                  {"from", "to", "digits": [...], "hangup_after_s"} -> 201
GET  /sandbox/calls                  every call (views)
GET  /sandbox/calls/{sid}            status, ended_by, conference, said, ...
POST /sandbox/calls/{sid}/hangup     the scripted party hangs up now
PUT  /sandbox/parties/{number}       {"behaviour", "answer_after_s", "hangup_after_s", "digits"}
GET  /sandbox/parties
PUT  /sandbox/numbers/{number}       {"voice_url", "voice_fallback_url", ...}
GET  /sandbox/timeline               ?kind=webhook&after=<seq>
GET  /sandbox/conferences
GET, PUT /sandbox/config             duplicate_callbacks, shuffle_callbacks, deliver_via, ...
POST /sandbox/reset
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .appkeys import ENGINE
from .config import ConfigUpdate, InboundCall, NumberConfig, PartyConfig
from .engine import SandboxEngine
from .errors import TwilioApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)


def _error(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return web.json_response(body, status=status)


def _loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return remote == "localhost"


@web.middleware
async def control_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/sandbox/"):
        return await handler(request)
    if not _loopback(request.remote):
        return _error(403, "forbidden", "the sandbox control API answers loopback clients only")
    try:
        return await handler(request)
    except ValidationError as exc:
        return _error(422, "invalid", "invalid body", exc.errors(include_url=False))
    except TwilioApiError as exc:
        return _error(exc.status, "not_found" if exc.status == 404 else "invalid", exc.message)


async def _body(request: web.Request, model: type[Model]) -> Model:
    try:
        raw = await request.json()
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raise web.HTTPBadRequest(
            text='{"error": {"code": "bad_request", "message": "a JSON object is required"}}',
            content_type="application/json",
        )
    return model.model_validate(raw)


def _engine(request: web.Request) -> SandboxEngine:
    return request.app[ENGINE]


async def start_call(request: web.Request) -> web.Response:
    body = await _body(request, InboundCall)
    call = _engine(request).start_inbound(body)
    return web.json_response({"call_sid": call.sid}, status=201)


async def list_calls(request: web.Request) -> web.Response:
    engine = _engine(request)
    return web.json_response({"calls": [engine.call_view(sid) for sid in engine.calls]})


async def get_call(request: web.Request) -> web.Response:
    return web.json_response(_engine(request).call_view(request.match_info["sid"]))


async def hang_up(request: web.Request) -> web.Response:
    engine = _engine(request)
    call = engine.get_call(request.match_info["sid"])
    engine.end_call(call, ended_by="party", leave_reason="participant_hung_up")
    return web.json_response(engine.call_view(call.sid))


async def put_party(request: web.Request) -> web.Response:
    party = await _body(request, PartyConfig)
    _engine(request).set_party(request.match_info["number"], party)
    return web.json_response(party.model_dump(mode="json"))


async def list_parties(request: web.Request) -> web.Response:
    config = _engine(request).config
    return web.json_response(
        {
            "parties": {n: p.model_dump(mode="json") for n, p in config.parties.items()},
            "default": config.default_party.model_dump(mode="json"),
        }
    )


async def put_number(request: web.Request) -> web.Response:
    number = await _body(request, NumberConfig)
    _engine(request).set_number(request.match_info["number"], number)
    return web.json_response(number.model_dump(mode="json"))


async def timeline(request: web.Request) -> web.Response:
    engine = _engine(request)
    kind = request.query.get("kind") or None
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        return _error(400, "bad_request", "after must be an integer")
    events = [e for e in engine.timeline.events(kind) if e["seq"] > after]
    return web.json_response({"events": events})


async def conferences(request: web.Request) -> web.Response:
    engine = _engine(request)
    return web.json_response(
        {"conferences": [engine.conference_view(c) for c in engine.conferences.values()]}
    )


async def get_config(request: web.Request) -> web.Response:
    config = _engine(request).config
    return web.json_response(config.model_dump(mode="json", exclude={"auth_token"}))


async def put_config(request: web.Request) -> web.Response:
    update = await _body(request, ConfigUpdate)
    engine = _engine(request)
    engine.update_config(update)
    return web.json_response(engine.config.model_dump(mode="json", exclude={"auth_token"}))


async def reset(request: web.Request) -> web.Response:
    await _engine(request).reset()
    return web.json_response({"reset": True})


def register(app: web.Application) -> None:
    app.router.add_post("/sandbox/calls", start_call)
    app.router.add_get("/sandbox/calls", list_calls)
    app.router.add_get("/sandbox/calls/{sid}", get_call)
    app.router.add_post("/sandbox/calls/{sid}/hangup", hang_up)
    app.router.add_put("/sandbox/parties/{number}", put_party)
    app.router.add_get("/sandbox/parties", list_parties)
    app.router.add_put("/sandbox/numbers/{number}", put_number)
    app.router.add_get("/sandbox/timeline", timeline)
    app.router.add_get("/sandbox/conferences", conferences)
    app.router.add_get("/sandbox/config", get_config)
    app.router.add_put("/sandbox/config", put_config)
    app.router.add_post("/sandbox/reset", reset)
