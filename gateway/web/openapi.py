"""``/openapi.json``: the OpenAPI 3.1 document, generated from the route table, the webhook
table (``gateway.web.webhooks``) and the models — what a 988 center or a CAD needs to integrate
(DESIGN.md §6, §9 last paragraph)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.core.signing import DEFAULT_TOLERANCE_S, HEADER
from gateway.web.routes import Query, Route, Webhook

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
    "401": "No, unknown or revoked API key",
    "403": "Wrong role, or another organization's resource",
    "404": "Not found",
    "409": "A transition the state does not allow",
    "422": "Invalid content",
    "429": "Rate-limited",
    "503": "A dependency is down",
}

_BODY_ERRORS = {
    "408": "The body did not arrive in time (`GATEWAY_BODY_TIMEOUT_S`)",
    "413": "The body is too large",
    "415": "A Content-Type or charset the route does not read",
}
"""What reading a body may answer (``gateway/web/bodies.py``): documented on every operation that
reads one, a JSON body (a request model) or Twilio's form."""


CONVENTIONAL_QUERY: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    "cursor": {"type": "string", "description": "opaque: the previous page's next_cursor"},
    "since": {"type": "string", "format": "date-time"},
    "from": {"type": "string", "format": "date"},
    "to": {"type": "string", "format": "date"},
}
"""Schemas of query parameters declared as (name, description) by a conventional name (DESIGN.md
§9 paging); any other such parameter is a string."""

SIGNATURE_SCHEME = f"""Every notice the gateway sends (see `webhooks`) carries \
`{HEADER}: t=<unix>,v1=<hex>`:

- `t`: when it was signed, Unix seconds (UTC);
- `v1`: lowercase hex HMAC-SHA256, keyed by the UTF-8 bytes of the secret shared with the \
receiver, over the ASCII bytes of `t`, then `.`, then the raw request body exactly as received.

The body is compact JSON (no spaces), UTF-8, non-ASCII characters unescaped: verify the bytes \
received, never JSON re-serialized. To verify: split the header on `,` and each part on the \
first `=`; recompute `v1` with the secret; compare in constant time; refuse (e.g. 401) when it \
differs or when `t` is more than {DEFAULT_TOLERANCE_S} s from your clock (a replay). Deduplicate \
on `Idempotency-Key`: a notice may come more than once. The secret is the value of the \
environment variable the routing policy names for the receiver (`notify_secret_env` of a \
destination, `cad_secret_env` of a PSAP). `examples/receiver.py` in the repository verifies \
exactly this."""

SIGNATURE_PATTERN = r"^t=[0-9]+,v1=[0-9a-f]{64}$"


def _schema_ref(
    model: type[BaseModel], components: dict[str, Any], *, mode: str = "validation"
) -> dict[str, Any]:
    schema = model.model_json_schema(
        ref_template="#/components/schemas/{model}",
        mode="serialization" if mode == "serialization" else "validation",
    )
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameter(query: Query | tuple[str, str]) -> dict[str, Any]:
    if not isinstance(query, Query):
        name, text = query
        query = Query(name, text, CONVENTIONAL_QUERY.get(name, {"type": "string"}))
    schema = dict(query.schema)
    parameter: dict[str, Any] = {
        "name": query.name,
        "in": "query",
        "required": query.required,
        "description": query.description,
    }
    if query.repeatable:
        parameter["schema"] = {"type": "array", "items": schema}
        parameter["style"], parameter["explode"] = "form", True
    else:
        parameter["schema"] = schema
    if query.example is not None:
        parameter["example"] = query.example
    return parameter


def _webhook(hook: Webhook, components: dict[str, Any]) -> dict[str, Any]:
    """The ``webhooks`` entry: the POST the gateway makes, as the receiver sees it."""
    body = _schema_ref(hook.body, components, mode="serialization")
    media: dict[str, Any] = {"schema": body}
    examples = components[hook.body.__name__].get("examples")
    if isinstance(examples, list) and examples:
        media["examples"] = {f"example{i + 1}": {"value": v} for i, v in enumerate(examples)}
    operation: dict[str, Any] = {
        "operationId": f"webhook_{hook.name.replace('.', '_')}",
        "summary": hook.summary,
        "description": (
            f"{hook.description}\n\n**Where it goes.** {hook.receiver}\n\n"
            f"**Delivery.** {hook.delivery}\n\n"
            f"**Signature.** `{HEADER}`, see the `gatewaySignature` security scheme."
        ),
        "tags": [hook.tag],
        "security": [{"gatewaySignature": []}],
        "parameters": [
            {
                "name": HEADER,
                "in": "header",
                "required": True,
                "description": (
                    '`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`'
                ),
                "schema": {"type": "string", "pattern": SIGNATURE_PATTERN},
                "example": "t=1772939700,v1=" + "0" * 64,
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": f"The same on every delivery of the notice: {hook.idempotency_key}.",
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "description": "Compact JSON, UTF-8 (the signed bytes).",
            "content": {"application/json": media},
        },
        "responses": {
            "2XX": {"description": "Taken (the body of the answer is ignored)."},
            "default": {"description": "Not taken: see Delivery."},
        },
    }
    return {"post": operation}


def build(
    routes: Iterable[Route],
    *,
    title: str,
    version: str,
    webhooks: Iterable[Webhook] = (),
) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {"summary": route.summary, "tags": [route.tag]}
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", route.path)
        ]
        parameters += [_query_parameter(q) for q in route.query]
        parameters += [
            {"name": name, "in": "header", "required": False, "description": text,
             "schema": {"type": "string"}}
            for name, text in route.headers
        ]  # fmt: skip
        if parameters:
            operation["parameters"] = parameters
        if route.roles is not None:
            operation["security"] = [{"bearer": []}]
            operation["x-roles"] = [r.value for r in route.roles]
        if route.request is not None:
            operation["requestBody"] = {
                # A body whose every field is optional may be left out (e.g. a rollback).
                "required": any(f.is_required() for f in route.request.model_fields.values()),
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
        headers = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in route.response_headers
        }
        if headers:
            ok["headers"] = headers
        operation["responses"] = {
            str(route.status): ok,
            **{code: {"description": text, **error} for code, text in _ERRORS.items()},
            **{
                code: {"description": text, **error}
                for code, text in _BODY_ERRORS.items()
                if route.request is not None or route.tag == "twilio"
            },
            **{
                code: {"description": text, **error, **({"headers": headers} if headers else {})}
                for code, text in route.responses
            },
        }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    hooks = {hook.name: _webhook(hook, components) for hook in webhooks}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "JSON API under `/v1` with bearer keys; the notices the gateway sends to 988 "
                "centers and CAD are under `webhooks`, signed as the `gatewaySignature` scheme "
                'says. Errors: `{"error": {"code", "message", "details"}}`.'
            ),
        },
        "paths": paths,
        "webhooks": hooks,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "`Authorization: Bearer <key>`. A key has an org and a role (`psap`, "
                        "`crisis_center`, `admin`), named by each operation's `x-roles`; "
                        "`python -m gateway keys new --org ORG --role ROLE` makes one. "
                        "No or unknown key: 401; wrong role or another org's resource: 403."
                    ),
                },
                "gatewaySignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": HEADER,
                    "description": SIGNATURE_SCHEME,
                },
            },
        },
    }


def view(
    routes: Sequence[Route], *, title: str, version: str, webhooks: Sequence[Webhook] = ()
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler serving the document for ``routes``, built on first request — by then the
    table is complete, this route included."""
    document: dict[str, Any] = {}

    async def openapi_json(request: web.Request) -> web.Response:
        if not document:
            document.update(build(routes, title=title, version=version, webhooks=webhooks))
        return web.json_response(document)

    return openapi_json
