"""Bounded work per process: overload is refused early and cleanly (DESIGN.md §11).

At most ``limit`` requests run at once in one process; the others wait for a slot. Past the
bound, what is refused and what waits follows what Twilio does with the answer:

- ``/twilio/voice`` (a new call to the bridge line) is refused at once with 503 while every
  slot is taken or anyone waits: Twilio then fetches the number's fallback URL, which dials the
  PSAP's fallback destination — a caller waits for nothing;
- status callbacks and everything else wait for a slot (up to ``wait_s``) and are then served:
  a callback answered 2xx has been applied. One that cannot get a slot in time gets 503 and
  the outage watch reconciles with the provider (Twilio does not retry a callback);
- ``/twilio/fallback``, health, readiness and metrics are never held back.
- ``/v1/events`` streams are not held either (they stay open for hours): they have bounds of
  their own (``gateway.web.events``).
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.web.appkeys import ADMISSION, METRICS, OUTAGES
from gateway.web.middlewares import error_response

log = logging.getLogger(__name__)

NEVER_HELD = frozenset({"/twilio/fallback", "/healthz", "/readyz", "/metrics", "/openapi.json"})
NEVER_HELD |= {"/v1/events"}  # open for hours: bounded on its own (gateway.web.events)
REFUSED_WHEN_BUSY = frozenset({"/twilio/voice"})


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in NEVER_HELD:
        return await handler(request)
    admission = request.app[ADMISSION]
    if request.path in REFUSED_WHEN_BUSY and admission.busy:
        request.app[METRICS].refused.labels(request.path).inc()
        return error_response(503, "unavailable", "this process is at capacity; try again")
    if not await admission.acquire():
        request.app[METRICS].refused.labels(request.path).inc()
        if request.path.startswith("/twilio/"):
            request.app[OUTAGES].note("status callback refused at capacity")
        log.warning("refused at capacity", extra={"path": request.path})
        return error_response(503, "unavailable", "this process is at capacity; try again")
    try:
        return await handler(request)
    finally:
        admission.release()


# The consoles' live stream (gateway.console) is /v1/events under a session: never held either.
NEVER_HELD |= {"/console/events"}
