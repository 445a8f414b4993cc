"""Routing: the dry-run decision and the administration of the live policy (DESIGN.md §5, §6)."""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from gateway.core.auth import Role, require_role
from gateway.core.errors import BadRequest, NotFound
from gateway.policy import LoadedPolicy, PolicyDocument, VersionInfo, VersionMismatch
from gateway.policy.decision import Decision, DecisionRequest
from gateway.web.appkeys import POLICY
from gateway.web.bodies import read_json, read_model
from gateway.web.middlewares import error_response, principal_of
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


# -- policy administration (DESIGN.md §5, §9) ----------------------------------------------------

_IF_MATCH = re.compile(r'(?:"([0-9]{1,15})"|([0-9]{1,15}))')
"""``If-Match``: one version number, quoted as an entity tag (``"3"``) or bare (``3``)."""


def etag(version: int) -> str:
    """The entity tag of a policy version: the version number, quoted."""
    return f'"{version}"'


def if_match(request: web.Request) -> int | None:
    """The version named by ``If-Match``; None without one (or with ``*``: any live policy).
    ``BadRequest`` (400) for anything but one version number."""
    values = request.headers.getall("If-Match", [])
    if not values:
        return None
    value = ",".join(values).strip()
    if value == "*":
        return None
    found = _IF_MATCH.fullmatch(value)
    if found is None:
        raise BadRequest(
            'If-Match must be the policy version the edit was made from, e.g. "3"',
            [{"path": "If-Match", "message": "not one version number"}],
        )
    return int(found.group(1) or found.group(2))


def live_response(loaded: LoadedPolicy) -> web.Response:
    """The policy of ``loaded`` in the GET shape, with its ``ETag``."""
    return web.json_response(loaded.as_json(), headers={"ETag": etag(loaded.version)})


def mismatch_response(exc: VersionMismatch) -> web.Response:
    """412 in the error shape, naming the live version in the body and in ``ETag``."""
    response = error_response(exc.status, exc.code, exc.message, exc.details)
    response.headers["ETag"] = etag(exc.live_version)
    return response


async def get_policy(request: web.Request) -> web.Response:
    """The live policy and its version; ``ETag: "<version>"`` for a later ``If-Match``."""
    principal_of(request)
    return live_response(await request.app[POLICY].current())


async def put_policy(request: web.Request) -> web.Response:
    """Replace the whole policy: 422 with every error and nothing changed, or the next version,
    live on every gateway process. ``If-Match: "<version>"`` (the version edited from): 412 when
    another is live. The policy already live: 200 with its version, no new version."""
    principal = require_role(principal_of(request), Role.ADMIN)
    expected = if_match(request)
    data = await read_json(request)
    try:
        change = await request.app[POLICY].put(data, principal.actor, if_match=expected)
    except VersionMismatch as exc:
        return mismatch_response(exc)
    return live_response(change.live)


async def get_versions(request: web.Request) -> web.Response:
    """Every version, oldest first: ``{version, at, actor, summary}``."""
    principal_of(request)
    versions = await request.app[POLICY].versions()
    return web.json_response([v.model_dump(mode="json") for v in versions])


async def get_version(request: web.Request) -> web.Response:
    """One version's whole policy (live or not), in the GET shape; 404 for an unknown one."""
    principal_of(request)
    raw = request.match_info["version"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 15:
        raise NotFound(f"no policy version {raw[:20]!r}")
    return live_response(await request.app[POLICY].version(int(raw)))


async def post_rollback(request: web.Request) -> web.Response:
    """A new version whose content is a copy of ``version``'s (no body, or no ``version``: the
    version before the live one). The content already live: 200, no new version."""
    principal = require_role(principal_of(request), Role.ADMIN)
    expected = if_match(request)
    body = await read_model(request, RollbackRequest, allow_empty=True)
    try:
        change = await request.app[POLICY].rollback(
            body.version, principal.actor, if_match=expected
        )
    except VersionMismatch as exc:
        return mismatch_response(exc)
    return live_response(change.live)


IF_MATCH_HEADER = (
    "If-Match",
    'The version the edit was made from, "<version>" (quoted or bare; the GET\'s ETag). '
    "Another version live: 412. Absent: applied on top of the live version.",
)
PRECONDITION_FAILED = (
    "412",
    "If-Match names a version that is not live; details[0].live_version and ETag give the live one",
)

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
        "Replace the routing policy (validated; becomes the next version; the live policy "
        "again: the same version, no new one)",
        "routing",
        roles=(Role.ADMIN,),
        request=PolicyDocument,
        response=LivePolicy,
        headers=(IF_MATCH_HEADER,),
        responses=(PRECONDITION_FAILED,),
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
        "GET",
        "/v1/admin/routing/versions/{version}",
        get_version,
        "One policy version, whole (404 for an unknown version)",
        "routing",
        roles=ANY_ROLE,
        response=LivePolicy,
    ),
    Route(
        "POST",
        "/v1/admin/routing/rollback",
        post_rollback,
        "Make a new version a copy of an earlier one (no body: the version before the live "
        "one; the content already live: the same version, no new one)",
        "routing",
        roles=(Role.ADMIN,),
        request=RollbackRequest,
        response=LivePolicy,
        headers=(IF_MATCH_HEADER,),
        responses=(PRECONDITION_FAILED,),
    ),
]
