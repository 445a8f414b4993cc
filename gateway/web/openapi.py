"""``/openapi.json``: the OpenAPI 3.1 document, generated from the route table and the models."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.web.routes import Route

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}

_ERRORS = {
    "400": "Malformed request",
    "401": "No or unknown API key",
    "403": "Wrong role, or another organization's resource",
    "404": "Not found",
    "409": "A transition the state does not allow",
    "422": "Invalid content",
    "429": "Rate-limited",
    "503": "A dependency is down",
}


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build(routes: Iterable[Route], *, title: str, version: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {"summary": route.summary, "tags": [route.tag]}
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", route.path)
        ]
        parameters += [
            {"name": name, "in": "query", "required": False, "description": text,
             "schema": {"type": "string"}}
            for name, text in route.query
        ]  # fmt: skip
        if parameters:
            operation["parameters"] = parameters
        if route.roles is not None:
            operation["security"] = [{"bearer": []}]
            operation["x-roles"] = [r.value for r in route.roles]
        if route.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(route.request, components)}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            ok["content"] = {
                "application/json": {"schema": _schema_ref(route.response, components)}
            }
        elif route.media_type != "application/json":
            ok["content"] = {route.media_type: {"schema": {"type": "string"}}}
        error = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }
        operation["responses"] = {
            str(route.status): ok,
            **{code: {"description": text, **error} for code, text in _ERRORS.items()},
        }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def view(
    routes: Sequence[Route], *, title: str, version: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler serving the document for ``routes``, built on first request — by then the
    table is complete, this route included."""
    document: dict[str, Any] = {}

    async def openapi_json(request: web.Request) -> web.Response:
        if not document:
            document.update(build(routes, title=title, version=version))
        return web.json_response(document)

    return openapi_json
