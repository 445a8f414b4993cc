"""Every error the gateway raises on purpose, and the HTTP answer each becomes.

    GatewayError                  500 internal        (never shown with a traceback)
    ├── BadRequest                400 bad_request     malformed JSON or form
    │   └── BodyUnreadable        400 bad_request     the body could not be read to its end
    ├── Unauthorized              401 unauthorized    no key, unknown key
    ├── Forbidden                 403 forbidden       wrong role, another org's resource
    ├── NotFound                  404 not_found
    ├── Conflict                  409 conflict        a transition the state does not allow,
    │                                                 or another writer won the race
    ├── RequestTimeout            408 request_timeout the body did not arrive in time
    ├── UnsupportedMediaType      415 unsupported_media_type  a content type or charset the
    │                                                 route cannot read
    ├── Invalid                   422 invalid         content that parses but does not validate
    ├── RateLimited               429 rate_limited
    └── Unavailable               503 unavailable     Redis or another dependency is down

Handlers raise these; one middleware (``gateway.web.middlewares``) turns them into
``{"error": {"code", "message", "details"}}``. Anything else becomes a 500 with a request id and
no detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError


class GatewayError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, details: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class Invalid(GatewayError):
    status = 422
    code = "invalid"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"


class Unavailable(GatewayError):
    status = 503
    code = "unavailable"


class BodyUnreadable(BadRequest):
    """The body could not be read to its end: the client went away, or its framing or content
    encoding is broken. Nothing was parsed; the connection is closed after the answer."""


class RequestTimeout(GatewayError):
    """The request body did not arrive within the read deadline; the connection is closed."""

    status = 408
    code = "request_timeout"


class UnsupportedMediaType(GatewayError):
    """A Content-Type or charset this route cannot read."""

    status = 415
    code = "unsupported_media_type"


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Each error as its path and message — never the offending value, which may be personal.
    A validator's own message is given as it is, without pydantic's ``Value error, `` prefix."""
    return [
        {
            "path": ".".join(str(part) for part in err["loc"]) or "$",
            "message": err["msg"].removeprefix("Value error, "),
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]
