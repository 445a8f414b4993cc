"""Routing: the dry-run decision and the administration of the live policy (DESIGN.md §5, §6)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from gateway.core.auth import Role, require_role
from gateway.core.errors import Conflict
from gateway.policy import PolicyDocument, VersionInfo
from gateway.policy.decision import Decision, DecisionRequest
from gateway.web.appkeys import POLICY
from gateway.web.bodies import read_json, read_model
from gateway.web.middlewares import principal_of
from gateway.web.routes import Route
from gateway.web.scope import read_call_request

ANY_ROLE = tuple(Role)


class LivePolicy(PolicyDocument):
    """The live policy document and its version."""

    version: int


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1)
    """The version to restore; absent: the one before the live version."""


class VersionList(RootModel[list[VersionInfo]]):
    """Every version, oldest first."""


async def post_decision(request: web.Request) -> web.Response:
    """Dry run: what the live policy decides for these call facts. Nothing is recorded.
    A ``psap`` key may leave ``psap_id`` out (``gateway.web.scope``)."""
    body = await read_call_request(request, DecisionRequest, principal_of(request))
    decision = await request.app[POLICY].decide(body)
    return web.json_response(decision.model_dump(mode="json"))


async def get_policy(request: web.Request) -> web.Response:
    principal_of(request)
    loaded = await request.app[POLICY].current()
    return web.json_response(loaded.as_json())


async def put_policy(request: web.Request) -> web.Response:
    """Replace the whole policy: 422 with every error and nothing changed, or the next version,
    live on every gateway process."""
    principal = require_role(principal_of(request), Role.ADMIN)
    data = await read_json(request)
    service = request.app[POLICY]
    await service.put(data, principal.actor)
    return web.json_response((await service.current()).as_json())


async def get_versions(request: web.Request) -> web.Response:
    principal_of(request)
    versions = await request.app[POLICY].versions()
    return web.json_response([v.model_dump(mode="json") for v in versions])


async def post_rollback(request: web.Request) -> web.Response:
    """A new version whose content equals an earlier one."""
    principal = require_role(principal_of(request), Role.ADMIN)
    body = await read_model(request, RollbackRequest, allow_empty=True)
    service = request.app[POLICY]
    version = body.version
    if version is None:
        live = (await service.current()).version
        if live <= 1:
            raise Conflict("there is no earlier version to roll back to")
        version = live - 1
    await service.rollback(version, principal.actor)
    return web.json_response((await service.current()).as_json())


ROUTES: list[Route] = [
    Route(
        "POST",
        "/v1/routing/decisions",
        post_decision,
        "Dry-run routing decision",
        "routing",
        roles=ANY_ROLE,
        request=DecisionRequest,
        response=Decision,
    ),
    Route(
        "GET",
        "/v1/admin/routing",
        get_policy,
        "The live routing policy and its version",
        "routing",
        roles=ANY_ROLE,
        response=LivePolicy,
    ),
    Route(
        "PUT",
        "/v1/admin/routing",
        put_policy,
        "Replace the routing policy (validated; becomes the next version)",
        "routing",
        roles=(Role.ADMIN,),
        request=PolicyDocument,
        response=LivePolicy,
    ),
    Route(
        "GET",
        "/v1/admin/routing/versions",
        get_versions,
        "Every policy version: who, when, what changed",
        "routing",
        roles=ANY_ROLE,
        response=VersionList,
    ),
    Route(
        "POST",
        "/v1/admin/routing/rollback",
        post_rollback,
        "Make a new version equal to an earlier one",
        "routing",
        roles=(Role.ADMIN,),
        request=RollbackRequest,
        response=LivePolicy,
    ),
]
