"""The route table: one declaration per endpoint serves both the router and ``/openapi.json``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from gateway.core.auth import Role


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter as ``/openapi.json`` documents it (handlers still parse their own,
    with ``gateway.web.bodies``)."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    """Its JSON Schema (OpenAPI 3.1): e.g. ``{"type": "integer", "minimum": 1}``."""
    repeatable: bool = False
    """May be given more than once (``?state=a&state=b``): documented as an array of
    ``schema``."""
    required: bool = False
    example: Any = None


@dataclass(frozen=True, slots=True)
class Webhook:
    """A notice the gateway POSTs to a partner: documented under ``webhooks`` in
    ``/openapi.json`` (DESIGN.md §9, last paragraph), signed as ``gateway.core.signing`` does."""

    name: str
    """Its key under ``webhooks`` (the body's ``type`` when it has one)."""
    summary: str
    description: str
    body: type[BaseModel]
    """The model the gateway builds the body from (its serialization schema is documented)."""
    tag: str
    receiver: str
    """Where the URL and the secret come from (routing policy fields)."""
    idempotency_key: str
    """What the ``Idempotency-Key`` header holds."""
    delivery: str
    """What the gateway does with the receiver's answer (retries, timeout)."""


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
    query: tuple[tuple[str, str] | Query, ...] = ()
    """Query parameters for the document: a ``Query`` (typed), or (name, description), typed
    by its name when it is a conventional one (``limit``, ``cursor``, ``since``, ``from``…; see
    ``gateway.web.openapi.CONVENTIONAL_QUERY``), else a string."""
    # -- request headers and extra answers (policy administration: If-Match, 412) --
    headers: tuple[tuple[str, str], ...] = ()
    """Request headers the route reads, as (name, description), for the document."""
    responses: tuple[tuple[str, str], ...] = ()
    """Statuses beyond the common error set, as (status, description), for the document."""
    response_headers: tuple[tuple[str, str], ...] = ()
    """Headers of the success answer (and of any extra status in ``responses``), as (name,
    description), for the document: e.g. the policy's ``ETag``."""
    media_type: str = "application/json"
    """What a success answers with (``text/event-stream`` for the event stream)."""


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
