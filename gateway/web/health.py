"""Liveness and readiness."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.web.appkeys import READY_CHECKS
from gateway.web.middlewares import error_response

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when every dependency check passes: Redis answers and a policy is loaded."""
    results: dict[str, str] = {}
    for name, check in request.app[READY_CHECKS].items():
        # Checks are bounded by their clients' own socket timeouts: cancelling an in-flight
        # Redis command from outside can corrupt its connection.
        try:
            ok = await check()
        except Exception as exc:
            log.warning(
                "readiness check failed", extra={"check": name, "error": type(exc).__name__}
            )
            ok = False
        results[name] = "ok" if ok else "down"
    if all(v == "ok" for v in results.values()):
        return web.json_response({"status": "ready", "checks": results})
    down = [{"check": name, "status": status} for name, status in results.items() if status != "ok"]
    return error_response(503, "unavailable", "not ready", down)
