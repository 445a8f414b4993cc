"""Real highly-available Redis deployments on loopback ports, for the HA tests.

``SentinelSet``: a primary, one replica and three sentinels (quorum 2). ``ClusterSet``: a Redis
Cluster of three primaries, each with one replica (``redis-cli --cluster create``). Every process
is a real ``redis-server`` started here and stopped by ``stop()``; ``kill`` crashes one (SIGKILL).
Both need ``redis-server`` and ``redis-cli`` on PATH (``require_binaries`` skips otherwise).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from gateway.web.appkeys import OUTAGES
from tests.telephony import free_port

SERVICE = "gw"
DOWN_AFTER_MS = 1000
"""Sentinel's ``down-after-milliseconds`` and the cluster's ``cluster-node-timeout`` here: a
primary is judged dead after one second (production: 5 s, ``docker-compose.ha.yml``)."""


def require_binaries() -> tuple[str, str]:
    """``(redis-server, redis-cli)`` from PATH, or skip the test with a message."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("HA tests need redis-server and redis-cli on PATH (apt install redis-server)")
    return server, cli


def wait_until(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            if check():
                return
        except (RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s} s")
        time.sleep(0.05)


def client(port: int) -> SyncRedis:
    return SyncRedis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)


def ask(port: int, *command: Any) -> Any:
    with client(port) as c:
        return c.execute_command(*command)


class Processes:
    """Real redis-server processes (servers or sentinels) on loopback ports, stopped together."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server, self.cli = require_binaries()
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start_server(self, port: int, *args: str) -> None:
        directory = self.data_dir / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [self.server, *args, "--dir", str(directory), "--logfile",
             str(directory / "redis.log"), "--loglevel", "warning"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: bool(ask(port, "PING")), 10, f"redis on {port} answering")

    def kill(self, port: int) -> None:
        """Crash the server on ``port`` (SIGKILL: no shutdown, nothing flushed)."""
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


class SentinelSet(Processes):
    """A primary, a replica and three sentinels monitoring them as ``gw`` (quorum 2)."""

    def start(self) -> None:
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]
        base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.start_server(self.primary, "--port", str(self.primary), *base)
        self.start_server(
            self.replica, "--port", str(self.replica), *base,
            "--replicaof", "127.0.0.1", str(self.primary),
        )  # fmt: skip
        wait_until(
            lambda: ask(self.replica, "INFO", "replication")["master_link_status"] == "up",
            10,
            "replica in sync",
        )
        for port in self.sentinels:
            conf = self.data_dir / f"sentinel-{port}.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.start_server(port, str(conf), "--sentinel")
        for port in self.sentinels:  # each knows the replica and the two other sentinels
            wait_until(
                lambda p=port: (  # type: ignore[misc]
                    len(ask(p, "SENTINEL", "REPLICAS", SERVICE)) == 1
                    and len(ask(p, "SENTINEL", "SENTINELS", SERVICE)) == 2
                ),
                15,
                "sentinels acquainted",
            )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def current_primary(self) -> int:
        """The port the sentinels name as primary now."""
        _, port = ask(self.sentinels[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)


class ClusterSet(Processes):
    """Three primaries and three replicas in one Redis Cluster."""

    def start(self, nodes: int = 6) -> None:
        self.ports = [free_port() for _ in range(nodes)]
        for port in self.ports:
            self.start_server(
                port, "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-port", str(free_port()), "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(DOWN_AFTER_MS), "--save", "", "--appendonly", "no",
            )  # fmt: skip
        created = subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout.decode()[-2000:]
        for port in self.ports:
            wait_until(
                lambda p=port: "cluster_state:ok" in ask(p, "CLUSTER", "INFO"),  # type: ignore[misc]
                30,
                "cluster ok",
            )
        wait_until(lambda: len(self.replicas_of(self.owner())) == 1, 30, "replica attached")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def live(self) -> int:
        return next(iter(self.processes))

    def owner(self, tag: str = "gw") -> int:
        """The port of the primary serving the slot of hash tag ``tag`` now."""
        slot = int(ask(self.live(), "CLUSTER", "KEYSLOT", tag))
        for start, end, primary, *_ in ask(self.live(), "CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
        raise AssertionError(f"slot {slot} not served")

    def replicas_of(self, primary: int) -> list[int]:
        slot = int(ask(self.live(), "CLUSTER", "KEYSLOT", "gw"))
        for start, end, _, *replicas in ask(self.live(), "CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return [int(r[1]) for r in replicas]
        return []


async def reconciled(client: TestClient[Any, Any], within_s: float = 15) -> None:
    """The gateway asked Twilio about its live transfers after the failover (the old primary
    may have acknowledged writes it never replicated): once at start, then once more."""
    watch = client.app[OUTAGES]
    deadline = asyncio.get_running_loop().time() + within_s
    while watch.runs < 2 or watch.pending:
        assert asyncio.get_running_loop().time() < deadline, "no reconciliation after failover"
        await asyncio.sleep(0.1)
