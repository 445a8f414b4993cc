"""One way to reach Redis, whatever the deployment: a single server or a Sentinel-managed set.

``redis://``, ``rediss://`` and ``unix://`` URLs go to one server. A Sentinel set is named as
``redis+sentinel://[:password@]host:port[,host:port…]/<service name>[/<db>]``: the client asks
the sentinels for the current primary and follows a failover by itself. Every key carries one
hash tag (``gateway.core.keys``), so the scripts also run unchanged on one Redis Cluster slot.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """(sentinel addresses, service name, db, password) of a ``redis+sentinel://`` URL."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    password = unquote(auth.partition(":")[2]) or None if auth else None
    addresses = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"sentinel address {host!r} is not host:port")
        addresses.append((name, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a redis+sentinel URL names its service: …/<service name>[/<db>]")
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    return addresses, path[0], db, password


RETRIES = 3
"""Times a command is sent again, each on a fresh connection, after a connection error."""


def retry_policy() -> Retry:
    """Retry on ``ConnectionError`` only, with short jittered backoff (50 ms doubling to 500 ms).

    After Redis restarts, every pooled connection opened before is dead; the first command on
    each fails once. Sent again on a fresh connection it succeeds, so no request fails once Redis
    answers. Only connection errors are retried: a command whose connection broke either never
    reached the server, or — a server dying mid-reply — is one of ours that is safe to repeat (the
    scripts carry a token, ``gateway.core.records.write_token``; reads and
    ``SET``/``HSET``/``SADD`` are
    idempotent). A timeout is not retried: the command may still be running.
    """
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), RETRIES, (RedisConnectionError,))


MAX_CONNECTIONS = 64
"""Connections one process keeps to Redis: more commands in flight than this wait their turn."""
POOL_WAIT_S = 5.0
"""How long a command waits for a free connection before it fails (503, not a crash)."""


def connect(
    url: str,
    *,
    socket_timeout_s: float,
    max_connections: int = MAX_CONNECTIONS,
    pool_wait_s: float = POOL_WAIT_S,
) -> Redis:
    """A client for ``url``; timeouts on every socket, never ``wait_for`` around a command.

    Its pool is bounded (``max_connections``) and blocking: past the bound a command waits up
    to ``pool_wait_s`` for a connection instead of failing at once — a burst queues, it does
    not fail."""
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        "retry": retry_policy(),
        "retry_on_error": [RedisConnectionError],
        "health_check_interval": 30,
    }
    if url.startswith(SENTINEL_SCHEME + "://"):
        addresses, service, db, password = parse_sentinel(url)
        timeouts = {"socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_timeout_s}
        sentinel = Sentinel(addresses, sentinel_kwargs=timeouts, **common)  # type: ignore[no-untyped-call]
        primary: Redis = sentinel.master_for(service, db=db, password=password)
        return primary
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_wait_s, **common
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
