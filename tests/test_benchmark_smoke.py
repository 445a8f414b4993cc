"""The benchmarks run (tiny N), so they cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import ROOT, load_benchmark


def test_benchmark_main_reports_one_round_trip_per_lua_transition(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_benchmark("transitions")
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
    bench = load_benchmark("transitions")
    results = await bench.measure(redis_url, transfers=3, concurrency=1)
    assert [r.name for r in results] == ["lua", "watch/multi"]
    assert await redis.dbsize() == 0


WEBHOOK_COLUMNS = (
    "| phase | offered /s | achieved /s | p50 ms | p99 ms | max ms | errors "
    "| Redis RT / webhook | vs baseline |"
)


@pytest.mark.slow
def test_webhooks_benchmark_smoke_drives_every_transfer_to_completed(tmp_path: Path) -> None:
    """The webhooks benchmark as ``make bench-webhooks`` runs it, in its tiny mode: its own
    Redis, gateway processes, baseline, stub and proxy, a few transfers at a low rate."""
    figures_file = tmp_path / "figures.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "webhooks.py"),
            "--smoke",
            "--json",
            str(figures_file),
            "--logs",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert WEBHOOK_COLUMNS in run.stdout
    figures = json.loads(figures_file.read_text())
    assert figures["table"] in run.stdout

    round_trips = figures["round_trips"]["whole_transfer_per_webhook"]
    assert isinstance(round_trips, float)
    assert round_trips > 0
    assert figures["round_trips"]["code_step"] > 0

    gateway = [p for p in figures["phases"] if p["target"] == "gateway"]
    assert {p["mode"] for p in gateway} == {"open", "closed"}
    for phase in gateway:
        states = phase["states"]
        assert states["driven"] > 0, phase["name"]
        assert states["by_state"] == {"completed": states["driven"]}, (phase["name"], states)
        assert phase["errors"] == {}, phase["name"]
    baseline = [p for p in figures["phases"] if p["target"] == "baseline"]
    assert baseline
    assert all(p["errors"] == {} for p in baseline)
