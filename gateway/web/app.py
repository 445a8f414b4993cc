"""The app factory: every resource wired here, each owned by one cleanup context."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import __version__
from gateway.core.admission import Admission
from gateway.core.auth import KEYS_FILE, KeyRing, RevocationFeed
from gateway.core.errors import Unavailable
from gateway.core.legs import Dialer
from gateway.core.metrics import Metrics
from gateway.core.outage import OutageWatch
from gateway.core.redis_client import connect
from gateway.core.settings import Settings
from gateway.core.tasks import TaskSet
from gateway.core.timers import TimerQueue, TimerWorker
from gateway.handback import HandbackService, HandbackStore
from gateway.policy.service import PolicyService
from gateway.transfer.dispositions import DispositionService
from gateway.transfer.service import (
    ANNOUNCE_TIMER,
    DIAL_TIMER,
    EXPIRY_TIMER,
    LIVENESS_TIMER,
    RING_TIMER,
    TransferService,
)
from gateway.transfer.store import TransferStore
from gateway.web import events as event_views
from gateway.web import handbacks as handback_views
from gateway.web import health, openapi
from gateway.web import lists as list_views
from gateway.web import reports as report_views
from gateway.web import routing as routing_views
from gateway.web import transfers as transfer_views
from gateway.web import twilio as twilio_views
from gateway.web.admission import admission_middleware
from gateway.web.appkeys import (
    ADMISSION,
    DISPOSITIONS,
    HANDBACKS,
    KEYRING,
    METRICS,
    OUTAGES,
    POLICY,
    READY_CHECKS,
    REDIS,
    SETTINGS,
    STORE,
    TASKS,
    TIMER_HANDLERS,
    TIMERS,
    TRANSFERS,
)
from gateway.web.middlewares import auth_middleware, error_middleware, request_id_middleware
from gateway.web.routes import Route, add_routes
from gateway.web.webhooks import WEBHOOKS

log = logging.getLogger(__name__)


def redis_client(settings: Settings, on_failover: Callable[[str], None] | None = None) -> Redis:
    """``on_failover``: told when a Sentinel or Cluster command had to be sent again."""
    if settings.redis_url is None:
        raise ValueError("GATEWAY_REDIS_URL is not set (serve starts an embedded Redis)")
    return connect(
        settings.redis_url,
        socket_timeout_s=settings.redis_socket_timeout_s,
        max_connections=settings.redis_max_connections,
        on_failover=on_failover,
    )


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A failover may lose writes the old primary acknowledged: reconcile after one.
    redis = redis_client(settings, on_failover=app[OUTAGES].note)
    app[REDIS] = redis
    app[STORE] = TransferStore(
        redis, retention_s=settings.retention_s, audit_maxlen=settings.audit_maxlen
    )
    app[TIMERS] = TimerQueue(redis)

    async def redis_ready() -> bool:
        return bool(await redis.ping())

    app[READY_CHECKS]["redis"] = redis_ready
    yield
    await redis.aclose()


async def _policy_ctx(app: web.Application) -> AsyncIterator[None]:
    policy = PolicyService(app[REDIS], app[SETTINGS].config_dir, app[STORE].destination_load)
    app[POLICY] = policy
    try:
        await policy.current()  # seeds version 1 from config/ when Redis has none
    except (RedisError, Unavailable) as exc:
        # Start anyway (Redis down, or no version yet and invalid config files): readiness says
        # so, decisions answer 503, and /twilio/fallback works from the files or last_known().
        log.error("policy not loaded at start", extra={"error": type(exc).__name__})

    async def policy_ready() -> bool:
        await policy.current()
        return True

    app[READY_CHECKS]["policy"] = policy_ready
    yield


async def _transfers_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    from adapters.notify_http import HttpNotifier
    from adapters.twilio_rest import TwilioTelephony

    telephony = TwilioTelephony(
        settings.twilio_account_sid or "",
        settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else "",
        base_url=str(settings.twilio_api_base_url),
        timeout_s=settings.twilio_timeout_s,
    )
    notifier = HttpNotifier(timeout_s=settings.notice_timeout_s)
    dialer = Dialer(
        app[REDIS],
        telephony,
        request_timeout_s=settings.twilio_timeout_s,
        retention_s=settings.retention_s,
    )
    service = TransferService(
        store=app[STORE],
        policy=app[POLICY],
        telephony=telephony,
        notifier=notifier,
        tasks=app[TASKS],
        settings=settings,
        metrics=app[METRICS],
        timers=app[TIMERS],
        dialer=dialer,
    )
    app[TRANSFERS] = service
    app[TIMER_HANDLERS][RING_TIMER] = service.on_ring_timer
    app[TIMER_HANDLERS][LIVENESS_TIMER] = service.on_liveness_timer
    app[TIMER_HANDLERS][DIAL_TIMER] = service.on_dial_timer
    app[TIMER_HANDLERS][EXPIRY_TIMER] = service.on_expiry_timer
    app[TIMER_HANDLERS][ANNOUNCE_TIMER] = service.on_announce_timer
    yield
    await telephony.aclose()
    await notifier.aclose()


async def _handbacks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Handbacks 988 → 911 and dispositions: the CAD adapter is theirs; the telephony and the
    notifier are the transfer service's (closed by its context, after this one)."""
    settings = app[SETTINGS]
    from adapters.cad_http import HttpCadSink

    cad = HttpCadSink(timeout_s=settings.cad_timeout_s)
    transfers = app[TRANSFERS]
    service = HandbackService(
        store=HandbackStore(
            app[REDIS], retention_s=settings.retention_s, audit_maxlen=settings.audit_maxlen
        ),
        transfers=app[STORE],
        policy=app[POLICY],
        telephony=transfers.telephony,
        dialer=transfers.dialer,
        notifier=transfers.notifier,
        cad=cad,
        timers=app[TIMERS],
        tasks=app[TASKS],
        settings=settings,
        metrics=app[METRICS],
    )
    app[HANDBACKS] = service
    app[DISPOSITIONS] = DispositionService(app[STORE], app[POLICY], app[METRICS])
    app[TIMER_HANDLERS].update(service.timer_handlers())
    yield
    await cad.aclose()


async def _drain_ctx(app: web.Application) -> AsyncIterator[None]:
    """Listed after every context that owns an adapter, so at shutdown the tracked tasks
    (dials, cancels, notices) finish before any client they use is closed."""
    yield
    await app[TASKS].drain()


async def _timer_worker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    worker = TimerWorker(
        app[TIMERS],
        app[TIMER_HANDLERS],
        poll_s=settings.timer_poll_s,
        lease_s=settings.timer_lease_s,
        on_redis_error=app[OUTAGES].note,
    )
    app[TASKS].spawn(worker.run(), name="timer-worker")
    yield
    worker.stop()  # finishes the timer in hand; the drain that follows waits for it


# --- API key revocation (gateway.core.auth) ---
async def _revocations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Revoked key ids published in Redis, re-read every second (read once before serving).
    Last in the list, so it stops before the task set drains."""
    feed = RevocationFeed(app[KEYRING], app[REDIS])
    await feed.refresh()
    app[TASKS].spawn(feed.run(), name="revocations")
    yield
    feed.stop()


# --- end API key revocation ---


async def _reconcile_ctx(app: web.Application) -> AsyncIterator[None]:
    """After Redis was unreachable (and once at start), ask the provider about live handbacks
    and transfers (handbacks first: a transfer completed here leaves their index)."""
    watch = app[OUTAGES]
    checks = {"handbacks": app[HANDBACKS].reconcile, "transfers": app[TRANSFERS].reconcile}
    app[TASKS].spawn(watch.run(app[REDIS], checks), name="reconcile")
    yield
    watch.stop()


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        metrics = request.app[METRICS]
        metrics.http_latency.labels(request.method, route, str(status)).observe(
            time.perf_counter() - started
        )


async def metrics_view(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    try:
        metrics.timer_lag.set(await request.app[TIMERS].lag_s())
        metrics.outbox_depth.set(await request.app[HANDBACKS].store.outbox_depth())
    except RedisError:
        metrics.redis_errors.inc()
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[
            request_id_middleware,
            admission_middleware,
            metrics_middleware,
            error_middleware,
            auth_middleware,
            twilio_views.twilio_signature_middleware,
        ],
        client_max_size=256 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[KEYRING] = KeyRing(settings.config_dir / KEYS_FILE)
    app[READY_CHECKS] = {}
    app[TIMER_HANDLERS] = {}
    app[TASKS] = TaskSet()
    # Cleanup runs in reverse: the timer worker stops, tracked tasks drain, adapters close,
    # and Redis closes last.
    app[OUTAGES] = OutageWatch(retry_s=settings.timer_poll_s * 4)
    app[ADMISSION] = Admission(settings.max_in_flight, settings.admission_wait_s)
    app.cleanup_ctx.extend(
        [
            _redis_ctx,
            _policy_ctx,
            _transfers_ctx,
            _handbacks_ctx,
            _drain_ctx,
            _timer_worker_ctx,
            _reconcile_ctx,
            _revocations_ctx,
        ]
    )
    # Lists (DESIGN.md §9): records made before their indexes existed are entered once.
    app.cleanup_ctx.append(list_views.index_existing_ctx)

    event_views.setup(app)  # live events: the stream's reader (after Redis), shutdown hook

    routes: list[Route] = [
        Route("GET", "/healthz", health.healthz, "Liveness", "operations"),
        Route("GET", "/readyz", health.readyz, "Readiness: Redis and policy", "operations"),
        Route("GET", "/metrics", metrics_view, "Prometheus metrics", "operations"),
        *routing_views.ROUTES,
        *transfer_views.ROUTES,
        *report_views.ROUTES,
        *handback_views.ROUTES,
        *twilio_views.ROUTES,
        *event_views.ROUTES,
    ]
    routes.append(
        Route(
            "GET",
            "/openapi.json",
            openapi.view(
                routes,
                title="911 ⇄ 988 Interoperability Gateway",
                version=__version__,
                webhooks=WEBHOOKS,
            ),
            "This document",
            "operations",
        )
    )
    add_routes(app, routes)

    # ---- web consoles at /console/ (DESIGN.md §10): pages over the services above ----
    from gateway import console

    console.setup(app)
    return app


GC_THRESHOLDS = (50_000, 20, 100)
"""The garbage collector's thresholds in a serving process (Python's defaults: 700, 10, 10)."""


async def _frozen_heap_ctx(app: web.Application) -> AsyncIterator[None]:
    """Once every resource is up, move what the process holds so far (its modules, schemas,
    clients) out of the garbage collector's reach: a full collection then walks only what
    requests made since — milliseconds, not the tens of milliseconds that showed up as p99
    spikes under load."""
    gc.collect()
    gc.freeze()
    # Fewer, larger young collections: most of what a request allocates dies with it, so
    # collecting every 700 allocations only promotes it to be walked again later.
    gc.set_threshold(*GC_THRESHOLDS)
    yield


def serving_app(settings: Settings) -> web.Application:
    """``create_app`` as a long-running server runs it: its startup heap frozen out of the
    garbage collector's full passes (``_frozen_heap_ctx``). Tests build many apps in one
    process and use ``create_app``, which freezes nothing."""
    app = create_app(settings)
    app.cleanup_ctx.append(_frozen_heap_ctx)
    return app
