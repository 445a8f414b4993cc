"""The route table: one declaration per endpoint serves both the router and ``/openapi.json``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from gateway.core.auth import Role


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    roles: tuple[Role, ...] | None = None
    """Roles allowed (documented; handlers enforce). ``None``: no key needed."""
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[tuple[str, str], ...] = ()
    """Query parameters, as (name, description), for the document."""
    # -- request headers and extra answers (policy administration: If-Match, 412) --
    headers: tuple[tuple[str, str], ...] = ()
    """Request headers the route reads, as (name, description), for the document."""
    responses: tuple[tuple[str, str], ...] = ()
    """Statuses beyond the common error set, as (status, description), for the document."""


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
