"""The gateway and the Twilio sandbox wired together over real HTTP, for end-to-end flows.

The gateway's public base URL is ``https://gateway.example.test``; the sandbox signs every webhook
for that URL and delivers it to the gateway's loopback port (``deliver_via``) — the gateway sits
"behind a proxy", as in production.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from adapters.twilio_sandbox import SandboxConfig, run_sandbox
from adapters.twilio_sandbox.app import Sandbox
from adapters.twilio_sandbox.config import NumberConfig, PartyConfig
from gateway.core.settings import Settings
from tests.conftest import with_overrides

PUBLIC = "https://gateway.example.test"
BRIDGE = "+12065550199"
PSAP_LINE = "+12065550111"
PSAP = "kc-valleycom"
PRIMARY = "+12065550188"  # crisis-connections-988
BACKUP = "+13605550188"  # wa-988-backup
NATIONAL = "+18005550198"  # national-988-backup
CLINICIANS = "+12065550142"  # kc-dispatch-clinicians
RING_TIMEOUT_S = 5

SAFE = {
    "weapons": False,
    "violence": False,
    "medical_emergency": False,
    "attempt_in_progress": False,
    "severe_intoxication": False,
    "officer_requested": False,
    "imminent_risk": False,
    "consent_to_transfer": True,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def short_ring_timeouts(config_dir: Path, seconds: int = RING_TIMEOUT_S) -> None:
    policy = config_dir / "policy.yaml"
    policy.write_text(
        re.sub(r"ring_timeout_s: \d+", f"ring_timeout_s: {seconds}", policy.read_text())
    )


def gateway_settings(base: Settings, sandbox_port: int, **overrides: Any) -> Settings:
    return with_overrides(
        base,
        **{
            "public_base_url": PUBLIC,
            "twilio_account_sid": SandboxConfig().account_sid,
            "twilio_auth_token": SecretStr(SandboxConfig().auth_token),
            "twilio_api_base_url": f"http://127.0.0.1:{sandbox_port}",
            "bridge_number": BRIDGE,
            "ring_grace_s": 0.5,
            **overrides,
        },
    )


@dataclass
class Line:
    """A PSAP console and its phone line, talking to a gateway wired to the sandbox."""

    client: TestClient[Any, Any]
    sandbox: Sandbox
    key: str
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.key}"}

    async def open(self, caller_type: str = "first_person", **extra: Any) -> dict[str, Any]:
        body = {"psap_id": PSAP, "caller_type": caller_type, "screening": SAFE, **extra}
        resp = await self.client.post("/v1/transfers", json=body, headers=self.headers)
        data: dict[str, Any] = await resp.json()
        assert resp.status == 201, data
        return data

    def dial_bridge(self, *digits: str, hangup_after_s: float | None = None) -> str:
        return self.sandbox.start_call(
            PSAP_LINE, BRIDGE, digits=list(digits), hangup_after_s=hangup_after_s
        )

    async def get(self, transfer_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/transfers/{transfer_id}", headers=self.headers)
        data: dict[str, Any] = await resp.json()
        assert resp.status == 200, data
        return data

    async def wait_state(
        self, transfer_id: str, state: str, within_s: float = 10.0
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            transfer = await self.get(transfer_id)
            if transfer["state"] == state:
                return transfer
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still {transfer['state']}, wanted {state}: {transfer}")
            await asyncio.sleep(0.05)

    def dials(self, transfer_id: str) -> list[str]:
        """The numbers the gateway dialed into the transfer's conference, in order."""
        return [
            e["details"]["params"]["To"]
            for e in self.sandbox.timeline("rest.request")
            if e["details"]["method"] == "POST"
            and e["details"]["path"].endswith(f"/Conferences/{transfer_id}/Participants.json")
        ]


@asynccontextmanager
async def wired(
    make_client: Any,
    settings: Settings,
    key: str,
    *,
    parties: dict[str, PartyConfig] | None = None,
    time_scale: float = 0.2,
    duplicate: bool = False,
    shuffle: bool = False,
    create_conference: bool = False,
    create_hold_s: float = 0.0,
    **overrides: Any,
) -> AsyncIterator[Line]:
    sandbox_port = free_port()
    client = await make_client(gateway_settings(settings, sandbox_port, **overrides))
    config = SandboxConfig(
        numbers={
            BRIDGE: NumberConfig(
                voice_url=f"{PUBLIC}/twilio/voice", voice_fallback_url=f"{PUBLIC}/twilio/fallback"
            )
        },
        parties=parties or {},
        deliver_via={PUBLIC: f"http://127.0.0.1:{client.port}"},
        time_scale=time_scale,
        duplicate_callbacks=duplicate,
        shuffle_callbacks=shuffle,
        participants_create_conference=create_conference,
        participant_create_hold_s=create_hold_s,
    )
    async with run_sandbox(config, port=sandbox_port) as sandbox:
        yield Line(client, sandbox, key)
