"""``serve --workers N``: N processes on one port, kept by gunicorn with aiohttp's own worker.

The parent is gunicorn's arbiter: it binds ``GATEWAY_HOST:GATEWAY_PORT`` once and forks N
workers that accept on that one socket. Each worker builds its own app with ``serving_app`` (its
own Redis client, timer worker and tracked tasks); all of them share state through Redis. A
worker that dies is replaced; one whose event loop stops beating for ``WORKER_TIMEOUT_S`` is
killed and replaced.

SIGTERM (or SIGINT) to the parent: the listening socket closes, every worker is told to stop, and
each runs its app's cleanup — requests in flight get ``REQUEST_GRACE_S``, then the timer worker
stops, tracked tasks drain and clients close. A worker still running ``GRACEFUL_TIMEOUT_S`` after
the signal is killed. Then ``run`` returns 0, and the caller stops what it started for the
workers (the embedded Redis, the sandbox).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from gateway.cli.common import uvloop_available
from gateway.core.logs import RequestIdAccessLogger, configure_logging
from gateway.core.settings import Settings
from gateway.web import serving_app

GRACEFUL_TIMEOUT_S = 30
"""From the stop signal to SIGKILL for a worker that has not finished its cleanup."""
REQUEST_GRACE_S = 15.0
"""Requests in flight at a stop get this long (Twilio itself gives up on a webhook after 15 s);
the tracked tasks' drain (at most 10 s) and the clients' close follow, within the graceful
timeout."""
WORKER_TIMEOUT_S = 30
"""aiohttp's worker beats once a second from its event loop; silent this long, it is stuck."""
KEEPALIVE_S = 75.0
"""Idle keep-alive connections, as ``web.run_app`` keeps them for one process."""


class GatewayLogger(Logger):  # type: ignore[misc]
    """gunicorn's own messages (boots, signals, a worker that died) go to the root logger, so
    they pass the gateway's redacting JSON handler like every other record."""

    def setup(self, cfg: Any) -> None:
        self.cfg = cfg
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
        self.error_log.setLevel(self.LOG_LEVELS.get(cfg.loglevel.lower(), logging.INFO))


def _post_fork(arbiter: Any, worker: Any) -> None:
    """In each new worker: logging set up afresh, the same as one ``serve`` process has it."""
    configure_logging(worker.cfg.loglevel.upper())


class GatewayServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's programmatic entry: its settings from ours, and each worker's app runner."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        super().__init__(prog="python -m gateway serve")

    def load_config(self) -> None:
        host = self.settings.host
        options: dict[str, Any] = {
            "bind": [
                f"[{host}]:{self.settings.port}" if ":" in host else f"{host}:{self.settings.port}"
            ],
            "workers": self.workers,
            "worker_class": (
                "aiohttp.GunicornUVLoopWebWorker"
                if uvloop_available()
                else "aiohttp.GunicornWebWorker"
            ),
            "timeout": WORKER_TIMEOUT_S,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "logger_class": GatewayLogger,
            "loglevel": self.settings.log_level.lower(),
            "post_fork": _post_fork,
            "proc_name": "gateway",
            # No unix control socket (gunicornc) in $HOME or $XDG_RUNTIME_DIR: signals suffice.
            "control_socket_disable": True,
        }
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> Callable[[], Awaitable[web.AppRunner]]:
        """Called in each worker: aiohttp's worker awaits this for the runner it serves."""
        settings = self.settings

        async def runner() -> web.AppRunner:
            return web.AppRunner(
                serving_app(settings),
                access_log_class=RequestIdAccessLogger,
                keepalive_timeout=KEEPALIVE_S,
                shutdown_timeout=REQUEST_GRACE_S,
            )

        return runner


def run(settings: Settings, workers: int) -> int:
    """Serve with ``workers`` processes until SIGTERM or SIGINT; the parent's exit status."""
    parent = os.getpid()
    try:
        GatewayServer(settings, workers).run()
        status = 0
    except SystemExit as exc:  # gunicorn ends the arbiter, and each worker, with sys.exit
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        if os.getpid() != parent:
            os._exit(1)
        raise
    if os.getpid() != parent:
        # A worker is leaving. gunicorn forked it inside run(), so unwinding further would run
        # the parent's cleanup (stop the embedded Redis, the sandbox) in the worker: end here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status
