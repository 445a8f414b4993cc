"""The app factory: every resource wired here, each owned by one cleanup context."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import __version__
from gateway.auth import KEYS_FILE, KeyRing
from gateway.metrics import Metrics
from gateway.scripts import Scripts
from gateway.settings import Settings
from gateway.store import TransferStore
from gateway.tasks import TaskSet
from gateway.timers import TimerQueue, TimerWorker
from gateway.web import health, openapi
from gateway.web.appkeys import (
    KEYRING,
    METRICS,
    READY_CHECKS,
    REDIS,
    SETTINGS,
    STORE,
    TASKS,
    TIMER_HANDLERS,
    TIMERS,
)
from gateway.web.middlewares import auth_middleware, error_middleware, request_id_middleware
from gateway.web.routes import Route, add_routes

log = logging.getLogger(__name__)


def redis_client(settings: Settings) -> Redis:
    if settings.redis_url is None:
        raise ValueError("GATEWAY_REDIS_URL is not set (serve starts an embedded Redis)")
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_socket_timeout_s,
        health_check_interval=30,
    )


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = redis_client(settings)
    scripts = Scripts.register(redis)
    app[REDIS] = redis
    app[STORE] = TransferStore(
        redis, scripts, retention_s=settings.retention_s, audit_maxlen=settings.audit_maxlen
    )
    app[TIMERS] = TimerQueue(redis, scripts)

    async def redis_ready() -> bool:
        return bool(await redis.ping())

    app[READY_CHECKS]["redis"] = redis_ready
    yield
    await redis.aclose()


async def _tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    app[TASKS] = TaskSet()
    yield
    await app[TASKS].drain()


async def _timer_worker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    worker = TimerWorker(
        app[TIMERS],
        app[TIMER_HANDLERS],
        poll_s=settings.timer_poll_s,
        lease_s=settings.timer_lease_s,
    )
    task = app[TASKS].spawn(worker.run(), name="timer-worker")
    yield
    task.cancel()


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
    except RedisError:
        metrics.redis_errors.inc()
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[
            request_id_middleware,
            metrics_middleware,
            error_middleware,
            auth_middleware,
        ],
        client_max_size=256 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[KEYRING] = KeyRing(settings.config_dir / KEYS_FILE)
    app[READY_CHECKS] = {}
    app[TIMER_HANDLERS] = {}
    # Cleanup runs in reverse: the timer worker stops, tracked tasks drain, then Redis closes.
    app.cleanup_ctx.extend([_redis_ctx, _tasks_ctx, _timer_worker_ctx])

    routes: list[Route] = [
        Route("GET", "/healthz", health.healthz, "Liveness", "operations"),
        Route("GET", "/readyz", health.readyz, "Readiness: Redis and policy", "operations"),
        Route("GET", "/metrics", metrics_view, "Prometheus metrics", "operations"),
    ]
    document = openapi.build(
        routes, title="911 ⇄ 988 Interoperability Gateway", version=__version__
    )
    routes.append(
        Route("GET", "/openapi.json", openapi.view(document), "This document", "operations")
    )
    add_routes(app, routes)
    return app
