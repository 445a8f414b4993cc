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
    media_type: str = "application/json"
    """What a success answers with (``text/event-stream`` for the event stream)."""


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
