"""The query of a paged list (DESIGN.md §9), read once for ``/v1/transfers`` and
``/v1/handbacks``: ``state`` (repeatable), ``psap_id``, ``since`` (an ISO 8601 instant),
``limit`` (1 to 200, default 50) and ``cursor`` (a ``next_cursor`` as a list answered it).
Anything else there is 422 naming the parameter, in the JSON error shape."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiohttp import web
from redis.exceptions import RedisError

from gateway.core import keys
from gateway.core.errors import Invalid, Unavailable
from gateway.core.paging import DEFAULT_LIMIT, MAX_LIMIT, Position, decode_cursor
from gateway.web.appkeys import HANDBACKS, POLICY, REDIS, STORE
from gateway.web.bodies import query_int, query_text

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""A PSAP's or a destination's id, as the policy spells them."""
_INSTANT_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$", re.ASCII
)


def _bad(name: str, expected: str) -> Invalid:
    return Invalid(f"bad query parameter '{name}'", [{"path": name, "message": expected}])


@dataclass(frozen=True, slots=True)
class ListQuery:
    states: tuple[str, ...]
    """Any of these states (empty: any state)."""
    psap_id: str | None
    since: datetime | None
    before: Position | None
    """The cursor's position: only entries strictly older."""
    limit: int


def query_id(request: web.Request, name: str) -> str | None:
    """Query parameter ``name`` as a PSAP or destination id (None when absent); 422 otherwise."""
    value = query_text(request, name)
    if value is not None and not ID_RE.match(value):
        raise _bad(name, "an id such as kc-valleycom")
    return value


def query_instant(request: web.Request, name: str) -> datetime | None:
    """Query parameter ``name`` as an ISO 8601 instant with its offset (``Z`` or ``±hh:mm``),
    e.g. ``2026-05-01T08:00:00Z`` (None when absent); 422 otherwise. A ``+`` left unencoded in
    a query string arrives as a space, and is read as the ``+`` it was."""
    value = query_text(request, name)
    if value is None:
        return None
    if value.count(" ") == 1 and ("T" in value or value.index(" ") > 10):
        value = value.replace(" ", "+")  # "…T08:00:00 02:00" was "…T08:00:00+02:00"
    try:
        if not _INSTANT_RE.match(value):
            raise ValueError(value)
        return datetime.fromisoformat(value)
    except ValueError:
        raise _bad(name, "an ISO 8601 instant with its offset, e.g. 2026-05-01T08:00:00Z") from None


def query_states(request: web.Request, allowed: type[StrEnum]) -> tuple[str, ...]:
    """Every ``state`` given (repeatable), each one of ``allowed``; 422 naming the allowed ones."""
    values: Sequence[str] = request.query.getall("state", [])
    known = {s.value for s in allowed}
    for value in values:
        if value not in known:
            raise _bad("state", "one of " + ", ".join(s.value for s in allowed))
    return tuple(dict.fromkeys(values))


def list_query(request: web.Request, states: type[StrEnum]) -> ListQuery:
    cursor = query_text(request, "cursor")
    return ListQuery(
        states=query_states(request, states),
        psap_id=query_id(request, "psap_id"),
        since=query_instant(request, "since"),
        before=None if cursor is None else decode_cursor(cursor),
        limit=query_int(request, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT),
    )


async def index_existing_ctx(app: web.Application) -> AsyncIterator[None]:
    """At start: records made before the list indexes existed (each PSAP kept its own) are
    entered in them, once — the first process to finish marks it done (``keys.LISTS_INDEXED``);
    processes starting together repeat harmless work. Redis down or no policy: tried again at
    the next start."""
    redis = app[REDIS]
    try:
        if not await redis.exists(keys.LISTS_INDEXED):
            loaded = await app[POLICY].current()
            entered = 0
            for psap in loaded.document.psaps:
                entered += await app[STORE].index_existing(psap.id)
                entered += await app[HANDBACKS].store.index_existing(psap.id)
            await redis.set(keys.LISTS_INDEXED, "1")
            log.info("list indexes filled from existing records", extra={"records": entered})
    except (RedisError, Unavailable) as exc:
        log.warning("list indexes not filled at start", extra={"error": type(exc).__name__})
    yield


__all__ = [
    "ListQuery",
    "index_existing_ctx",
    "list_query",
    "query_id",
    "query_instant",
    "query_states",
]
