"""benchmarks/shard.py runs (tiny N), so its figure cannot rot. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark


def test_the_shard_figure_sets_one_core_against_a_countys_need(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_benchmark("shard")
    args = ["--transfers", "5", "--concurrency", "2", "--redis-url", redis_url]
    assert bench.main([*args, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["script_calls"] >= 5 * 5  # a create and four transitions each
    assert figures["usec_per_call"] > 0
    assert figures["needed_calls_per_s"] == pytest.approx(100 * 12 * 4 / 3600)
    assert figures["headroom"] == pytest.approx(
        figures["core_calls_per_s"] / figures["needed_calls_per_s"]
    )
    assert bench.main([*args, "--transfers-per-hour", "50"]) == 0
    table = capsys.readouterr().out
    assert "one Redis core sustains" in table
    assert "50 transfers/h" in table
