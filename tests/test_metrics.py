"""``/metrics``: Prometheus text that parses, and figures that move with traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.settings import Settings
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PRIMARY, PSAP, SAFE, short_ring_timeouts, wired


async def scrape(
    client: TestClient[Any, Any],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_parse_and_move_with_traffic(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker, config_dir: Path
) -> None:
    short_ring_timeouts(config_dir)
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line:
        before = await scrape(line.client)
        line.sandbox.set_party(PRIMARY, "answer", answer_after_s=1)
        opened = await line.open()
        line.dial_bridge(opened["bridge_code"], hangup_after_s=10)
        await line.wait_state(opened["id"], "completed")
        await line.open(screening={**SAFE, "weapons": True})
        await line.client.post("/twilio/voice", data={"CallSid": "CA1"})  # unsigned
        after = await scrape(line.client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gateway_transitions_total", event="created", state="awaiting_bridge") == 1
    assert moved("gateway_transitions_total", event="created", state="not_transferred") == 1
    assert moved("gateway_transitions_total", event="answered", state="connected") == 1
    assert moved("gateway_transitions_total", event="conference_ended", state="completed") == 1
    assert moved("gateway_twilio_signature_failures_total", route="voice") == 1
    assert moved("gateway_answer_seconds_count") == 1
    api = {"method": "POST", "route": "/v1/transfers", "status": "201"}
    assert moved("gateway_http_request_seconds_count", **api) == 2  # transfer + kept
    webhook = {"method": "POST", "route": "/twilio/voice/code", "status": "200"}
    assert moved("gateway_http_request_seconds_count", **webhook) >= 1
    assert ("gateway_timer_lag_seconds", ()) in after
    assert value(after, "gateway_cad_outbox_depth") == 0
