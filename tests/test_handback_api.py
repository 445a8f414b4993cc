"""``/v1/handbacks`` and dispositions over real HTTP on real Redis: shapes, validation, org
scoping, contact confirmation and the ``unconfirmed`` timer across two instances."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.handback.store import HandbackStore
from gateway.models import Attempt, encode_fields
from gateway.signing import verify
from gateway.states import TransferEvent, TransferState
from gateway.store import TransferStore
from gateway.transfers import expiry_timer_id
from tests.conftest import AppFactory, KeyMaker
from tests.test_eido import eido_errors

PSAP = "kc-valleycom"
CENTER = "crisis-connections"
CENTER_DEST = "crisis-connections-988"
OTHER_CENTER = "wa-988"
SECRET = "shared-with-crisis-connections"
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
FULL = {
    "reason": "imminent_risk",
    "location": {"address": "1200 Main St, Kent", "lat": 47.381234, "lon": -122.234567},
    "callback_number": "+12065550123",
    "risk": {"weapons": False, "means_access": True, "summary": "stockpiled pills, plan tonight"},
    "counselor_ref": "c-104",
}


@dataclass
class Keys:
    psap: str
    center: str
    other_center: str
    other_psap: str
    admin: str
    headers: dict[str, dict[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {
            name: {"Authorization": f"Bearer {getattr(self, name)}"}
            for name in ("psap", "center", "other_center", "other_psap", "admin")
        }


@pytest.fixture
def keys(make_key: KeyMaker) -> Keys:
    return Keys(
        psap=make_key(PSAP, "psap"),
        center=make_key(CENTER, "crisis_center"),
        other_center=make_key(OTHER_CENTER, "crisis_center"),
        other_psap=make_key("other-psap", "psap"),
        admin=make_key("ops", "admin"),
    )


def with_notify_url(config_dir: Path, url: str) -> None:
    destinations = config_dir / "destinations.yaml"
    destinations.write_text(
        destinations.read_text().replace(
            "    org: crisis-connections\n",
            f"    org: crisis-connections\n    notify_url: {url}\n"
            "    notify_secret_env: CC_NOTIFY_SECRET\n",
        )
    )


@dataclass
class Receiver:
    """A 988 center's notice endpoint that verifies every signature."""

    url: str
    notices: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [n for n in self.notices if n["type"] == kind]


@pytest.fixture
async def receiver(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Receiver]:
    found: Receiver | None = None

    async def notice(request: web.Request) -> web.Response:
        assert found is not None
        body = await request.read()
        if not verify(SECRET, body, request.headers.get("X-Gateway-Signature", "")):
            found.bad_signatures += 1
            return web.Response(status=401)
        found.notices.append(json.loads(body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notices", notice)
    async with TestServer(app, host="127.0.0.1") as server:
        found = Receiver(f"http://127.0.0.1:{server.port}/notices")
        with_notify_url(config_dir, found.url)
        monkeypatch.setenv("CC_NOTIFY_SECRET", SECRET)
        yield found


async def open_transfer(client: TestClient[Any, Any], keys: Keys) -> str:
    body = {
        "psap_id": PSAP,
        "caller_type": "first_person",
        "screening": SAFE,
        "callback_number": "+12065550123",
    }
    resp = await client.post("/v1/transfers", json=body, headers=keys.headers["psap"])
    assert resp.status == 201, await resp.text()
    transfer_id: str = (await resp.json())["id"]
    return transfer_id


async def connect(store: TransferStore, transfer_id: str, *, complete: bool = False) -> None:
    """Bring a transfer to ``connected`` (then ``completed``) as the Twilio callbacks would."""
    transfer = await store.get(transfer_id)
    now = datetime.now(UTC)
    ringing = Attempt(destination_id=CENTER_DEST, started_at=now)
    await store.transition(
        transfer_id,
        TransferEvent.BRIDGED,
        psap_id=PSAP,
        expected_state=TransferState.AWAITING_BRIDGE,
        fields=encode_fields(attempts=[ringing], psap_call_sid="CA" + "1" * 32),
        disarm=[expiry_timer_id(transfer_id)],
        void_code=transfer.bridge_code_digest,
    )
    answered = ringing.model_copy(update={"outcome": "answered", "ended_at": now})
    await store.transition(
        transfer_id,
        TransferEvent.ANSWERED,
        psap_id=PSAP,
        fields=encode_fields(
            attempts=[answered], connected_destination_id=CENTER_DEST, connected_at=now
        ),
    )
    if complete:
        await store.transition(transfer_id, TransferEvent.CONFERENCE_ENDED, psap_id=PSAP)


async def hand_back(
    client: TestClient[Any, Any], keys: Keys, who: str = "center", **body: Any
) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/handbacks", json=body, headers=keys.headers[who])
    data: dict[str, Any] = await resp.json()
    return resp.status, data


async def test_a_data_only_handback_returns_a_bridge_code_and_keeps_its_eido(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    status, created = await hand_back(client, keys, psap_id=PSAP, **FULL)
    assert status == 201, created
    assert created["id"].startswith("hb_")
    assert created["state"] == "awaiting_bridge"
    assert created["mode"] == "data"
    assert created["flags"] == []
    assert created["psap_id"] == PSAP
    assert created["transfer_id"] is None
    assert created["reason"] == "imminent_risk"
    assert len(created["bridge_code"]) == 6
    assert created["bridge_code"].isdigit()
    assert (
        created["eido_id"] == f"urn:emergency:uid:incidentid:{created['id']}:gateway.example.test"
    )
    assert created["cad"] == {"status": "kept", "attempts": 0, "delivered_at": None}
    assert "location" not in created
    assert "callback_number" not in created

    resp = await client.get(f"/v1/handbacks/{created['id']}", headers=keys.headers["psap"])
    shown = await resp.json()
    assert resp.status == 200
    assert "bridge_code" not in shown
    assert shown["state"] == "awaiting_bridge"

    resp = await client.get(f"/v1/handbacks/{created['id']}/eido", headers=keys.headers["psap"])
    assert resp.status == 200
    assert resp.content_type == "application/json"
    eido = await resp.json()
    assert eido_errors(eido) == []
    assert eido["$id"] == created["eido_id"]
    assert eido["callbackComponent"][0]["callBackInformationUri"] == ["tel:+12065550123"]


async def test_without_a_location_the_handback_is_flagged(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    status, created = await hand_back(
        client, keys, psap_id=PSAP, reason="attempt_in_progress", location=None
    )
    assert status == 201, created
    assert created["flags"] == ["location_unknown"]
    resp = await client.get(f"/v1/handbacks/{created['id']}/eido", headers=keys.headers["admin"])
    eido = await resp.json()
    assert eido_errors(eido) == []
    notes = " ".join(n["notesActionComments"] for n in eido["notesComponent"])
    assert "Please locate the caller" in notes


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"callback_number": "206-555-0123"}, "callback_number"),
        ({"location": {"lat": 91, "lon": 0}}, "location.lat"),
        ({"location": {"lat": 47.1, "lon": -181}}, "location.lon"),
        ({"location": {"lat": 47.1}}, "location"),
        ({"reason": "bored"}, "reason"),
        ({"risk": {"summary": "x" * 501}}, "risk.summary"),
        ({"counselor_ref": "has spaces in it"}, "counselor_ref"),
        ({"transfer_id": "not-a-transfer"}, "transfer_id"),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: TestClient[Any, Any], keys: Keys, change: dict[str, Any], path: str
) -> None:
    status, body = await hand_back(client, keys, **{"psap_id": PSAP, **FULL, **change})
    assert status == 422, body
    assert body["error"]["code"] == "invalid"
    assert path in [d["path"] for d in body["error"]["details"]]
    assert "206-555-0123" not in json.dumps(body)


async def test_neither_transfer_nor_psap_and_malformed_bodies(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    status, body = await hand_back(client, keys, reason="other")
    assert status == 422
    message = body["error"]["details"][0]["message"]
    assert "transfer_id" in message
    assert "psap_id" in message
    resp = await client.post("/v1/handbacks", data=b"{nope", headers=keys.headers["center"])
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"
    resp = await client.post(
        f"/v1/handbacks/hb_{'0' * 24}/contact",
        json={"contact_made": "maybe"},
        headers=keys.headers["psap"],
    )
    assert resp.status == 422
    resp = await client.post(
        f"/v1/handbacks/hb_{'0' * 24}/contact",
        json={"contact_made": True},
        headers=keys.headers["psap"],
    )
    assert resp.status == 404
    status, body = await hand_back(client, keys, psap_id="nowhere", reason="other")
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_who_may_hand_back_and_read(
    client: TestClient[Any, Any], keys: Keys, make_key: KeyMaker
) -> None:
    status, _ = await hand_back(client, keys, "psap", psap_id=PSAP, reason="other")
    assert status == 403
    stranger = make_key("no-destinations-here", "crisis_center")
    resp = await client.post(
        "/v1/handbacks",
        json={"psap_id": PSAP, "reason": "other"},
        headers={"Authorization": f"Bearer {stranger}"},
    )
    assert resp.status == 403
    assert "does not serve" in (await resp.json())["error"]["message"]

    status, created = await hand_back(client, keys, psap_id=PSAP, reason="other")
    assert status == 201
    url = f"/v1/handbacks/{created['id']}"
    expected = {"psap": 200, "center": 200, "admin": 200, "other_center": 403, "other_psap": 403}
    for who, code in expected.items():
        assert (await client.get(url, headers=keys.headers[who])).status == code, who
    eido = {"psap": 200, "admin": 200, "center": 403, "other_psap": 403}
    for who, code in eido.items():
        assert (await client.get(url + "/eido", headers=keys.headers[who])).status == code, who
    assert (
        await client.get(f"/v1/handbacks/hb_{'0' * 24}", headers=keys.headers["admin"])
    ).status == 404
    assert (await client.get("/v1/handbacks/nope", headers=keys.headers["admin"])).status == 404


async def test_a_center_hands_back_only_its_own_transfers(
    client: TestClient[Any, Any], keys: Keys, store: TransferStore, make_key: KeyMaker
) -> None:
    transfer_id = await open_transfer(client, keys)
    clinicians = {"Authorization": f"Bearer {make_key('kc-clinicians', 'crisis_center')}"}
    # Not connected yet: an org of the chain gets 409, an org outside it 403.
    status, body = await hand_back(client, keys, transfer_id=transfer_id, reason="other")
    assert status == 409, body
    resp = await client.post(
        "/v1/handbacks", json={"transfer_id": transfer_id, "reason": "other"}, headers=clinicians
    )
    assert resp.status == 403
    await connect(store, transfer_id, complete=True)
    status, _ = await hand_back(
        client, keys, "other_center", transfer_id=transfer_id, reason="other"
    )
    assert status == 403
    status, body = await hand_back(
        client, keys, transfer_id=transfer_id, psap_id="other-psap", reason="other"
    )
    assert status == 422
    # Completed: no live call any more, so a data-only handback linked to the transfer.
    status, created = await hand_back(client, keys, transfer_id=transfer_id, reason="medical")
    assert status == 201, created
    assert created["mode"] == "data"
    assert created["transfer_id"] == transfer_id
    eido = await (
        await client.get(f"/v1/handbacks/{created['id']}/eido", headers=keys.headers["psap"])
    ).json()
    assert eido_errors(eido) == []
    assert eido["linkComponent"][0]["incidentTrackingIdentifier"].endswith(
        f":{transfer_id}:gateway.example.test"
    )
    # The transfer's callback number was carried over.
    assert eido["callbackComponent"][0]["callBackInformationUri"] == ["tel:+12065550123"]


async def test_dispositions_once_by_the_connected_org(
    client: TestClient[Any, Any], keys: Keys, store: TransferStore
) -> None:
    transfer_id = await open_transfer(client, keys)
    url = f"/v1/transfers/{transfer_id}/disposition"
    body = {"outcome": "resolved_by_phone", "police_involved": False}
    early = await client.post(url, json=body, headers=keys.headers["center"])
    assert early.status == 409
    await connect(store, transfer_id)
    assert (await client.post(url, json=body, headers=keys.headers["psap"])).status == 403
    assert (await client.post(url, json=body, headers=keys.headers["other_center"])).status == 403
    bad = await client.post(url, json={"outcome": "vanished"}, headers=keys.headers["center"])
    assert bad.status == 422
    paths = {d["path"] for d in (await bad.json())["error"]["details"]}
    assert paths == {"outcome", "police_involved"}

    first, second = await asyncio.gather(
        client.post(url, json=body, headers=keys.headers["center"]),
        client.post(
            url,
            json={"outcome": "mobile_crisis_dispatched", "police_involved": True},
            headers=keys.headers["center"],
        ),
    )
    assert sorted([first.status, second.status]) == [200, 409]
    shown = await (
        await client.get(f"/v1/transfers/{transfer_id}", headers=keys.headers["psap"])
    ).json()
    winner = await (first if first.status == 200 else second).json()
    assert shown["disposition"] == winner["disposition"]
    assert shown["disposition"]["destination_id"] == CENTER_DEST
    audit = [e for e in await store.audit(transfer_id) if e["event"] == "disposition"]
    assert len(audit) == 1
    assert audit[0]["actor"].startswith("crisis_center:crisis-connections:")
    assert shown["state"] == "connected"
    assert (await client.post(url, json=body, headers=keys.headers["center"])).status == 409


async def test_contact_confirmation_is_recorded_once_and_the_center_told(
    make_client: AppFactory, keys: Keys, receiver: Receiver
) -> None:
    client = await make_client()
    _, created = await hand_back(client, keys, psap_id=PSAP, **FULL)
    url = f"/v1/handbacks/{created['id']}/contact"
    body = {"contact_made": True, "note": "units on scene", "at": "2026-03-08T03:40:00-08:00"}
    assert (await client.post(url, json=body, headers=keys.headers["center"])).status == 403
    assert (await client.post(url, json=body, headers=keys.headers["other_psap"])).status == 403
    bad = await client.post(
        url, json={"contact_made": True, "at": "yesterday"}, headers=keys.headers["psap"]
    )
    assert bad.status == 422
    resp = await client.post(url, json=body, headers=keys.headers["psap"])
    assert resp.status == 200, await resp.text()
    shown = await resp.json()
    assert shown["contact"]["contact_made"] is True
    assert shown["contact"]["note"] == "units on scene"
    assert shown["contact"]["at"] == "2026-03-08T03:40:00-08:00"
    assert shown["notices"]["contact"]["delivered"] is True
    again = await client.post(url, json=body, headers=keys.headers["psap"])
    assert again.status == 409
    (notice,) = receiver.of_type("handback.contact")
    assert notice["handback_id"] == created["id"]
    assert notice["contact_made"] is True
    assert notice["note"] == "units on scene"
    assert receiver.bad_signatures == 0


async def test_a_center_without_notify_url_is_recorded_as_not_told(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    _, created = await hand_back(client, keys, psap_id=PSAP, **FULL)
    resp = await client.post(
        f"/v1/handbacks/{created['id']}/contact",
        json={"contact_made": False},
        headers=keys.headers["psap"],
    )
    shown = await resp.json()
    assert resp.status == 200
    assert set(shown["flags"]) == {"no_contact", "center_not_notified"}
    assert shown["notices"]["contact"]["delivered"] is False
    assert "notify_url" in shown["notices"]["contact"]["error"]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_notices_failed_total{kind="handback_contact"} 1.0' in metrics


async def test_the_unconfirmed_timer_fires_once_across_two_instances(
    make_client: AppFactory, keys: Keys, receiver: Receiver, redis: Any
) -> None:
    first = await make_client(handback_confirm_timeout_s=1)
    second = await make_client(handback_confirm_timeout_s=1)
    _, flagged = await hand_back(first, keys, psap_id=PSAP, **FULL)
    _, confirmed = await hand_back(second, keys, psap_id=PSAP, **FULL)
    resp = await second.post(
        f"/v1/handbacks/{confirmed['id']}/contact",
        json={"contact_made": True},
        headers=keys.headers["psap"],
    )
    assert resp.status == 200
    deadline = asyncio.get_running_loop().time() + 10
    while not receiver.of_type("handback.unconfirmed"):
        assert asyncio.get_running_loop().time() < deadline, "the unconfirmed notice never came"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # time for a second firing, if there were one
    (notice,) = receiver.of_type("handback.unconfirmed")
    assert notice["handback_id"] == flagged["id"]
    shown = await (
        await first.get(f"/v1/handbacks/{flagged['id']}", headers=keys.headers["center"])
    ).json()
    assert shown["flags"] == ["unconfirmed"]
    assert shown["notices"]["unconfirmed"]["delivered"] is True
    still = await (
        await first.get(f"/v1/handbacks/{confirmed['id']}", headers=keys.headers["center"])
    ).json()
    assert "unconfirmed" not in still["flags"]
    audit = await HandbackStore(redis).audit(flagged["id"])
    assert [e["event"] for e in audit].count("unconfirmed") == 1
    counts = []
    for instance in (first, second):
        text = await (await instance.get("/metrics")).text()
        counts.append('gateway_handbacks_total{outcome="unconfirmed"} 1.0' in text)
    assert counts.count(True) == 1, "exactly one instance counted it"
    # A late confirmation is still recorded (and the flag stays: it was late).
    late = await first.post(
        f"/v1/handbacks/{flagged['id']}/contact",
        json={"contact_made": True},
        headers=keys.headers["psap"],
    )
    assert late.status == 200
    assert (await late.json())["flags"] == ["unconfirmed"]


async def test_handback_routes_are_in_openapi(client: TestClient[Any, Any]) -> None:
    document = await (await client.get("/openapi.json")).json()
    for path in (
        "/v1/handbacks",
        "/v1/handbacks/{id}",
        "/v1/handbacks/{id}/eido",
        "/v1/handbacks/{id}/contact",
        "/v1/transfers/{id}/disposition",
    ):
        assert path in document["paths"], path
