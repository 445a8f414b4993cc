"""The benchmark runs (tiny N, the test Redis), so it cannot rot. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

import pytest
from redis.asyncio import Redis

from tests.conftest import ROOT


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "benchmarks_transitions", ROOT / "benchmarks" / "transitions.py"
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


def test_benchmark_main_reports_one_round_trip_per_lua_transition(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_benchmark()
    args = ["--transfers", "4", "--concurrency", "2", "--redis-url", redis_url]
    assert bench.main([*args, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    lua, naive = figures["lua"], figures["watch_multi"]
    assert lua["transitions"] == naive["transitions"] == 4 * 4
    assert lua["round_trips_per_transition"] == 1
    assert lua["evalsha_per_transition"] == 1
    assert naive["round_trips_per_transition"] >= 3  # WATCH, read, MULTI/EXEC
    assert naive["evalsha"] == 0

    assert bench.main(args) == 0
    table = capsys.readouterr().out
    assert "round trips / transition" in table
    assert "p99 latency (ms)" in table


async def test_benchmark_leaves_no_keys_behind(redis: Redis, redis_url: str) -> None:
    bench = load_benchmark()
    results = await bench.measure(redis_url, transfers=3, concurrency=1)
    assert [r.name for r in results] == ["lua", "watch/multi"]
    assert await redis.dbsize() == 0
