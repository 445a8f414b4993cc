"""The query of a paged list (DESIGN.md §9), read once for ``/v1/transfers`` and
``/v1/handbacks``: ``state`` (repeatable), ``psap_id``, ``since`` (an ISO 8601 instant),
``limit`` (1 to 200, default 50) and ``cursor`` (a ``next_cursor`` as a list answered it).
Anything else there is 422 naming the parameter, in the JSON error shape: a parameter the list
does not take (with the closest known name: a misspelt ``states`` must not silently list every
state), and a cursor another list, or another organization's key, was answered."""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiohttp import web
from redis.exceptions import RedisError

from gateway.core import keys
from gateway.core.auth import Principal
from gateway.core.errors import Invalid, Unavailable
from gateway.core.paging import DEFAULT_LIMIT, MAX_LIMIT, Position, decode_cursor
from gateway.web.appkeys import HANDBACKS, POLICY, REDIS, STORE
from gateway.web.bodies import query_int, query_text
from gateway.web.scope import own_psap_id

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""A PSAP's or a destination's id, as the policy spells them."""
_INSTANT_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$", re.ASCII
)
"""Up to nanoseconds (Go's RFC3339Nano, Java's ``Instant``), read to the microsecond."""


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
    e.g. ``2026-05-01T08:00:00Z``, up to nanoseconds, ``t`` and ``z`` as RFC 3339 allows (None
    when absent); 422 otherwise. A ``+`` left unencoded in a query string arrives as a space,
    and is read as the ``+`` it was."""
    value = query_text(request, name)
    if value is None:
        return None
    value = value.upper()  # RFC 3339 allows "t" and "z"
    if value.count(" ") == 1 and ("T" in value or value.index(" ") > 10):
        value = value.replace(" ", "+")  # "…T08:00:00 02:00" was "…T08:00:00+02:00"
    try:
        if not _INSTANT_RE.match(value):
            raise ValueError(value)
        return datetime.fromisoformat(value)
    except ValueError:
        raise _bad(name, "an ISO 8601 instant with its offset, e.g. 2026-05-01T08:00:00Z") from None


def query_states(request: web.Request, allowed: type[StrEnum]) -> tuple[str, ...]:
    """Every ``state`` given (repeatable), each one of ``allowed``; 422 naming the allowed ones.
    An empty ``state=`` (a form's "any") is no filter, as every other empty parameter is."""
    values: Sequence[str] = [v for v in request.query.getall("state", []) if v]
    known = {s.value for s in allowed}
    for value in values:
        if value not in known:
            raise _bad("state", "one of " + ", ".join(s.value for s in allowed))
    return tuple(dict.fromkeys(values))


PAGING = ("state", "psap_id", "since", "limit", "cursor")
"""The query parameters every list takes (DESIGN.md §9)."""


def check_names(request: web.Request, known: Sequence[str]) -> None:
    """422 naming every query parameter not in ``known``, each with the closest known name
    when there is one (``states`` → ``state``), as unknown body fields are."""
    unknown = [name for name in dict.fromkeys(request.query.keys()) if name not in known]
    if not unknown:
        return
    details = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        detail = {"path": name[:40], "message": "unknown query parameter"}
        if close:
            detail["message"] += f"; did you mean {close[0]!r}?"
            detail["did_you_mean"] = close[0]
        details.append(detail)
    raise Invalid(
        "unknown query parameter(s): "
        + ", ".join(repr(d["path"]) for d in details)
        + "; this list takes "
        + ", ".join(known),
        details,
    )


def _cursor_tag(scope: str) -> str:
    digest = hashlib.sha256(scope.encode()).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode()


def cursor_scope(name: str, principal: Principal) -> str:
    """What a cursor is answered for: one list (``transfers``, ``handbacks``), seen by one
    role of one organization (what the list shows depends on nothing else)."""
    return f"{name}:{principal.role}:{principal.org}"


def scoped_cursor(cursor: str | None, scope: str) -> str | None:
    """``next_cursor`` as answered: the position's cursor, ``.``, and a tag of ``scope`` (a
    cursor of another list or another organization's key is refused, not quietly read)."""
    return None if cursor is None else f"{cursor}.{_cursor_tag(scope)}"


def _unscoped(cursor: str, scope: str) -> Position:
    position, dot, tag = cursor.rpartition(".")
    if not dot or not position:
        raise _bad("cursor", "a next_cursor exactly as a list answered it")
    if not hmac.compare_digest(tag.encode(), _cursor_tag(scope).encode()):
        raise _bad(
            "cursor",
            "a next_cursor this list answered to a key of this organization and role",
        )
    return decode_cursor(position)


def list_query(
    request: web.Request,
    states: type[StrEnum],
    *,
    name: str,
    principal: Principal,
    extra: Sequence[str] = (),
) -> ListQuery:
    """The paging query of list ``name`` as ``principal`` asks it: ``PAGING`` and ``extra``
    parameters only (422 otherwise, ``check_names``); a ``psap`` key's ``psap_id`` is its own
    (another: 403 naming the key's org, ``own_psap_id``)."""
    check_names(request, (*PAGING, *extra))
    cursor = query_text(request, "cursor")
    psap_id = query_id(request, "psap_id")
    if psap_id is not None:
        own_psap_id(principal, psap_id)
    return ListQuery(
        states=query_states(request, states),
        psap_id=psap_id,
        since=query_instant(request, "since"),
        before=None if cursor is None else _unscoped(cursor, cursor_scope(name, principal)),
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
    "PAGING",
    "ListQuery",
    "check_names",
    "cursor_scope",
    "index_existing_ctx",
    "list_query",
    "query_id",
    "query_instant",
    "query_states",
    "scoped_cursor",
]
