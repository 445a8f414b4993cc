"""``GET /v1/events``: the live event stream, as Server-Sent Events (DESIGN.md §9).

``text/event-stream`` (``aiohttp-sse``). Each event is one SSE message — no ``event:`` name:
dispatch on ``data.type`` — with ``id:`` the stream entry id (``<ms>-<seq>``, increasing) and
``data:`` JSON ``{"type", "at", "transfer_id" | "handback_id", "psap_id", "state", …}``
(``gateway.events.entries``). What a key sees: admin everything; psap its own PSAP's transfers
and handbacks; crisis_center the transfers whose chain names its destinations and its own
handbacks; every key ``policy.changed``. A comment line (``: ping``) is written every
``GATEWAY_EVENTS_HEARTBEAT_S`` (15 s).

Resuming: ``Last-Event-ID`` (or ``?last_event_id=`` for EventSource polyfills that cannot set
headers) replays exactly the events after that id, then the live ones. An id older than what is
kept (two hours), or one the stream never issued (ahead of its newest), cannot be replayed, and
a status can no longer be given once the stream is open, so the stream starts with one
``stream.reset`` message (no ``id:``) and continues live: the client refetches state with
``GET /v1/transfers`` / ``GET /v1/handbacks``.

Lines end with LF (``LINE_END``). Whatever ``Accept`` says, the answer is the stream: it has
one representation, and its ``Content-Type`` says which.

Errors before the stream opens are the usual JSON: 400 for an ``id`` that is not an event id
(each part at most 2^64 - 1), 401 without a key, 503 while Redis cannot be read, and 429 with
``Retry-After`` past ``GATEWAY_EVENTS_MAX_STREAMS`` open streams on the process or
``GATEWAY_EVENTS_MAX_STREAMS_PER_KEY`` for one key. A stream whose key is revoked ends within
``KEY_CHECK_S``. Shutdown ends every stream cleanly (the client reconnects elsewhere with its
``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from gateway.core.auth import Role, bearer_token
from gateway.core.errors import BadRequest, Unavailable
from gateway.core.logs import request_id_var
from gateway.core.redis_client import connect
from gateway.events.entries import Event, EventType, parse_id
from gateway.events.hub import EventHub, StreamsFull, Subscription
from gateway.web.appkeys import KEYRING, REDIS, SETTINGS, TASKS
from gateway.web.middlewares import error_response, principal_of
from gateway.web.routes import Route

log = logging.getLogger(__name__)

HUB = web.AppKey("event_hub", EventHub)
RETRY_AFTER_S = 5
"""``Retry-After`` of a 429 for too many open streams."""
READY_WAIT_S = 5.0
"""How long a new stream waits for this process's reader to have found the stream's end."""
KEY_CHECK_S = 2.0
"""How often an open stream checks that its key still authenticates (a revoked key gets
401 on every process within 5 s, DESIGN.md §9; its open streams end as soon)."""
PING_EARLY = 0.9
"""The ``: ping`` comment is written at this fraction of ``GATEWAY_EVENTS_HEARTBEAT_S``: the
gap a client measures (the interval, plus scheduling and the network) stays within the
setting, as DESIGN.md §9 asks ("at least every 15 s")."""
LINE_END = "\n"
"""Every SSE line ends with a bare LF (as the HTML spec's examples do), not aiohttp-sse's
default CRLF: EventSource takes either, but integrators' own readers often split messages on
a blank line ``\n\n`` and would never see one between CRLF lines."""
GONE_CHECK_S = 1.0
"""How often an open stream checks that its client is still connected: a client that left
stops counting against ``GATEWAY_EVENTS_MAX_STREAMS_PER_KEY`` within this, not only when
the next heartbeat fails to be written (up to 15 s later), so a console that reconnects a few
times in a row is not refused 429."""
KEY_CHECK = web.RequestKey[Callable[[], bool]]("event_stream_key_check")
"""Set by a caller that authenticated the stream otherwise than with a bearer key (a console
session, ``gateway.console``): how the open stream checks that its key still stands. Without
it the ``Authorization`` header is checked again."""
BLOCK_MS = 5000
"""One blocking read of the events stream; the reader's socket timeout is this plus the usual
one."""


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """The process's one reader of the events stream, on its own connection (a blocking read
    must not hold one of the shared pool's)."""
    settings = app[SETTINGS]
    assert settings.redis_url is not None  # the Redis context refused to start without one
    reader = connect(
        settings.redis_url,
        socket_timeout_s=BLOCK_MS / 1000 + settings.redis_socket_timeout_s,
        max_connections=2,
    )
    hub = EventHub(
        reader,
        app[REDIS],
        max_streams=settings.events_max_streams,
        max_per_key=settings.events_max_streams_per_key,
        block_ms=BLOCK_MS,
    )
    app[HUB] = hub
    task = app[TASKS].spawn(hub.run(), name="event-reader")
    yield
    hub.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await reader.aclose()


async def _end_streams(app: web.Application) -> None:
    """On shutdown (before aiohttp waits for open requests): end every open stream."""
    if HUB in app:
        app[HUB].stop()


def setup(app: web.Application) -> None:
    """Wire the reader and the shutdown hook (after the Redis context: it needs ``REDIS``)."""
    app.cleanup_ctx.append(events_ctx)
    app.on_shutdown.append(_end_streams)


def _last_event_id(request: web.Request) -> str | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if not raw:
        return None
    value = raw.strip()
    if parse_id(value) is None:
        raise BadRequest(
            "Last-Event-ID is not an event id",
            [{"field": "Last-Event-ID", "example": "1764470000000-0"}],
        )
    return value


async def stream_events(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    last_event_id = _last_event_id(request)
    hub = request.app[HUB]
    if not hub.ready.is_set():
        try:
            async with asyncio.timeout(READY_WAIT_S):
                await hub.ready.wait()
        except TimeoutError:
            raise Unavailable("the event stream cannot be read now; try again") from None
    # An id this stream never issued (ahead of its newest) is answered like one too old to
    # replay: a ``stream.reset``, then every live event (not only those past that id).
    # One XINFO serves both checks: never issued (here) and trimmed away (``replay``).
    info = await hub.stream_info() if last_event_id is not None else None
    ahead = last_event_id is not None and not await hub.issued(last_event_id, info)
    after = (0, 0) if ahead else parse_id(last_event_id or "") or (0, 0)
    try:
        sub = hub.subscribe(principal, after)
    except StreamsFull as exc:
        response = error_response(
            429,
            "rate_limited",
            f"too many open event streams for this {exc.scope} (at most {exc.limit})",
            [{"scope": exc.scope, "limit": exc.limit}],
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    try:
        # What was missed is read before the stream opens: a Redis error is still a 503.
        missed: list[Event] | None = []
        if ahead:
            missed = None
        elif last_event_id is not None:
            missed = await hub.replay(sub, last_event_id, info)
        settings = request.app[SETTINGS]
        async with sse_response(
            request,
            ping_interval=settings.events_heartbeat_s * PING_EARLY,
            headers={"X-Request-Id": request_id_var.get()},
            sep=LINE_END,
        ) as stream:
            await _serve(
                stream,
                sub,
                missed,
                last_event_id,
                lambda: _key_valid(request),
                ahead=ahead,
                connected=lambda: _connected(request),
            )
        return stream
    finally:
        hub.unsubscribe(sub)


def _connected(request: web.Request) -> bool:
    """Whether the client's connection is still open (it closes as the client leaves)."""
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _key_valid(request: web.Request) -> bool:
    """Whether the stream's key still authenticates (a revoked key's stream is ended)."""
    check = request.get(KEY_CHECK)
    if check is not None:
        return bool(check())
    token = bearer_token(request.headers.get("Authorization"))
    return request.app[KEYRING].authenticate(token) == principal_of(request)


async def _serve(
    stream: EventSourceResponse,
    sub: Subscription,
    missed: list[Event] | None,
    last_event_id: str | None,
    key_valid: Callable[[], bool],
    *,
    ahead: bool = False,
    connected: Callable[[], bool] = lambda: True,
) -> None:
    """Write what was missed, then live events until the client leaves (``connected``, checked
    every ``GONE_CHECK_S``), the stream falls behind, its key is revoked (checked every
    ``KEY_CHECK_S``), or the process shuts down."""
    watcher = asyncio.create_task(_close_when_gone(stream, sub), name="event-stream-watch")
    try:
        if missed is None:
            reset = {
                "type": str(EventType.STREAM_RESET),
                "at": datetime.now(UTC).isoformat(),
                "last_event_id": last_event_id,
                "reason": (
                    "this id was never issued by this stream; refetch state"
                    if ahead
                    else "events after this id are no longer kept; refetch state"
                ),
            }
            await stream.send(json.dumps(reset, separators=(",", ":")))
        for event in missed or ():
            await stream.send(event.sse(), id=event.id)
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while True:
            try:
                async with asyncio.timeout(GONE_CHECK_S):  # only the wait, never a write
                    live = await sub.queue.get()
            except TimeoutError:
                pass
            else:
                if live is None:
                    break
                await stream.send(live.sse(), id=live.id)
            if not connected():
                log.info("event stream client gone")
                break
            if loop.time() - checked >= KEY_CHECK_S:
                if not key_valid():
                    log.info("event stream closed: its key was revoked")
                    break
                checked = loop.time()
    except (ConnectionResetError, TimeoutError):
        log.info("event stream client gone")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if sub.overflowed:
        log.warning("event stream closed: the client fell behind")


async def _close_when_gone(stream: EventSourceResponse, sub: Subscription) -> None:
    """The heartbeat stops when a write fails (the client left): end the stream then."""
    await stream.wait()
    sub.close()


ALL_ROLES = (Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN)

ROUTES = [
    Route(
        "GET",
        "/v1/events",
        stream_events,
        "Live events as Server-Sent Events (text/event-stream): transfer.created, "
        "transfer.state, handback.created, handback.state, handback.flag, handback.contact, "
        "policy.changed; resumable with Last-Event-ID; 429 with Retry-After past the open "
        "stream bounds",
        "events",
        roles=ALL_ROLES,
        media_type="text/event-stream",
        query=(
            (
                "last_event_id",
                "Same as the Last-Event-ID header, for clients that cannot set headers",
            ),
        ),
        headers=(
            (
                "Last-Event-ID",
                "The id: of the last event received (<ms>-<seq>): every later event the key "
                "may see is sent first (kept two hours), then live ones. An id older than that "
                "or never issued starts the stream with one stream.reset message (no id:): "
                "refetch state with the list endpoints. Not an event id: 400",
            ),
        ),
    )
]
