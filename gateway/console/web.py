"""Console plumbing: templates, the signed-in check, CSRF, and errors as readable notices.

Every console handler is wrapped by ``page`` (a full page: no session → the sign-in page) or
``fragment`` (an htmx request: no session → 401 with ``HX-Redirect`` to sign-in). A handler
that changes something (POST) is refused with 403 unless it carries the session's CSRF token and
comes from the gateway's own origin (``gateway.console.sessions``). A domain error (409 a state
that does not allow it, 422 invalid input, 403 another org's resource…) is shown to the person
as a notice in words, not as JSON.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from pydantic import ValidationError

from gateway.console import views
from gateway.console.sessions import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    SessionStore,
    csrf_ok,
    same_origin,
)
from gateway.core.auth import Role
from gateway.core.errors import GatewayError
from gateway.web.appkeys import KEYRING, REDIS, SETTINGS

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SESSION = web.RequestKey("console_session", Session)
SESSIONS = web.AppKey("console_sessions", SessionStore)

ConsoleHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HOME: Mapping[Role, str] = {
    Role.PSAP: "/console/call-taker",
    Role.ADMIN: "/console/board",
    Role.CRISIS_CENTER: "/console/counselor",
}
"""Where a person lands after signing in, by their key's role."""

NAV: Mapping[Role, list[tuple[str, str]]] = {
    Role.PSAP: [
        ("/console/call-taker", "Call-taker"),
        ("/console/handbacks", "Handback inbox"),
        ("/console/board", "Board"),
    ],
    Role.ADMIN: [("/console/board", "Supervisor board"), ("/console/policy", "Policy editor")],
    Role.CRISIS_CENTER: [("/console/counselor", "Counselor")],
}


def environment_options() -> dict[str, Any]:
    """Keyword arguments of ``aiohttp_jinja2.setup``: the templates, autoescaped, strict."""
    return {
        "loader": jinja2.FileSystemLoader(TEMPLATES),
        "autoescape": jinja2.select_autoescape(["html"]),
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "filters": {
            "phone": views.phone,
            "group_code": views.group_code,
            "seconds": views.seconds_words,
        },
    }


def secure_cookies(request: web.Request) -> bool:
    return str(request.app[SETTINGS].public_base_url).startswith("https://")


def public_origin(request: web.Request) -> str:
    url = request.app[SETTINGS].public_base_url
    port = f":{url.port}" if url.port and url.port not in (80, 443) else ""
    return f"{url.scheme}://{url.host}{port}"


def sessions(app: web.Application) -> SessionStore:
    return app[SESSIONS]


async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """The session store, on the app's Redis client (listed after the context that opens it)."""
    settings = app[SETTINGS]
    app[SESSIONS] = SessionStore(
        app[REDIS],
        ttl_s=settings.console_session_idle_s,
        max_age_s=settings.console_session_max_s,
    )
    yield


def key_still_valid(request: web.Request, session: Session) -> bool:
    """The key signed in with is still in the key ring and not revoked (in the key file or as
    published to every process): a revoked key ends its console sessions too."""
    return request.app[KEYRING].principal_of_digest(session.digest) is not None


async def current_session(request: web.Request) -> Session | None:
    session = await sessions(request.app).get(request.cookies.get(COOKIE))
    if session is None or not key_still_valid(request, session):
        return None
    return session


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    session = request.get(SESSION)
    base: dict[str, Any] = {
        "session": session,
        "nav": NAV.get(session.role, []) if session else [],
        "path": request.path,
        "csrf": session.csrf if session else "",
        "csrf_field": CSRF_FIELD,
    }
    base.update(context)
    response = aiohttp_jinja2.render_template(template, request, base, status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def notice(request: web.Request, message: str, *, status: int) -> web.Response:
    """A domain error in words: a fragment for htmx (swapped in place, so answered 200 with the
    real status in ``X-Console-Status``), a page otherwise."""
    if request.headers.get("HX-Request") == "true":
        response = render(request, "_notice.html", {"message": message, "tone": "alarm"})
        response.headers["X-Console-Status"] = str(status)
        response.headers["HX-Retarget"] = "#notices"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "error.html", {"message": message, "status": status}, status=status)


def _validation_words(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "form"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _guarded(roles: tuple[Role, ...], *, is_page: bool) -> Callable[[ConsoleHandler], Any]:
    def wrap(handler: ConsoleHandler) -> ConsoleHandler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = await current_session(request)
            if session is None:
                target = "/console/sign-in?next=" + quote(request.path)
                if request.cookies.get(COOKIE):  # there was a session: say why it is gone
                    target += "&ended=1"
                if is_page and request.method == "GET":
                    raise web.HTTPSeeOther(target)
                response = web.Response(status=401, text="Signed out: sign in again.")
                response.headers["HX-Redirect"] = target
                return response
            request[SESSION] = session
            if request.method not in ("GET", "HEAD"):
                token = request.headers.get(CSRF_HEADER)
                if token is None:
                    form = await request.post()
                    value = form.get(CSRF_FIELD)
                    token = value if isinstance(value, str) else None
                if not (csrf_ok(session, token) and same_origin(request, public_origin(request))):
                    return render(
                        request,
                        "error.html",
                        {
                            "message": "Refused: this form did not come from this console. "
                            "Reload the page and try again.",
                            "status": 403,
                        },
                        status=403,
                    )
            if session.role not in roles:
                return notice(request, "This page is not for your role.", status=403)
            try:
                return await handler(request)
            except ValidationError as exc:
                return notice(request, _validation_words(exc), status=422)
            except GatewayError as exc:
                detail = "; ".join(
                    f"{d.get('path', '')}: {d.get('message', '')}".strip(": ")
                    for d in exc.details
                    if isinstance(d, dict)
                )
                message = exc.message + (f" ({detail})" if detail else "")
                return notice(request, message, status=exc.status)

        return guarded

    return wrap


def page(*roles: Role) -> Callable[[ConsoleHandler], ConsoleHandler]:
    """A full console page for a signed-in person of one of ``roles``."""
    result: Callable[[ConsoleHandler], ConsoleHandler] = _guarded(
        roles or tuple(Role), is_page=True
    )
    return result


def fragment(*roles: Role) -> Callable[[ConsoleHandler], ConsoleHandler]:
    """A piece of a page htmx fetches or posts, for a signed-in person of one of ``roles``."""
    result: Callable[[ConsoleHandler], ConsoleHandler] = _guarded(
        roles or tuple(Role), is_page=False
    )
    return result
