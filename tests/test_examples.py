"""``examples/receiver.py``, run as an integrator would, takes what the gateway's real signing
adapters send and refuses a tampered, a replayed or a wrongly keyed notice."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from adapters.cad_http import HttpCadSink
from adapters.notify_http import HttpNotifier
from gateway.core.ports import CadError, NoticeError
from gateway.core.signing import HEADER, sign
from gateway.handback.eido import Agency, EidoFacts, build
from gateway.handback.models import HandbackReason, Location
from gateway.handback.notices import HandbackContact
from gateway.handback.states import HandbackState
from tests.conftest import ROOT

SECRET = "shared-with-the-receiver"


@dataclass
class Running:
    url: str
    process: asyncio.subprocess.Process

    async def next_notice(self, within_s: float = 10) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within_s)
        assert line, "the receiver exited"
        taken: dict[str, Any] = json.loads(line)
        return taken


@pytest.fixture
async def receiver() -> AsyncIterator[Running]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "receiver.py"),
        "--port",
        "0",
        "--tolerance",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "RECEIVER_SECRET": SECRET},
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 20)
        yield Running(json.loads(first)["listening"] + "notices", process)
    finally:
        process.terminate()
        await process.wait()


def contact_notice() -> dict[str, Any]:
    return HandbackContact(
        handback_id="hb_" + "a" * 24,
        transfer_id=None,
        psap_id="kc-valleycom",
        eido_id="urn:emergency:uid:incidentid:hb_aaaa:gateway.example.test",
        state=HandbackState.COMPLETED,
        contact_made=True,
        at=datetime(2026, 3, 8, 3, 41, tzinfo=UTC),
        note="officer spoke with her — café on 4th",  # non-ASCII: sent as UTF-8, unescaped
    ).body()


def eido() -> dict[str, Any]:
    return build(
        EidoFacts(
            handback_id="hb_" + "b" * 24,
            domain="gateway.example.test",
            now=datetime(2026, 3, 8, 3, 15, tzinfo=UTC),
            psap=Agency("kc-valleycom", "Valley Communications Center"),
            center=Agency("crisis-connections", "Crisis Connections 988"),
            reason=HandbackReason.IMMINENT_RISK,
            live=False,
            location=Location(address="1200 Main St, Kent, WA"),
            callback_number="+12065550123",
        )
    )


async def test_the_receiver_takes_what_the_gateway_signs(receiver: Running) -> None:
    notifier = HttpNotifier(timeout_s=5)
    cad = HttpCadSink(timeout_s=5)
    try:
        notice = contact_notice()
        await notifier.send(receiver.url, notice, secret=SECRET, idempotency_key="hb_a:contact")
        taken = await receiver.next_notice()
        assert taken == {
            "type": "handback.contact",
            "idempotency_key": "hb_a:contact",
            "duplicate": False,
            "body": notice,
        }
        document = eido()
        await cad.deliver(receiver.url, document, secret=SECRET, idempotency_key="eido-1")
        taken = await receiver.next_notice()
        assert (taken["type"], taken["body"]) == ("eido", document)
        # The same notice again (a retry whose answer was lost): taken, and known as such.
        await notifier.send(receiver.url, notice, secret=SECRET, idempotency_key="hb_a:contact")
        assert (await receiver.next_notice())["duplicate"] is True
    finally:
        await notifier.aclose()
        await cad.aclose()


async def test_the_receiver_refuses_a_wrong_key_a_tampered_body_and_a_replay(
    receiver: Running,
) -> None:
    notifier = HttpNotifier(timeout_s=5)
    try:
        with pytest.raises(NoticeError, match="HTTP 401"):
            await notifier.send(
                receiver.url, contact_notice(), secret="not-the-secret", idempotency_key="k1"
            )
    finally:
        await notifier.aclose()
    cad = HttpCadSink(timeout_s=5)
    try:
        with pytest.raises(CadError, match="HTTP 401") as refused:
            await cad.deliver(receiver.url, eido(), secret="not-the-secret", idempotency_key="k2")
        assert refused.value.retryable is False  # a CAD's 401 is not retried
    finally:
        await cad.aclose()

    body = json.dumps(contact_notice(), separators=(",", ":"), ensure_ascii=False).encode()
    now = int(time.time())
    async with httpx.AsyncClient(timeout=5) as http:

        async def post(content: bytes, signature: str) -> httpx.Response:
            headers = {HEADER: signature, "Idempotency-Key": "k3"}
            return await http.post(receiver.url, content=content, headers=headers)

        tampered = body.replace(b'"contact_made":true', b'"contact_made":false')
        answer = await post(tampered, sign(SECRET, body, now))
        assert (answer.status_code, answer.json()["error"]) == (401, "signature does not match")
        # A notice signed ten minutes ago, replayed: refused though the MAC is right.
        answer = await post(body, sign(SECRET, body, now - 600))
        assert answer.status_code == 401
        assert answer.json()["error"] == "signature timestamp outside the tolerance"
        # ...and so is one with its timestamp moved: the timestamp is inside the MAC.
        stale = sign(SECRET, body, now - 600)
        answer = await post(body, stale.replace(f"t={now - 600}", f"t={now}"))
        assert answer.status_code == 401
        answer = await post(body, "")
        assert answer.status_code == 401
        # Signed right and on time: taken.
        answer = await post(body, sign(SECRET, body, now))
        assert answer.status_code == 200
    taken = await receiver.next_notice()
    assert taken["body"] == contact_notice()
