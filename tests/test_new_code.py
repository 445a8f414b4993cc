"""``POST /v1/transfers/{id}/code`` (DESIGN.md §9): a new bridge code, the old one refused at
once — end to end with the Twilio sandbox keying codes into the bridge line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core import keys
from gateway.core.settings import Settings
from gateway.transfer.service import code_digest
from gateway.web.twilio import WRONG_CODE
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import BRIDGE, PRIMARY, PSAP, SAFE, short_ring_timeouts, wired

pytestmark = pytest.mark.slow


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def psap_key(make_key: KeyMaker, config_dir: Path) -> str:
    short_ring_timeouts(config_dir)
    return make_key(PSAP, "psap")


async def renew(client: TestClient[Any, Any], transfer_id: str, key: str) -> tuple[int, Any]:
    resp = await client.post(f"/v1/transfers/{transfer_id}/code", headers=bearer(key))
    return resp.status, await resp.json()


async def test_the_old_code_is_refused_and_the_new_one_bridges(
    make_client: AppFactory, settings: Settings, psap_key: str, redis: Any
) -> None:
    answer = PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=0.5)
    async with wired(make_client, settings, psap_key, parties={PRIMARY: answer}) as line:
        opened = await line.open()
        old = opened["bridge_code"]
        status, renewed = await renew(line.client, opened["id"], psap_key)
        assert status == 200, renewed
        new = renewed["bridge_code"]
        assert new != old
        assert len(new) == 6
        assert new.isdigit()
        assert renewed["bridge_number"] == BRIDGE
        assert renewed["state"] == "awaiting_bridge"
        assert renewed["id"] == opened["id"]
        assert datetime.fromisoformat(renewed["bridge_expires_at"]) > datetime.fromisoformat(
            opened["bridge_expires_at"]
        )
        assert renewed["version"] == opened["version"] + 1
        assert await redis.get(keys.bridge_code(code_digest(old))) is None
        shown = await line.get(opened["id"])
        assert "bridge_code" not in shown, "the code is shown once, in the answer"

        # One call keys the old code (refused as a wrong code), then the new one (bridged).
        call_sid = line.dial_bridge(old, new)
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "twiml.verb"
                and e["details"].get("call_sid") == call_sid
                and WRONG_CODE in (e["details"].get("text") or "")
            ),
            timeout=10,
        )
        connected = await line.wait_state(opened["id"], "connected")
        assert connected["psap_call_sid"] == call_sid
        assert connected["attempts"][0]["destination_id"] == "crisis-connections-988"
        listed = await line.client.get("/v1/transfers", headers=line.headers)
        item = (await listed.json())["items"][0]
        assert item == await line.get(opened["id"]), "listed exactly as GET shows it"
        assert item["attempts"][0]["call_sid"]

        # Bridged: no new code any more.
        status, body = await renew(line.client, opened["id"], psap_key)
        assert status == 409, body
        assert body["error"]["code"] == "conflict"


async def test_an_old_code_alone_opens_nothing(
    make_client: AppFactory, settings: Settings, psap_key: str
) -> None:
    async with wired(make_client, settings, psap_key) as line:
        opened = await line.open()
        status, renewed = await renew(line.client, opened["id"], psap_key)
        assert status == 200, renewed
        status, again = await renew(line.client, opened["id"], psap_key)
        assert status == 200, again
        wrong = next(c for c in ("000000", "111111") if c != again["bridge_code"])
        call_sid = line.dial_bridge(opened["bridge_code"], renewed["bridge_code"], wrong)
        await line.sandbox.wait_for(
            lambda e: (
                e["kind"] == "twiml.verb"
                and e["details"].get("call_sid") == call_sid
                and "could not be verified" in (e["details"].get("text") or "")
            ),
            timeout=15,
        )
        after = await line.get(opened["id"])
        assert after["state"] == "awaiting_bridge", "neither earlier code bridged it"
        assert after["version"] == opened["version"] + 2


async def test_who_may_ask_and_when(
    client: TestClient[Any, Any], make_key: KeyMaker, redis: Any
) -> None:
    psap = make_key(PSAP, "psap")
    body = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
    resp = await client.post("/v1/transfers", json=body, headers=bearer(psap))
    opened = await resp.json()

    for role, org in (("crisis_center", "crisis-connections"), ("admin", "ops")):
        status, error = await renew(client, opened["id"], make_key(org, role))
        assert status == 403, (role, error)
    status, error = await renew(client, opened["id"], make_key("other-psap", "psap"))
    assert status == 403, error
    status, error = await renew(client, "tr_" + "0" * 24, psap)
    assert status == 404, error
    status, error = await renew(client, "not-an-id", psap)
    assert status == 404, error
    assert await redis.get(keys.bridge_code(code_digest(opened["bridge_code"]))) is not None

    kept = await client.post(
        "/v1/transfers",
        json={**body, "screening": {**SAFE, "weapons": True}},
        headers=bearer(psap),
    )
    status, error = await renew(client, (await kept.json())["id"], psap)
    assert status == 409, error
    resp = await client.post(f"/v1/transfers/{opened['id']}/cancel", headers=bearer(psap))
    assert resp.status == 200
    status, error = await renew(client, opened["id"], psap)
    assert status == 409, error
    assert error["error"]["details"] == [{"state": "cancelled", "event": "new_code"}]
    codes = [k async for k in redis.scan_iter(match=keys.PREFIX + "bridge:*")]
    assert codes == [], "a refused request leaves no code behind"
