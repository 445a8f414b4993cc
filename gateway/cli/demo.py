"""``python -m gateway demo``: watch a warm transfer with a fallback, against a running gateway.

Meant for ``make run`` (the built-in Twilio sandbox): the primary 988 center is scripted not to
answer, the backup answers after two seconds. The demo opens a transfer as a PSAP console would,
plays the call-taker's phone system keying the bridge code in, prints every state change, and
hangs the caller up once the counselor has been on the line for a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.core.auth import Role, add_key

PSAP_LINE = "+12065550111"
CALLER = "+12065550123"
SAFE_SCREENING = {
    "weapons": False,
    "violence": False,
    "medical_emergency": False,
    "attempt_in_progress": False,
    "severe_intoxication": False,
    "officer_requested": False,
    "imminent_risk": False,
    "consent_to_transfer": True,
}


class DemoError(Exception):
    pass


class Demo:
    def __init__(self, gateway: str, sandbox: str, key: str, psap: str, out: Any) -> None:
        self.gateway = httpx.AsyncClient(
            base_url=gateway, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        self.sandbox = httpx.AsyncClient(base_url=sandbox, timeout=10)
        self.psap = psap
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)

    async def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise DemoError(
                f"{response.request.url.path}: HTTP {response.status_code} {response.text}"
            )
        return response.json()

    async def run(self, hold_s: float) -> dict[str, Any]:
        decision = await self._json(
            await self.gateway.post(
                "/v1/routing/decisions",
                json={
                    "psap_id": self.psap,
                    "caller_type": "first_person",
                    "screening": SAFE_SCREENING,
                },
            )
        )
        chain = decision["destinations"]
        if len(chain) < 2:
            raise DemoError("the policy gives a first-person caller fewer than two destinations")
        primary, backup = chain[0], chain[1]
        await self._json(
            await self.sandbox.put(
                f"/sandbox/parties/{primary['number']}", json={"behaviour": "no_answer"}
            )
        )
        await self._json(
            await self.sandbox.put(
                f"/sandbox/parties/{backup['number']}",
                json={"behaviour": "answer", "answer_after_s": 2},
            )
        )
        self.say(f"sandbox: {primary['name']} will not answer; {backup['name']} answers in 2 s")

        transfer = await self._json(
            await self.gateway.post(
                "/v1/transfers",
                json={
                    "psap_id": self.psap,
                    "caller_type": "first_person",
                    "screening": SAFE_SCREENING,
                    "callback_number": CALLER,
                },
            )
        )
        self.say(
            f"POST /v1/transfers → {transfer['state']}; chain "
            + " → ".join(d["id"] for d in transfer["decision"]["destinations"])
            + f" ({transfer['decision']['ring_timeout_s']} s each)"
        )
        self.say(
            "call-taker conference-transfers to the bridge line and keys in "
            + transfer["bridge_code"]
        )
        call = await self._json(
            await self.sandbox.post(
                "/sandbox/calls",
                json={
                    "from": PSAP_LINE,
                    "to": transfer["bridge_number"],
                    "digits": [transfer["bridge_code"]],
                },
            )
        )
        final = await self.follow(transfer["id"], call["call_sid"], hold_s)
        await self.print_timeline(transfer["id"])
        return final

    async def follow(self, transfer_id: str, call_sid: str, hold_s: float) -> dict[str, Any]:
        seen: tuple[str, int] | None = None
        hung_up = False
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            transfer = await self._json(await self.gateway.get(f"/v1/transfers/{transfer_id}"))
            now = (transfer["state"], len(transfer["attempts"]))
            if now != seen:
                seen = now
                self.describe(transfer)
            if transfer["state"] == "connected" and not hung_up:
                await asyncio.sleep(hold_s)
                self.say("caller and counselor finish; the caller hangs up")
                await self._json(await self.sandbox.post(f"/sandbox/calls/{call_sid}/hangup"))
                hung_up = True
            if transfer["state"] in ("completed", "failed", "abandoned", "cancelled", "expired"):
                return dict(transfer)
            await asyncio.sleep(0.25)
        raise DemoError("the transfer did not finish within three minutes")

    def describe(self, transfer: dict[str, Any]) -> None:
        state = transfer["state"]
        attempts = transfer["attempts"]
        if state == "ringing" and attempts:
            done = [f"{a['destination_id']}: {a['outcome']}" for a in attempts[:-1]]
            prefix = f"({'; '.join(done)}) " if done else ""
            self.say(
                f"{prefix}ringing {attempts[-1]['destination_id']}; "
                "the call-taker stays on the line"
            )
        elif state == "connected":
            self.say(
                f"connected to {transfer['connected_destination_id']}: "
                "caller, call-taker and counselor"
            )
        else:
            self.say(f"transfer {state}")

    async def print_timeline(self, transfer_id: str) -> None:
        timeline = (await self._json(await self.sandbox.get("/sandbox/timeline")))["events"]
        self.say("what the bridge line saw (sandbox timeline):")
        for event in timeline:
            kind, details = event["kind"], event["details"]
            line = None
            if kind == "rest.request" and transfer_id in details.get("path", ""):
                line = f"REST {details['method']} …{details['path'][-60:]}"
            elif kind == "webhook.sent" and details.get("purpose") in ("voice", "gather-action"):
                line = f"webhook {details['purpose']} → HTTP {details.get('status')}"
            elif kind == "conference.event":
                line = f"conference {details.get('event')}"
            elif kind == "twiml.verb" and details.get("verb") == "Say":
                line = f"said: {details.get('text')}"
            if line:
                print(f"    {event['t']:6.2f}s  {line}", file=self.out)

    async def aclose(self) -> None:
        await self.gateway.aclose()
        await self.sandbox.aclose()


def demo_key(config_dir: Path, psap: str) -> str:
    return add_key(config_dir, org=psap, role=Role.PSAP, name="demo")


async def run_demo(
    gateway: str, sandbox: str, key: str, psap: str, *, hold_s: float, out: Any
) -> dict[str, Any]:
    demo = Demo(gateway, sandbox, key, psap, out)
    try:
        return await demo.run(hold_s)
    finally:
        await demo.aclose()
