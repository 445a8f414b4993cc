"""Request ids, authentication, and the one place errors become HTTP answers.

Every failure leaves as ``{"error": {"code", "message", "details"}}`` (DESIGN.md §6): domain
errors with their own status, aiohttp's own (unknown route, wrong method, body too large) with
theirs, Redis being unreachable as 503, and anything unexpected as a 500 that names the request id
and nothing else. Bad input never reaches that last branch: ``gateway.web.bodies`` turns every
body or query that does not parse into a 4xx. A client that goes away is one INFO line, never a
traceback.
"""

from __future__ import annotations

import logging
import random
import re
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from gateway.core.auth import Principal, bearer_token
from gateway.core.errors import (
    BodyUnreadable,
    GatewayError,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)
from gateway.core.logs import request_id_var
from gateway.web.appkeys import KEYRING, METRICS

log = logging.getLogger(__name__)

PRINCIPAL = web.RequestKey("principal", Principal)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return web.json_response(body, status=status)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    # 16 hex digits, unique, not secret: no system call per request (``write_token``'s source).
    request_id = incoming if _REQUEST_ID_RE.match(incoming) else f"{random.getrandbits(64):016x}"
    token = request_id_var.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    finally:
        request_id_var.reset(token)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="gateway"'  # RFC 6750 §3
        if isinstance(exc, BodyUnreadable | RequestTimeout):
            response.force_close()  # the stream's framing is lost: no next request on it
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "error")
        message = exc.reason if exc.status != 404 else f"no route for {request.path}"
        response = error_response(exc.status, code, message)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except ConnectionResetError:
        # The client went away while its request was served (aiohttp's
        # ClientConnectionResetError is one): nobody will read an answer, nothing to trace.
        log.info("client disconnected", extra={"path": request.path})
        return error_response(400, "bad_request", "the client closed the connection")
    except RedisError as exc:
        request.app[METRICS].redis_errors.inc()
        log.error("redis unavailable", extra={"error": type(exc).__name__})
        return error_response(503, Unavailable.code, "state store unavailable; try again")
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(
            500,
            "internal",
            f"internal error; quote request id {request_id_var.get()} to the operator",
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/v1`` route needs a bearer key; the principal is left on the request."""
    if request.path.startswith("/v1/") or request.path == "/v1":
        token = bearer_token(request.headers.get("Authorization"))
        principal = request.app[KEYRING].authenticate(token)
        if principal is None:
            raise Unauthorized("unknown or revoked API key")
        request[PRINCIPAL] = principal
    return await handler(request)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]
