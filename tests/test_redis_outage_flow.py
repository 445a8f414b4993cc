"""Redis stopped and started (AOF on) while a destination rings: the real gateway, the Twilio
sandbox over real HTTP, and a redis-server the test owns.

The counselor answers during the outage, so the callbacks that say so are answered with an
error — and Twilio does not retry them. The gateway must still find out (it asks the provider
once Redis answers) and must never cancel or hang up the counselor's answered leg. Meanwhile
another call-taker keys in a code: that step must still answer TwiML that keeps the caller,
dialing the PSAP's fallback destination. Once ``/readyz`` is 200 again, no request fails.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.settings import Settings
from tests.conftest import AppFactory, KeyMaker
from tests.faults import RedisProcess
from tests.telephony import PRIMARY, PSAP, short_ring_timeouts, wired

pytestmark = pytest.mark.slow


def counselor_hits(line: object, call_sid: str) -> list[dict[str, object]]:
    """REST requests that changed the counselor's leg (a GET only asks)."""
    return [
        e["details"]
        for e in line.sandbox.timeline("rest.request")  # type: ignore[attr-defined]
        if call_sid in e["details"]["path"] and e["details"]["method"] != "GET"
    ]


async def test_a_counselor_who_answers_during_a_redis_outage_stays_connected(
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
    config_dir: Path,
    redis_process: RedisProcess,
) -> None:
    short_ring_timeouts(config_dir, 8)
    key = make_key(PSAP, "psap")
    parties = {PRIMARY: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=1.5)}
    async with wired(
        make_client,
        settings,
        key,
        parties=parties,
        time_scale=1.0,
        redis_url=redis_process.url,
    ) as line:
        first = await line.open()
        second = await line.open()
        caller = line.dial_bridge(first["bridge_code"])
        await line.wait_state(first["id"], "ringing")
        ringing = await line.sandbox.wait_for_kind("participant.added", timeout=5)
        leg = ringing["details"]["call_sid"]

        redis_process.stop()
        # The counselor answers while Redis is down: the callbacks saying so get errors.
        await line.sandbox.wait_for_kind(
            "call.status", timeout=10, call_sid=leg, status="in-progress"
        )
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "webhook.sent"
                and e["details"].get("purpose", "").endswith("-status")
                and e["details"].get("status", 0) >= 500
            ),
            timeout=10,
        )
        # Another call-taker keys a code in during the outage: TwiML that dials the fallback.
        other = line.dial_bridge(second["bridge_code"])
        code_step = await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "webhook.sent"
                and e["details"].get("purpose") == "gather-action"
                and e["details"].get("call_sid") == other
            ),
            timeout=15,
        )
        assert code_step["details"]["status"] == 200
        fallback_dial = await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "twiml.verb"
                and e["details"].get("call_sid") == other
                and e["details"].get("verb") == "Dial"
            ),
            timeout=5,
        )
        assert fallback_dial["details"]["text"] == PRIMARY  # crisis-connections-988
        assert line.sandbox.call(other)["ended_by"] is None  # the caller is kept

        redis_process.start()
        deadline = asyncio.get_running_loop().time() + 10
        while (await line.client.get("/readyz")).status != 200:
            assert asyncio.get_running_loop().time() < deadline, "never ready again"
            await asyncio.sleep(0.05)
        answers = await asyncio.gather(
            *(
                line.client.get(f"/v1/transfers/{first['id']}", headers=line.headers)
                for _ in range(30)
            )
        )
        assert [a.status for a in answers] == [200] * 30

        connected = await line.wait_state(first["id"], "connected", within_s=10)
        assert connected["connected_destination_id"] == "crisis-connections-988"
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        # Past the ring timer: still connected, the counselor's leg never touched.
        await asyncio.sleep(9)
        assert (await line.get(first["id"]))["state"] == "connected"
        assert counselor_hits(line, leg) == []
        assert line.sandbox.call(leg)["status"] == "in-progress"
        assert line.dials(first["id"]) == [PRIMARY]

        line.sandbox.hang_up(caller)
        await line.wait_state(first["id"], "completed", within_s=10)
