"""A gateway process killed or stopped mid-transfer: two real processes on one real Redis.

Twilio (the sandbox, over real HTTP) reaches the gateways through a load balancer that skips a
process that is gone. The process that took the bridge code is killed (SIGKILL) or stopped
(SIGTERM) with the first destination's dial in hand — before the dial reached the provider (the
provider holds the create and drops it once its client is gone) or during it (the provider dialed
but the reply never came back) — while the destination's screen pop hangs. The first destination
must be dialed exactly once, and the transfer must connect.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from adapters.twilio_sandbox import SandboxConfig, run_sandbox
from adapters.twilio_sandbox.app import Sandbox
from adapters.twilio_sandbox.config import Behaviour, NumberConfig, PartyConfig
from tests.conftest import KeyMaker
from tests.faults import GatewayProcess, LoadBalancer
from tests.telephony import (
    BRIDGE,
    PRIMARY,
    PSAP,
    PSAP_LINE,
    PUBLIC,
    SAFE,
    free_port,
    short_ring_timeouts,
)

pytestmark = pytest.mark.slow

NOTIFY_SECRET = "shared-with-crisis-connections"


@dataclass
class County:
    """Two gateway processes, the load balancer in front of them, and the sandbox."""

    a: GatewayProcess
    b: GatewayProcess
    balancer: LoadBalancer
    sandbox: Sandbox
    session: aiohttp.ClientSession
    headers: dict[str, str]
    pops: list[str]

    async def open(self) -> dict[str, Any]:
        body = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
        async with self.session.post(
            self.balancer.url + "/v1/transfers", json=body, headers=self.headers
        ) as answer:
            opened: dict[str, Any] = await answer.json()
            assert answer.status == 201, opened
            return opened

    async def wait_state(self, transfer_id: str, state: str, within_s: float = 20) -> Any:
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            async with self.session.get(
                f"{self.balancer.url}/v1/transfers/{transfer_id}", headers=self.headers
            ) as answer:
                transfer = await answer.json()
            if transfer.get("state") == state:
                return transfer
            assert asyncio.get_running_loop().time() < deadline, (transfer, self.a.log())
            await asyncio.sleep(0.1)

    def creates(self, number: str) -> int:
        """Participants the provider actually dialed to ``number``."""
        return sum(
            1 for e in self.sandbox.timeline("participant.added") if e["details"]["to"] == number
        )


@asynccontextmanager
async def county(
    tmp_path: Path, redis_url: str, config_dir: Path, key: str
) -> AsyncIterator[County]:
    pops: list[str] = []
    release = asyncio.Event()

    async def hanging_screen_pop(request: web.Request) -> web.Response:
        pops.append((await request.json())["transfer_id"])
        await release.wait()  # never answers while the test runs
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/pop", hanging_screen_pop)
    async with TestServer(receiver, host="127.0.0.1") as notify:
        destinations = config_dir / "destinations.yaml"
        destinations.write_text(
            destinations.read_text().replace(
                "    org: crisis-connections\n",
                "    org: crisis-connections\n"
                f"    notify_url: http://127.0.0.1:{notify.port}/pop\n"
                "    notify_secret_env: CC_NOTIFY_SECRET\n",
            )
        )
        sandbox_port = free_port()
        config = SandboxConfig(
            numbers={
                BRIDGE: NumberConfig(
                    voice_url=f"{PUBLIC}/twilio/voice",
                    voice_fallback_url=f"{PUBLIC}/twilio/fallback",
                )
            },
            parties={PRIMARY: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=1.0)},
        )
        env = {
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_CONFIG_DIR": str(config_dir),
            "GATEWAY_STATE_DIR": str(tmp_path / "state"),
            "GATEWAY_PUBLIC_BASE_URL": PUBLIC,
            "GATEWAY_SANDBOX": "false",
            "GATEWAY_TWILIO_ACCOUNT_SID": config.account_sid,
            "GATEWAY_TWILIO_AUTH_TOKEN": config.auth_token,
            "GATEWAY_TWILIO_API_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
            "GATEWAY_BRIDGE_NUMBER": BRIDGE,
            "GATEWAY_TWILIO_TIMEOUT_S": "2",
            "GATEWAY_TIMER_POLL_S": "0.05",
            "GATEWAY_TIMER_LEASE_S": "5",
            "GATEWAY_RING_GRACE_S": "0.5",
            "CC_NOTIFY_SECRET": NOTIFY_SECRET,
        }
        a = GatewayProcess(env, tmp_path / "a.log")
        b = GatewayProcess(env, tmp_path / "b.log")
        balancer = LoadBalancer([a.url, b.url])
        try:
            a.start()
            b.start()
            await asyncio.gather(a.wait_ready(), b.wait_ready())
            await balancer.start()
            config.deliver_via = {PUBLIC: balancer.url}
            async with (
                run_sandbox(config, port=sandbox_port) as sandbox,
                aiohttp.ClientSession() as session,
            ):
                yield County(
                    a, b, balancer, sandbox, session, {"Authorization": f"Bearer {key}"}, pops
                )
        finally:
            release.set()
            await balancer.aclose()
            a.stop()
            b.stop()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
@pytest.mark.parametrize("phase", ["before_the_dial", "during_the_dial"])
async def test_the_process_that_took_the_code_dies_with_the_dial_in_hand(
    tmp_path: Path,
    redis_url: str,
    redis: Redis,
    config_dir: Path,
    make_key: KeyMaker,
    sig: signal.Signals,
    phase: str,
) -> None:
    short_ring_timeouts(config_dir)
    key = make_key(PSAP, "psap")
    async with county(tmp_path, redis_url, config_dir, key) as c:
        # The provider holds the create (before: nothing dialed yet) or its reply (during:
        # dialed, the call id not yet known) long enough for the process to die with it.
        knob = (
            "participant_create_hold_s"
            if phase == "before_the_dial"
            else "participant_create_reply_delay_s"
        )
        c.sandbox.configure(**{knob: 3.0})
        opened = await c.open()
        c.sandbox.start_call(PSAP_LINE, BRIDGE, digits=[opened["bridge_code"]])
        held = "participant.held" if phase == "before_the_dial" else "participant.added"
        await c.sandbox.wait_for_kind(held, timeout=10)
        assert c.balancer.served.get(c.a.url), "process A took the code"
        assert c.pops == [], "no screen pop before the provider answered the dial"

        c.a.signal(sig)
        if sig == signal.SIGKILL:
            c.a.wait()
        c.sandbox.configure(**{knob: 0.0})

        connected = await c.wait_state(opened["id"], "connected")
        assert connected["connected_destination_id"] == "crisis-connections-988"
        assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
        assert c.creates(PRIMARY) == 1, c.sandbox.timeline("participant")
        assert c.pops, "the counselor got the screen pop"
        assert set(c.pops) == {opened["id"]}
        if sig == signal.SIGKILL and phase == "before_the_dial":
            assert c.sandbox.timeline("participant.dropped"), "the held create was dropped"
        if sig == signal.SIGTERM:
            assert c.a.wait() == 0
            assert "Traceback" not in c.a.log()
        assert "Traceback" not in c.b.log()
