"""A Sentinel-managed Redis: the gateway finds the primary through the sentinels, and follows a
failover by itself (``pytest -m ha``)."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from adapters.redis_server import find_redis_server
from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core import keys
from gateway.core.redis_client import FAILOVER_ERRORS, FailoverRetry, parse_sentinel
from gateway.core.settings import Settings
from tests.conftest import ROOT, AppFactory, KeyMaker
from tests.ha_servers import Processes, SentinelSet, ask, reconciled
from tests.telephony import PRIMARY, PSAP, SAFE, free_port, gateway_settings, wired


def _wait_for(port: int) -> None:
    client = SyncRedis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            client.close()


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A primary on a loopback TCP port and one sentinel watching it as ``gw``."""
    binary = find_redis_server()
    primary_port, sentinel_port = free_port(), free_port()
    primary = subprocess.Popen(
        [binary, "--port", str(primary_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor gw 127.0.0.1 {primary_port} 1\n"
    )
    sentinel = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        _wait_for(primary_port)
        _wait_for(sentinel_port)
        yield primary_port, sentinel_port
    finally:
        for process in (sentinel, primary):
            process.terminate()
            process.wait(timeout=10)


async def test_the_gateway_runs_on_a_sentinel_managed_primary(
    sentinel_set: tuple[int, int],
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
) -> None:
    primary_port, sentinel_port = sentinel_set
    client = await make_client(redis_url=f"redis+sentinel://127.0.0.1:{sentinel_port}/gw/0")
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    key = make_key(PSAP, "psap")
    resp = await client.post(
        "/v1/transfers",
        json={"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE},
        headers={"Authorization": f"Bearer {key}"},
    )
    created = await resp.json()
    assert resp.status == 201, created
    primary = SyncRedis(host="127.0.0.1", port=primary_port)
    try:
        assert primary.exists(keys.transfer(created["id"])) == 1
        assert primary.get(keys.POLICY_CURRENT) == b"1"
    finally:
        primary.close()


def test_sentinel_urls_are_checked_at_start(settings: Settings) -> None:
    assert parse_sentinel("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/gw/2") == (
        [("10.0.0.1", 26379), ("10.0.0.2", 26380)],
        "gw",
        2,
        "s3cret",
    )
    for bad in ("redis+sentinel://host/gw", "redis+sentinel://host:26379", "memcached://x:1"):
        with pytest.raises(ValidationError, match="redis_url"):
            Settings.model_validate({**settings.model_dump(), "redis_url": bad})


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary, a replica and three sentinels (quorum 2), all stopped afterwards."""
    servers = SentinelSet(tmp_path / "sentinel")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def _ready(client: TestClient[Any, Any], within_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while (await client.get("/readyz")).status != 200:
        assert asyncio.get_running_loop().time() < deadline, "never ready again"
        await asyncio.sleep(0.1)


@pytest.mark.ha
@pytest.mark.slow
async def test_a_ringing_transfer_connects_across_a_sentinel_failover(
    sentinels: SentinelSet,
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
) -> None:
    """kill -9 the primary while the counselor's phone rings; the counselor answers while the
    sentinels promote the replica. Two gateways find the new primary by themselves: every
    callback is applied (none answered with an error), the transfer connects, both gateways are
    ready again without a restart, and timers (the connected call's liveness check, every
    second here) keep firing from the new primary."""
    key = make_key(PSAP, "psap")
    parties = {PRIMARY: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=1.0)}
    async with wired(
        make_client,
        settings,
        key,
        parties=parties,
        time_scale=1.0,
        redis_url=sentinels.url,
        connected_check_s=1.0,
    ) as line:
        sandbox_port = urlsplit(line.sandbox.base_url).port
        assert sandbox_port is not None
        other = await make_client(
            gateway_settings(settings, sandbox_port, redis_url=sentinels.url, connected_check_s=1.0)
        )
        transfer = await line.open()
        caller = line.dial_bridge(transfer["bridge_code"])
        await line.wait_state(transfer["id"], "ringing")
        ringing = await line.sandbox.wait_for_kind("participant.added", timeout=5)
        leg = ringing["details"]["call_sid"]

        old = sentinels.primary
        sentinels.kill(old)  # no shutdown: whatever it had not replicated is gone
        # Reads on the other gateway all through the promotion: each is held, none fails.
        statuses = []
        while sentinels.current_primary() == old:
            resp = await other.get(f"/v1/transfers/{transfer['id']}", headers=line.headers)
            statuses.append(resp.status)
            await asyncio.sleep(0.1)
        await line.sandbox.wait_for_kind(
            "call.status", timeout=10, call_sid=leg, status="in-progress"
        )
        connected = await line.wait_state(transfer["id"], "connected", within_s=20)
        assert statuses, "the promotion was over before the first read"
        assert set(statuses) == {200}, statuses
        assert sentinels.current_primary() == sentinels.replica != old
        assert connected["connected_destination_id"] == "crisis-connections-988"
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        await _ready(line.client, within_s=15)
        await _ready(other, within_s=15)
        await reconciled(line.client)
        await reconciled(other)

        def liveness_checks() -> int:
            """Conference look-ups (the only live conference is this transfer's)."""
            return sum(
                1
                for e in line.sandbox.timeline("rest.request")
                if e["details"]["method"] == "GET"
                and e["details"]["path"].endswith("/Conferences.json")
            )

        checks = liveness_checks()
        deadline = asyncio.get_running_loop().time() + 15
        while liveness_checks() < checks + 2:  # the timer fired, re-armed itself, fired again
            assert asyncio.get_running_loop().time() < deadline, "timers stopped firing"
            await asyncio.sleep(0.1)
        assert (await line.get(transfer["id"]))["state"] == "connected"

        line.sandbox.hang_up(caller)
        await line.wait_state(transfer["id"], "completed", within_s=15)
        failed = [
            e["details"]
            for e in line.sandbox.timeline("webhook.sent")
            if e["details"].get("status", 0) >= 500
        ]
        assert failed == []  # no callback was answered with an error, so none was lost


@pytest.mark.ha
def test_the_shipped_sentinel_config_and_redis_flags_run(tmp_path: Path) -> None:
    """deploy/sentinel.conf and the Redis flags of docker-compose.ha.yml, run for real (names
    and ports swapped for loopback ones): the sentinel watches the primary, and the primary
    refuses a write that no replica would receive (min-replicas-to-write 1)."""
    compose = yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())
    words = shlex.split(compose["services"]["redis-1"]["command"])
    flags = words[words.index("--appendonly") :]
    servers = Processes(tmp_path)
    primary, sentinel = free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        (ROOT / "deploy" / "sentinel.conf")
        .read_text()
        .replace("port 26379", f"port {sentinel}\nbind 127.0.0.1")
        .replace("dir /data", f"dir {tmp_path}")
        .replace("redis-1 6379", f"127.0.0.1 {primary}")
    )
    try:
        servers.start_server(primary, "--port", str(primary), "--bind", "127.0.0.1", *flags)
        servers.start_server(sentinel, str(conf), "--sentinel")
        watched = ask(sentinel, "SENTINEL", "MASTER", "gw")  # parsed by redis-py
        assert (watched["ip"], int(watched["port"])) == ("127.0.0.1", primary)
        assert int(watched["quorum"]) == 2
        with pytest.raises(ResponseError, match="NOREPLICAS"):
            ask(primary, "SET", f"{keys.PREFIX}probe", "1")
    finally:
        servers.stop()


@pytest.mark.ha
async def test_a_write_refused_for_want_of_a_replica_is_held_until_one_syncs(
    tmp_path: Path,
) -> None:
    """After a promotion the new primary's replica syncs from it; under min-replicas-to-write
    1 (docker-compose.ha.yml) writes are refused (NOREPLICAS) until it has. The failover client
    holds a write through that, as through the promotion itself."""
    servers = Processes(tmp_path)
    primary, replica = free_port(), free_port()
    told: list[str] = []
    client = Redis.from_url(
        f"redis://127.0.0.1:{primary}",
        socket_timeout=2,
        retry=FailoverRetry(window_s=8, on_failure=told.append),
        retry_on_error=list(FAILOVER_ERRORS),
    )
    try:
        servers.start_server(
            primary, "--port", str(primary), "--bind", "127.0.0.1", "--save", "",
            "--min-replicas-to-write", "1", "--min-replicas-max-lag", "10",
        )  # fmt: skip
        write = asyncio.ensure_future(client.set(f"{keys.PREFIX}probe", "1"))
        await asyncio.sleep(0.5)
        assert not write.done(), "the write was taken with no replica"
        servers.start_server(
            replica, "--port", str(replica), "--bind", "127.0.0.1", "--save", "",
            "--replicaof", "127.0.0.1", str(primary),
        )  # fmt: skip
        assert await asyncio.wait_for(write, 10) is True
        assert "ResponseError" in told
        assert ask(primary, "GET", f"{keys.PREFIX}probe") == "1"
    finally:
        await client.aclose()
        servers.stop()
