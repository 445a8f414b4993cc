"""What every command shares: settings from the environment, and the Redis to use."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from collections.abc import Iterator

from pydantic import ValidationError

from gateway.core.errors import validation_details
from gateway.core.settings import Settings

log = logging.getLogger("gateway")


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  GATEWAY_{d['path'].split('.')[0].upper()}: {d['message']}"
            if d["path"] != "$"
            else f"  {d['message'].removeprefix('Value error, ')}"
            for d in validation_details(exc)
        ]
        print("invalid settings:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[Settings]:
    """``settings`` with a Redis URL: the configured one, or an embedded server's."""
    if settings.redis_url:
        yield settings
        return
    from adapters.redis_server import embedded_redis

    with embedded_redis(settings.state_dir / "redis") as server:
        log.info("embedded redis started", extra={"data_dir": str(server.data_dir)})
        yield settings.model_copy(update={"redis_url": server.url})


def running_redis_url(settings: Settings) -> str:
    """GATEWAY_REDIS_URL, else the socket of the embedded Redis a local ``serve`` is running."""
    if settings.redis_url:
        return settings.redis_url
    socket = (settings.state_dir / "redis" / "redis.sock").resolve()
    if socket.exists():
        return f"unix://{socket}"
    raise SystemExit(
        "no Redis to read: set GATEWAY_REDIS_URL, or start the gateway (make run) first"
    )


def uvloop_available() -> bool:
    """Whether uvloop (a drop-in event loop on libuv, about twice the throughput of the default
    one for a server like this) can run here."""
    return importlib.util.find_spec("uvloop") is not None


def install_uvloop() -> None:
    """Serve on uvloop when it is installed (a dependency where it builds); else on asyncio's."""
    if uvloop_available():
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
