"""Web consoles at ``/console/`` (DESIGN.md §10): server-rendered pages (Jinja2) made live with
htmx and its SSE extension, vendored under ``static/vendor`` — no build step, no CDN.

- ``sessions``: sign-in with a key → a server-side session in Redis, HttpOnly cookie, CSRF.
- ``views``: what each console shows, as data (tested without a browser).
- ``charts``: the supervisor board's SVG charts, drawn on the server.
- ``web``: templates, the signed-in and CSRF guards, errors as notices.
- ``pages``: the handlers (call-taker, handback inbox, supervisor board, counselor) and the
  live stream.
- ``policy``: the policy editor (admin); ``policy_views``: what it shows, as data.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from gateway.console import pages, policy
from gateway.console.web import STATIC, environment_options, sessions_ctx


def setup(app: web.Application) -> None:
    """Serve the consoles from ``app``: templates, static files and every ``/console`` route."""
    aiohttp_jinja2.setup(app, **environment_options())
    app.cleanup_ctx.append(sessions_ctx)
    app.router.add_static("/console/static/", STATIC, name="console_static")
    pages.add_routes(app)
    policy.add_routes(app)
    app.router.add_get("/console/{rest:.*}", pages.no_such_page)  # last: only what is left


__all__ = ["setup"]
