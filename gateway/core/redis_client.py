"""One way to reach Redis, whatever the deployment: one server, a Sentinel set or a Cluster.

``redis://``, ``rediss://`` and ``unix://`` URLs go to one server. A Sentinel set is named as
``redis+sentinel://[:password@]host:port[,host:port…]/<service name>[/<db>]``: the client asks
the sentinels for the current primary and follows a failover by itself. A Redis Cluster is named
as ``redis+cluster://[:password@]host:port[,host:port…]`` (any of its nodes: the client learns
the rest). Every key carries one hash tag (``gateway.core.keys``), so on a cluster every script
and every pipeline touches one slot, on one shard (DESIGN.md §11; README "High availability").

Failover window. When a primary dies, Sentinel or the cluster promotes a replica within a few
seconds (``down-after-milliseconds`` / ``cluster-node-timeout`` plus an election). A client for a
Sentinel set or a cluster keeps sending a command through that window — on a connection error,
a timeout, a read-only replica, a cluster that is down or a slot not yet covered, a primary
refusing writes until its replica has synced (``NOREPLICAS``) — with jittered backoff for up to
``FAILOVER_WINDOW_S``, so a Twilio status callback that arrives during a promotion is applied
once the new primary answers, not answered 503 and lost. Every try that failed is reported
(``on_failover``): the gateway then reconciles with the provider, since the old primary may have
acknowledged writes it never replicated (README "High availability"). A single server has
no promotion to wait for: its client retries ``RETRIES`` times only, so an outage is reported
quickly (``gateway.core.outage`` then reconciles with the provider).

Sending again is safe: a command that never reached the old primary is simply sent; one whose
reply was lost is one of ours that is safe to repeat (every script that writes carries a token —
``gateway.core.records.write_token`` — and answers "already applied" when it sees it again; reads
and ``SET``/``HSET``/``SADD`` are idempotent).
"""

from __future__ import annotations

import time
from asyncio import sleep
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    MaxConnectionsError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME, CLUSTER_SCHEME)

T = TypeVar("T")


def _addresses(hosts: str, what: str) -> list[tuple[str, int]]:
    addresses = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"{what} address {host!r} is not host:port")
        addresses.append((name, int(port)))
    return addresses


def _password(auth: str) -> str | None:
    return unquote(auth.partition(":")[2]) or None if auth else None


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """(sentinel addresses, service name, db, password) of a ``redis+sentinel://`` URL.

    Raises ``ValueError`` when an address is not ``host:port`` or the service is not named."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    addresses = _addresses(hosts, "sentinel")
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a redis+sentinel URL names its service: …/<service name>[/<db>]")
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    return addresses, path[0], db, _password(auth)


def parse_cluster(url: str) -> tuple[list[tuple[str, int]], str | None]:
    """(node addresses, password) of a ``redis+cluster://`` URL.

    Raises ``ValueError`` when an address is not ``host:port`` or a database is named (a cluster
    has database 0 only)."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    addresses = _addresses(hosts, "cluster node")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only: redis+cluster://host:port[,…]")
    return addresses, _password(auth)


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` names a Redis deployment this client can reach
    (one of ``SCHEMES``, a well-formed Sentinel or Cluster address list)."""
    if not url.startswith(tuple(f"{scheme}://" for scheme in SCHEMES)):
        raise ValueError(
            "must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
        )
    if url.startswith(SENTINEL_SCHEME + "://"):
        parse_sentinel(url)
    elif url.startswith(CLUSTER_SCHEME + "://"):
        parse_cluster(url)


RETRIES = 3
"""Times a command to a single server is sent again, each on a fresh connection, after a
connection error."""

FAILOVER_WINDOW_S = 10.0
"""How long a client for a Sentinel set or a cluster keeps sending a command while a replica is
promoted (seconds). Sentinel's and the cluster's own detection (``down-after-milliseconds`` /
``cluster-node-timeout``, 5 s in ``docker-compose.ha.yml``) plus an election fit in it; it stays
under Twilio's 15 s webhook timeout, so a callback held through a promotion is still answered."""

FAILOVER_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    MasterDownError,
    ClusterDownError,
    SlotNotCoveredError,
    TryAgainError,
)
"""What a promotion looks like to a client: the old primary gone (connection refused, reset or
silent), a demoted primary refusing writes, a replica still loading or cut off from its primary,
a cluster without a primary for a slot yet. Also retried: a ``NOREPLICAS`` refusal (a primary
under ``min-replicas-to-write`` whose replica is still syncing from it after a promotion)."""


def _refused_for_want_of_replicas(error: BaseException) -> bool:
    return isinstance(error, ResponseError) and "NOREPLICAS" in str(error)


class FailoverRetry(Retry):
    """A ``Retry`` bounded by time, not by count: ``call_with_retry`` sends again, with jittered
    backoff (50 ms doubling to 500 ms), until ``window_s`` seconds have passed since the first
    try, then raises the last error. ``retries`` is only the count redis-py's cluster client uses
    for its own immediate, topology-refreshing tries inside each of ours."""

    def __init__(
        self,
        window_s: float = FAILOVER_WINDOW_S,
        retries: int = RETRIES,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        errors = cast(tuple[type[RedisError], ...], FAILOVER_ERRORS)  # one is not a RedisError
        super().__init__(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries, errors)
        self.window_s = window_s
        self.on_failure = on_failure
        """Told of every failed try (the error's class name): writes the old primary
        acknowledged may be lost, and callbacks with them (``gateway.core.outage``)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> FailoverRetry:
        """redis-py gives each connection a deep copy; the copies share ``on_failure``."""
        clone = FailoverRetry(self.window_s, self._retries, self.on_failure)
        clone.update_supported_errors(self._supported_errors)
        return clone

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        self._backoff.reset()  # type: ignore[no-untyped-call]
        started = time.monotonic()
        failures = 0
        caught: tuple[type[BaseException], ...] = (*self._supported_errors, ResponseError)
        while True:
            try:
                return await do()
            except caught as error:
                if not isinstance(error, self._supported_errors):
                    if not _refused_for_want_of_replicas(error):
                        raise
                elif is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if self.on_failure is not None and not isinstance(error, MaxConnectionsError):
                    self.on_failure(type(error).__name__)  # not a pool merely full
                await (fail(error, failures) if with_failure_count else fail(error))
                backoff = self._backoff.compute(failures)
                if time.monotonic() - started + backoff > self.window_s:
                    raise
                await sleep(backoff)


async def _nothing(_: Exception) -> None:
    return None


class FailoverCluster(RedisCluster):
    """redis-py's cluster client, holding each command through a cluster failover.

    redis-py retries a command a few times at once, refreshing the slot map each time; during a
    failover the map still names the dead primary until a replica is elected, so those tries
    fail within milliseconds. This client repeats that whole command under ``FailoverRetry``
    (backoff, bounded by time). Every pipeline is a transaction (MULTI/EXEC on the slot's
    primary, retried the same way): every key shares one hash tag, so every pipeline is one
    slot's, and a transaction is sent again as a whole — never half-applied."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        retry = self.retry

        async def once() -> Any:
            return await RedisCluster.execute_command(self, *args, **kwargs)

        return await retry.call_with_retry(once, _nothing)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise ValueError("a cluster pipeline takes no shard hint")
        return ClusterPipeline(self, transaction=True)  # type: ignore[abstract]


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the Sentinel set's primary that asks the sentinels where the primary is
    every time it (re)connects. redis-py's own reconnects a dropped connection to the address
    it had — the dead primary's — until the window runs out (redis/redis-py#3874, open)."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self.is_connected:
            return
        if retry_socket_connect:  # a reconnect (``send_packed_command``), not ``connect_to``
            await self.connect()  # type: ignore[no-untyped-call]  # asks the sentinels first
            return
        await super().connect_check_health(check_health, retry_socket_connect=False)


class SentinelPrimary(Redis):
    """The client for a Sentinel set's primary; closing it also closes its connections to the
    sentinels themselves (redis-py leaves those open)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            await sentinel.aclose()


def retry_policy() -> Retry:
    """For one server: retry on ``ConnectionError`` only, with short jittered backoff (50 ms
    doubling to 500 ms), ``RETRIES`` times.

    After Redis restarts, every pooled connection opened before is dead; the first command on
    each fails once. Sent again on a fresh connection it succeeds, so no request fails once Redis
    answers. A timeout is not retried: a single server that stops answering is an outage to
    report quickly (503), not a promotion to wait for."""
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), RETRIES, (RedisConnectionError,))


MAX_CONNECTIONS = 64
"""Connections one process keeps to Redis (per node on a cluster): more commands in flight than
this wait their turn."""
POOL_WAIT_S = 5.0
"""How long a command waits for a free connection before it fails (503, not a crash)."""


def connect(
    url: str,
    *,
    socket_timeout_s: float,
    max_connections: int = MAX_CONNECTIONS,
    pool_wait_s: float = POOL_WAIT_S,
    failover_window_s: float = FAILOVER_WINDOW_S,
    on_failover: Callable[[str], None] | None = None,
) -> Redis:
    """A client for ``url``; timeouts on every socket, never ``wait_for`` around a command.

    One server: its pool is bounded (``max_connections``) and blocking — past the bound a command
    waits up to ``pool_wait_s`` for a connection instead of failing at once. A Sentinel set or a
    cluster: commands are held through a promotion for up to ``failover_window_s`` (see the
    module's docstring); on a cluster, past ``max_connections`` to one node a command is held the
    same way, and ``on_failover`` is told of every try that failed (the error's class name). A
    cluster client is typed as ``Redis``: the gateway uses only commands both offer.
    Raises ``ValueError`` for a malformed URL."""
    check_url(url)
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
    }
    if url.startswith(CLUSTER_SCHEME + "://"):
        nodes, password = parse_cluster(url)
        cluster = FailoverCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            password=password,
            retry=FailoverRetry(failover_window_s, on_failure=on_failover),
            max_connections=max_connections,
            health_check_interval=30,
            **timeouts,
        )
        return cast(Redis, cluster)
    if url.startswith(SENTINEL_SCHEME + "://"):
        addresses, service, db, password = parse_sentinel(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            addresses,
            sentinel_kwargs=dict(timeouts),
            retry=FailoverRetry(failover_window_s, on_failure=on_failover),
            retry_on_error=list(FAILOVER_ERRORS),
            health_check_interval=30,
            **timeouts,
        )
        primary: Redis = sentinel.master_for(
            service,
            redis_class=SentinelPrimary,
            db=db,
            password=password,
            connection_class=PrimaryConnection,
        )
        return primary
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        retry=retry_policy(),
        retry_on_error=[RedisConnectionError],
        health_check_interval=30,
        **timeouts,
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
