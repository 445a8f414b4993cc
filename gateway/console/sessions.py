"""Console sessions: a person signs in with their API key once; the browser then holds only an
opaque session token in an HttpOnly cookie (DESIGN.md §10).

The session lives in Redis (``gateway.core.keys.console_session``, keyed by the SHA-256 digest of
the token) as JSON ``{who, digest, csrf, created_at}`` (who: the key's principal): the key is never
stored, never rendered into a page, never in browser storage. A session expires ``ttl_s`` after
its last use (sliding) and at most ``max_age_s`` after sign-in; signing out deletes it. Every
gateway process reads the same Redis, so a session works behind a load balancer.

Cross-site requests: the cookie is ``SameSite=Strict`` (``Secure`` when the public URL is https),
and every state-changing console request must carry the session's CSRF token (a hidden form
field ``csrf`` or the ``X-CSRF-Token`` header htmx sends) and, when the browser sends one, an
``Origin`` equal to the gateway's own. Anything else is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.auth import Principal, Role

COOKIE = "gw_console"
"""The session cookie's name; its value is a random token (256 bits), nothing else."""
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person: the principal of the key they signed in with, and the session's CSRF
    token (rendered into forms; it proves a request came from a console page)."""

    who: dict[str, str]
    """The key's principal as fields (org, role, key id, and its holder's name when keys have
    one): the session acts exactly as that key would."""
    digest: str
    """SHA-256 digest of the key signed in with: the session ends when the key is revoked."""
    csrf: str
    created_at: str

    @property
    def org(self) -> str:
        return self.who["org"]

    @property
    def role(self) -> Role:
        return Role(self.who["role"])

    @property
    def principal(self) -> Principal:
        fields: dict[str, Any] = {**self.who, "role": self.role}
        return Principal(**fields)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Sessions in Redis. ``ttl_s``: idle lifetime (refreshed on use); ``max_age_s``: absolute."""

    def __init__(self, redis: Redis, *, ttl_s: int, max_age_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_age_s = max_age_s

    async def create(self, principal: Principal, key_digest: str) -> tuple[str, Session]:
        """A new session for ``principal``: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(32)
        session = Session(
            who={k: str(v) for k, v in asdict(principal).items()},
            digest=key_digest,
            csrf=secrets.token_urlsafe(32),
            created_at=datetime.now(UTC).isoformat(),
        )
        await self.redis.set(
            keys.console_session(_digest(token)), json.dumps(asdict(session)), ex=self.ttl_s
        )
        return token, session

    async def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its idle time restarted), or None."""
        if not token or len(token) > 128:
            return None
        key = keys.console_session(_digest(token))
        raw = await self.redis.getex(key, ex=self.ttl_s)
        if raw is None:
            return None
        session = Session(**json.loads(raw))
        age = datetime.now(UTC) - datetime.fromisoformat(session.created_at)
        if age.total_seconds() > self.max_age_s:
            await self.redis.delete(key)
            return None
        return session

    async def delete(self, token: str | None) -> None:
        if token and len(token) <= 128:
            await self.redis.delete(keys.console_session(_digest(token)))


def set_cookie(response: web.StreamResponse, token: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        path="/console/",
        httponly=True,
        secure=secure,
        samesite="Strict",
        max_age=max_age,
    )


def clear_cookie(response: web.StreamResponse, *, secure: bool) -> None:
    response.del_cookie(COOKIE, path="/console/", secure=secure, httponly=True, samesite="Strict")


def same_origin(request: web.Request, public_origin: str) -> bool:
    """False when the browser says the request came from another origin (``Origin``, else
    ``Referer``); True when it came from ours or says nothing (non-browser clients)."""
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return True
        origin = "/".join(referer.split("/", 3)[:3])
    own = {public_origin, f"{request.scheme}://{request.host}"}
    return origin in own


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf, presented)
