"""The policy editor console (admin, DESIGN.md §10): the live policy, a draft edited as YAML,
validated at its paths, tried against a call, compared with the live version, saved with the
version it was edited from (``If-Match``), the versions, and a rollback with a confirm step."""

from __future__ import annotations

from aiohttp import web

from gateway.console.web import page, render
from gateway.core.auth import Role


@page(Role.ADMIN)
async def editor(request: web.Request) -> web.StreamResponse:
    return render(request, "policy.html", {"title": "Policy editor"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/policy", editor)
