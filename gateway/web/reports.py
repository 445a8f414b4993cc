"""``GET /v1/reports/summary``: the program figures for a period."""

from __future__ import annotations

from aiohttp import web

from gateway.core.auth import Role, require_role
from gateway.reports.figures import build_summary
from gateway.web.appkeys import POLICY, REDIS
from gateway.web.bodies import query_text
from gateway.web.middlewares import principal_of
from gateway.web.routes import Route
from gateway.web.scope import own_psap_id


async def summary_view(request: web.Request) -> web.Response:
    principal = require_role(principal_of(request), Role.ADMIN, Role.PSAP)
    psap_id = own_psap_id(principal, query_text(request, "psap_id"))  # a psap key: its own
    loaded = await request.app[POLICY].current()
    body = await build_summary(
        loaded, request.app[REDIS], psap_id, request.query.get("from"), request.query.get("to")
    )
    return web.json_response(body)


ROUTES = [
    Route(
        "GET",
        "/v1/reports/summary",
        summary_view,
        "Program figures for a period (from, to: PSAP-local dates, inclusive; psap_id)",
        "reports",
        roles=(Role.ADMIN, Role.PSAP),
        query=(
            ("from", "first PSAP-local date, YYYY-MM-DD (default: today)"),
            ("to", "last PSAP-local date, inclusive (default: the later of today and from)"),
            ("psap_id", "one PSAP (a psap key: its own, the default; admin: default all)"),
        ),
    )
]
