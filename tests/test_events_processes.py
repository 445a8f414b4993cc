"""Every process serves every event: two real gateway processes on one real Redis.

A stream opened on process A follows changes made through process B, in order, with increasing
ids; a client that reconnects to B with its ``Last-Event-ID`` gets exactly what it missed; and
A's reader survives a Redis restart, resuming where it was.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import KeyMaker
from tests.faults import GatewayProcess, RedisProcess
from tests.telephony import BRIDGE, PSAP, PUBLIC
from tests.test_events import (
    PHONE_DIGITS,
    cancel,
    change_policy,
    ids_increase,
    open_transfer,
    stream,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def gateways(
    tmp_path: Path, redis_process: RedisProcess, config_dir: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    env = {
        "GATEWAY_REDIS_URL": redis_process.url,
        "GATEWAY_CONFIG_DIR": str(config_dir),
        "GATEWAY_STATE_DIR": str(tmp_path / "state"),
        "GATEWAY_PUBLIC_BASE_URL": PUBLIC,
        "GATEWAY_SANDBOX": "false",  # no telephony here: nothing is dialed
        "GATEWAY_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "GATEWAY_TWILIO_AUTH_TOKEN": "events-test-token",
        "GATEWAY_TWILIO_API_BASE_URL": "http://127.0.0.1:9",
        "GATEWAY_BRIDGE_NUMBER": BRIDGE,
        "GATEWAY_EVENTS_HEARTBEAT_S": "0.5",
    }
    a = GatewayProcess(env, tmp_path / "a.log")
    b = GatewayProcess(env, tmp_path / "b.log")
    try:
        a.start()
        b.start()
        await asyncio.gather(a.wait_ready(), b.wait_ready())
        yield a, b
    finally:
        a.stop()
        b.stop()


async def until_created(session: aiohttp.ClientSession, url: str, key: str) -> dict[str, Any]:
    """Open a transfer through ``url``, retrying while Redis comes back."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        try:
            return await open_transfer(session, key, url)
        except AssertionError:
            assert asyncio.get_running_loop().time() < deadline, "never answered 201 again"
            await asyncio.sleep(0.2)


async def test_a_stream_on_one_process_follows_changes_made_on_another(
    gateways: tuple[GatewayProcess, GatewayProcess],
    redis_process: RedisProcess,
    make_key: KeyMaker,
) -> None:
    a, b = gateways
    psap = make_key(PSAP, "psap")
    other_psap = make_key("other-psap", "psap")
    admin = make_key("ops", "admin")
    events_a = a.url + "/v1/events"
    async with aiohttp.ClientSession() as session:
        async with (
            stream(session, events_a, psap) as mine,
            stream(session, events_a, other_psap) as theirs,
        ):
            opened = await open_transfer(session, psap, b.url)
            await cancel(session, psap, opened["id"], b.url)
            created, cancelled = await mine.messages(2)
            assert [(m.data["type"], m.data["state"]) for m in (created, cancelled)] == [
                ("transfer.created", "awaiting_bridge"),
                ("transfer.state", "cancelled"),
            ]
            assert {m.data["transfer_id"] for m in (created, cancelled)} == {opened["id"]}
            assert ids_increase([created, cancelled])
            assert (await mine.next(comments=True, within_s=5)).comment == "ping"

            # Another PSAP's key saw nothing of it: its first event is the policy's change.
            await change_policy(session, admin, b.url)
            assert (await theirs.next()).data["type"] == "policy.changed"
            assert (await mine.next()).data["type"] == "policy.changed"

        # Gone for a while; reconnecting to the other process replays exactly what was missed.
        second = await open_transfer(session, psap, b.url)
        await cancel(session, psap, second["id"], a.url)
        async with stream(session, b.url + "/v1/events", psap, last_event_id=cancelled.id) as s:
            missed = await s.messages(3)
            assert [m.data["type"] for m in missed] == [
                "policy.changed",
                "transfer.created",
                "transfer.state",
            ]
            assert {m.data.get("transfer_id") for m in missed[1:]} == {second["id"]}
            assert ids_increase([cancelled, *missed])

            # Redis restarts under both processes; A's reader resumes from the last id it saw.
            async with stream(session, events_a, psap) as on_a:
                redis_process.stop()
                redis_process.start()
                third = await until_created(session, b.url, psap)
                after_restart = await on_a.next(within_s=20)
                assert after_restart.data["transfer_id"] == third["id"]
                assert ids_increase([*missed, after_restart])
                also = await s.next(within_s=20)  # and B's own stream, live all along
                assert also.id == after_restart.id
                for reader in (on_a, s):
                    assert not PHONE_DIGITS.search(reader.raw)

                # A stopping process ends its streams cleanly; the other one serves on.
                a.signal(signal.SIGTERM)
                assert await on_a.ended(within_s=15)
                assert a.wait(within_s=15) == 0
                fourth = await open_transfer(session, psap, b.url)
                assert (await s.next()).data["transfer_id"] == fourth["id"]
    assert not PHONE_DIGITS.search(mine.raw + theirs.raw)
