"""A live handback whose PSAP leg's callbacks are lost — Redis stopped and started (AOF on)
under the running gateway, or the gateway itself restarted — with the Twilio sandbox over real
HTTP.

Twilio does not retry a status callback answered with an error (or never delivered). Once Redis
answers again, and whenever a gateway starts, the gateway asks the provider about the leg of
every live handback and applies what it missed through the same guarded transitions as the
callbacks: a call-taker who answered is connected, a busy line moves the handback on. A
reconciliation that finds nothing new writes nothing. The handback's ring timer is set far out
(60 s), so none of this is its doing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core import keys
from gateway.core.records import text
from gateway.core.settings import Settings
from gateway.web.appkeys import HANDBACKS, SETTINGS
from tests import test_handback_flows as flows
from tests.conftest import AppFactory
from tests.faults import RedisProcess
from tests.telephony import PRIMARY, PSAP, PUBLIC, Line, short_ring_timeouts, wired
from tests.test_handback_api import FULL
from tests.test_handback_flows import HANDBACK_LINE, connected_transfer, dials_to

pytestmark = pytest.mark.slow

center = flows.center  # the fixture, shared

SLOW_RING: dict[str, Any] = {
    "handback_ring_timeout_s": 60,  # the gateway's ring timer never decides here
    "handback_retry_delay_s": 0.5,
    "handback_attempts": 2,
}


@pytest.fixture
def psap_key(make_key: Any, config_dir: Path) -> str:
    short_ring_timeouts(config_dir, 8)
    key: str = make_key(PSAP, "psap")
    return key


def counselor() -> PartyConfig:
    return PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=0.5)


@asynccontextmanager
async def gateway(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    redis_process: RedisProcess,
    psap_line: PartyConfig,
) -> AsyncIterator[tuple[Line, Redis]]:
    """The gateway on the test's own redis-server, the sandbox in real time, and a Redis
    client to read what the gateway wrote."""
    parties = {PRIMARY: counselor(), HANDBACK_LINE: psap_line}
    async with (
        wired(
            make_client,
            settings,
            psap_key,
            parties=parties,
            time_scale=1.0,
            redis_url=redis_process.url,
            **SLOW_RING,
        ) as line,
        Redis.from_url(
            redis_process.url,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(), 3),
            retry_on_error=[RedisConnectionError],
        ) as reader,
    ):
        yield line, reader


async def hand_back(line: Line, center: dict[str, str], transfer_id: str) -> str:
    resp = await line.client.post(
        "/v1/handbacks", json={"transfer_id": transfer_id, **FULL}, headers=center
    )
    created = await resp.json()
    assert resp.status == 201, created
    assert (created["mode"], created["state"]) == ("live", "dialing")
    handback_id: str = created["id"]
    return handback_id


async def dialing_handback(
    line: Line, reader: Redis, center: dict[str, str], transfer_id: str
) -> tuple[str, str]:
    """A handback of the transfer, and its PSAP leg once the gateway has recorded the dial."""
    handback_id = await hand_back(line, center, transfer_id)
    return handback_id, await recorded_leg(reader, handback_id)


async def recorded_leg(reader: Redis, handback_id: str, attempt: int = 1) -> str:
    """The PSAP leg's call id, once the gateway has recorded the dial (the create answered)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        call_sid = await reader.hget(keys.handback_legs(handback_id), f"attempt:{attempt}")
        if call_sid is not None:
            return text(call_sid)
        assert asyncio.get_running_loop().time() < deadline, "the dial was never recorded"
        await asyncio.sleep(0.05)


async def refused(line: Line, call_sid: str, status: str) -> None:
    """Wait until the leg's ``status`` callback was answered with an error (and so is gone)."""
    await line.sandbox.wait_for(
        lambda e: (
            e["kind"] == "webhook.sent"
            and e["details"]["params"].get("CallSid") == call_sid
            and e["details"]["params"].get("CallStatus") == status
            and e["details"].get("status", 0) >= 500
        ),
        timeout=15,
    )


async def ready_again(line: Line) -> None:
    deadline = asyncio.get_running_loop().time() + 15
    while (await line.client.get("/readyz")).status != 200:
        assert asyncio.get_running_loop().time() < deadline, "never ready again"
        await asyncio.sleep(0.05)


async def handback_state(
    line: Line, handback_id: str, state: str, within_s: float = 15.0
) -> dict[str, Any]:
    return await flows.handback_state(line, handback_id, state, within_s=within_s)


async def footprint(reader: Redis, handback_id: str, transfer_id: str) -> list[Any]:
    """Everything a reconciliation could write for the handback and its transfer: both
    records (state, version, attempts), both audit trails, the legs, the armed timers."""
    due = await reader.zrange(keys.TIMERS_DUE, 0, -1, withscores=True)
    timers = [
        (text(member), score)
        for member, score in cast(list[tuple[bytes, float]], due)
        if handback_id in text(member) or transfer_id in text(member)
    ]
    return [
        await reader.hgetall(keys.handback(handback_id)),
        await reader.xlen(keys.handback_audit(handback_id)),
        await reader.hgetall(keys.handback_legs(handback_id)),
        await reader.hgetall(keys.transfer(transfer_id)),
        await reader.xlen(keys.transfer_audit(transfer_id)),
        sorted(timers),
    ]


def changes_to(line: Line, call_sid: str) -> list[dict[str, Any]]:
    """REST requests that changed the leg (a GET only asks)."""
    return [
        e["details"]
        for e in line.sandbox.timeline("rest.request")
        if call_sid in e["details"]["path"] and e["details"]["method"] != "GET"
    ]


async def test_a_psap_leg_answered_during_a_redis_outage_is_connected_after_it(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    redis_process: RedisProcess,
) -> None:
    """The call-taker answers while Redis is down: the callback saying so gets an error. Once
    Redis answers, the handback is connected — the call-taker's leg never touched — and a
    reconciliation run again afterwards writes nothing."""
    psap_line = PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=4.0)
    async with gateway(make_client, settings, psap_key, redis_process, psap_line) as (
        line,
        reader,
    ):
        transfer, _, _ = await connected_transfer(line)
        handback_id, leg = await dialing_handback(line, reader, center, transfer["id"])

        redis_process.stop()
        await refused(line, leg, "in-progress")
        assert line.sandbox.call(leg)["status"] == "in-progress"
        redis_process.start()
        await ready_again(line)

        connected = await handback_state(line, handback_id, "connected")
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 1
        assert changes_to(line, leg) == [], "the call-taker's leg is never cancelled"
        assert line.sandbox.call(leg)["status"] == "in-progress"

        # Nothing new: a reconciliation (every process runs one at start, too) writes nothing.
        before = await footprint(reader, handback_id, transfer["id"])
        assert await line.client.app[HANDBACKS].reconcile() == 1
        assert await footprint(reader, handback_id, transfer["id"]) == before
        assert (await line.get(transfer["id"]))["state"] == "connected"


async def test_a_busy_psap_line_during_a_redis_outage_is_redialed_then_failed(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    redis_process: RedisProcess,
) -> None:
    """The PSAP's handback line is busy; the callback saying so arrives while Redis is down
    (the sandbox holds callbacks a few seconds) and gets an error. Once Redis answers, the
    handback moves on as its callback would have moved it: a redial, busy again, then
    ``failed`` — not a minute later on the gateway's ring timer."""
    psap_line = PartyConfig(behaviour=Behaviour.BUSY)
    async with gateway(make_client, settings, psap_key, redis_process, psap_line) as (
        line,
        reader,
    ):
        transfer, _, _ = await connected_transfer(line)
        line.sandbox.configure(shuffle_callbacks=True, shuffle_window_s=4.0)
        handback_id, leg = await dialing_handback(line, reader, center, transfer["id"])

        redis_process.stop()
        await refused(line, leg, "busy")
        line.sandbox.configure(shuffle_callbacks=False)
        redis_process.start()
        await ready_again(line)

        failed = await handback_state(line, handback_id, "failed")
        assert [a["outcome"] for a in failed["attempts"]] == ["busy", "busy"]
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 2
        assert (await line.get(transfer["id"]))["state"] == "connected", "the caller stays"


async def test_a_reconciliation_that_finds_nothing_new_writes_nothing(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    redis_process: RedisProcess,
) -> None:
    """The PSAP's line still rings: asked, the provider says so, and nothing is written —
    however many times the reconciliation runs."""
    psap_line = PartyConfig(behaviour=Behaviour.NO_ANSWER)
    async with gateway(make_client, settings, psap_key, redis_process, psap_line) as (
        line,
        reader,
    ):
        transfer, _, _ = await connected_transfer(line)
        handback_id, leg = await dialing_handback(line, reader, center, transfer["id"])
        await line.sandbox.wait_for_kind("call.status", 5, call_sid=leg, status="ringing")
        await asyncio.sleep(0.5)  # the ringing callback applied (it writes nothing either)

        before = await footprint(reader, handback_id, transfer["id"])
        service = line.client.app[HANDBACKS]
        assert [await service.reconcile() for _ in range(3)] == [1, 1, 1]
        assert await footprint(reader, handback_id, transfer["id"]) == before
        assert changes_to(line, leg) == []
        assert line.sandbox.call(leg)["status"] == "ringing"


async def test_a_gateway_that_restarts_reconciles_the_handbacks_it_missed(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    redis_process: RedisProcess,
) -> None:
    """The gateway stops while the PSAP's line rings; the call-taker answers while it is
    down, so the callback reaches nobody. The gateway that starts next asks the provider and
    connects the handback (Redis never stopped: the start-up reconciliation does it)."""
    psap_line = PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=4.0)
    async with gateway(make_client, settings, psap_key, redis_process, psap_line) as (
        line,
        reader,
    ):
        transfer, _, _ = await connected_transfer(line)
        handback_id, leg = await dialing_handback(line, reader, center, transfer["id"])
        chosen = line.client.app[SETTINGS]

        await line.client.close()  # the gateway is down
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "webhook.failed"
                and e["details"]["params"].get("CallSid") == leg
                and e["details"]["params"].get("CallStatus") == "in-progress"
            ),
            timeout=15,
        )
        assert (await reader.hget(keys.handback(handback_id), "state")) == b"dialing"

        restarted = await make_client(chosen)
        line.sandbox.configure(deliver_via={PUBLIC: f"http://127.0.0.1:{restarted.port}"})
        line.client = restarted
        connected = await handback_state(line, handback_id, "connected", within_s=10)
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 1
        assert changes_to(line, leg) == []


async def test_a_call_that_ended_during_a_redis_outage_fails_its_dialing_handback(
    make_client: AppFactory,
    settings: Settings,
    psap_key: str,
    center: dict[str, str],
    redis_process: RedisProcess,
) -> None:
    """The PSAP's line rings; Redis stops; the caller and the counselor hang up, so the
    conference ends and its callbacks get errors. Once Redis answers, the handback is
    reconciled before the transfer (whose completion takes it out of the live index): the
    ringing leg is cancelled — never answered into an empty conference — and the handback
    fails; the transfer completes."""
    psap_line = PartyConfig(behaviour=Behaviour.NO_ANSWER)
    async with gateway(make_client, settings, psap_key, redis_process, psap_line) as (
        line,
        reader,
    ):
        transfer, caller, counselor_leg = await connected_transfer(line)
        handback_id, leg = await dialing_handback(line, reader, center, transfer["id"])
        await line.sandbox.wait_for_kind("call.status", 5, call_sid=leg, status="ringing")

        redis_process.stop()
        line.sandbox.hang_up(caller)
        line.sandbox.hang_up(counselor_leg)
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "webhook.sent"
                and e["details"].get("purpose") == "conference-status"
                and e["details"]["params"].get("StatusCallbackEvent") == "conference-end"
                and e["details"].get("status", 0) >= 500
            ),
            timeout=15,
        )
        assert line.sandbox.call(leg)["status"] == "ringing"
        redis_process.start()
        await ready_again(line)

        failed = await handback_state(line, handback_id, "failed")
        assert [a["outcome"] for a in failed["attempts"]] == ["failed"]
        ended = await line.sandbox.wait_for_call_end(leg)
        assert (ended["status"], ended["ended_by"]) == ("canceled", "rest-api")
        await line.wait_state(transfer["id"], "completed", within_s=10)
        assert dials_to(line, transfer["id"], HANDBACK_LINE) == 1
