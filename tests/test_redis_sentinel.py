"""A Sentinel-managed Redis: the gateway finds the primary through the sentinels."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis import Redis as SyncRedis

from adapters.redis_server import find_redis_server
from gateway.core import keys
from gateway.core.redis_client import parse_sentinel
from gateway.core.settings import Settings
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PSAP, SAFE, free_port


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
