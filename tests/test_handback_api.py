"""``/v1/handbacks`` and dispositions over real HTTP on real Redis: shapes, validation, org
scoping, contact confirmation and the ``unconfirmed`` timer across two instances."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.records import encode_fields
from gateway.core.signing import verify
from gateway.handback.service import confirm_timer_id
from gateway.handback.store import HandbackStore
from gateway.transfer.models import Attempt
from gateway.transfer.service import expiry_timer_id
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import TransferStore
from gateway.web.appkeys import HANDBACKS
from tests.conftest import ROOT, AppFactory, KeyMaker
from tests.telephony import SAFE
from tests.test_eido import eido_errors

PSAP = "kc-valleycom"
CENTER = "crisis-connections"
CENTER_DEST = "crisis-connections-988"
OTHER_CENTER = "wa-988"
SECRET = "shared-with-crisis-connections"
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
    refuse: int = 0
    """Answer this many notices 503 (the center's endpoint down) before taking any."""

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
        if found.refuse > 0:
            found.refuse -= 1
            return web.Response(status=503)
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


async def connect(
    store: TransferStore, transfer_id: str, *, psap_id: str = PSAP, complete: bool = False
) -> None:
    """Bring a transfer to ``connected`` (then ``completed``) as the Twilio callbacks would."""
    transfer = await store.get(transfer_id)
    now = datetime.now(UTC)
    ringing = Attempt(destination_id=CENTER_DEST, started_at=now)
    await store.transition(
        transfer_id,
        TransferEvent.BRIDGED,
        psap_id=psap_id,
        expected_state=TransferState.AWAITING_BRIDGE,
        fields=encode_fields(attempts=[ringing], psap_call_sid="CA" + "1" * 32),
        disarm=[expiry_timer_id(transfer_id)],
        void_code=transfer.bridge_code_digest,
    )
    answered = ringing.model_copy(update={"outcome": "answered", "ended_at": now})
    await store.transition(
        transfer_id,
        TransferEvent.ANSWERED,
        psap_id=psap_id,
        fields=encode_fields(
            attempts=[answered], connected_destination_id=CENTER_DEST, connected_at=now
        ),
    )
    if complete:
        await store.transition(transfer_id, TransferEvent.CONFERENCE_ENDED, psap_id=psap_id)


async def hand_back(
    client: TestClient[Any, Any], keys: Keys, who: str = "center", **body: Any
) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/handbacks", json=body, headers=keys.headers[who])
    data: dict[str, Any] = await resp.json()
    return resp.status, data


async def told(
    client: TestClient[Any, Any], keys: Keys, handback_id: str, kind: str, within_s: float = 5
) -> dict[str, Any]:
    """The handback once its ``kind`` notice is recorded (the notice timer sends it)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        resp = await client.get(f"/v1/handbacks/{handback_id}", headers=keys.headers["psap"])
        shown: dict[str, Any] = await resp.json()
        if kind in shown["notices"]:
            return shown
        assert asyncio.get_running_loop().time() < deadline, f"no {kind} notice: {shown}"
        await asyncio.sleep(0.05)


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
        ({"callback_number": "206-555-012"}, "callback_number"),
        ({"location": {"lat": 91, "lon": 0}}, "location.lat"),
        ({"location": {"lat": 47.1, "lon": -181}}, "location.lon"),
        ({"location": {"lat": 47.1}}, "location"),
        ({"reason": "bored"}, "reason"),
        ({"risk": {"summary": "x" * 501}}, "risk.summary"),
        ({"counselor_ref": "c" * 101}, "counselor_ref"),
        ({"counselor_ref": "c-1\u0000"}, "counselor_ref"),
        ({"location": {"address": "12 Elm\u0000St"}}, "location.address"),
        ({"location": {"description": "by the \u0007 river"}}, "location.description"),
        ({"risk": {"summary": "pills\u001b[2J"}}, "risk.summary"),
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


async def test_lenient_where_an_integrator_may_differ(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    status, created = await hand_back(
        client,
        keys,
        psap_id=PSAP,
        reason="other",
        risk=None,
        counselor_ref="Ana O'Neil (nights)",
        location={"description": "second floor\nback stairs"},
    )
    assert status == 201, created
    eido = await (
        await client.get(f"/v1/handbacks/{created['id']}/eido", headers=keys.headers["psap"])
    ).json()
    assert eido_errors(eido) == []
    assert eido["agentComponent"][0]["$id"].startswith("Ana%20O%27Neil%20%28nights%29@")
    assert "cautionComponent" not in eido
    resp = await client.post(
        f"/v1/handbacks/{created['id']}/contact",
        json={"contact_made": True, "note": "on scene\u0000"},
        headers=keys.headers["psap"],
    )
    assert resp.status == 422
    assert [d["path"] for d in (await resp.json())["error"]["details"]] == ["note"]


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
    shown = await told(client, keys, created["id"], "contact")
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
    assert resp.status == 200
    assert (await resp.json())["flags"] == ["no_contact"]
    shown = await told(client, keys, created["id"], "contact")
    assert set(shown["flags"]) == {"no_contact", "center_not_notified"}
    assert shown["notices"]["contact"]["delivered"] is False
    assert "notify_url" in shown["notices"]["contact"]["error"]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_notices_failed_total{kind="handback_contact"} 1.0' in metrics


async def test_the_unconfirmed_flag_is_set_once_across_two_instances(
    make_client: AppFactory, keys: Keys, receiver: Receiver, redis: Any
) -> None:
    # The confirmation window is long, so nothing fires on its own: both instances' handlers
    # are run at once, twice each, as two timer workers that both claimed it would.
    first = await make_client(handback_confirm_timeout_s=3600)
    second = await make_client(handback_confirm_timeout_s=3600)
    _, flagged = await hand_back(first, keys, psap_id=PSAP, **FULL)
    _, confirmed = await hand_back(second, keys, psap_id=PSAP, **FULL)
    resp = await second.post(
        f"/v1/handbacks/{confirmed['id']}/contact",
        json={"contact_made": True},
        headers=keys.headers["psap"],
    )
    assert resp.status == 200
    services = [first.app[HANDBACKS], second.app[HANDBACKS]]
    await asyncio.gather(
        *(
            service.on_confirm_timer(confirm_timer_id(h["id"]), {"handback_id": h["id"]})
            for service in services * 2
            for h in (flagged, confirmed)
        )
    )
    shown = await told(first, keys, flagged["id"], "unconfirmed")
    assert shown["flags"] == ["unconfirmed"]
    assert shown["notices"]["unconfirmed"]["delivered"] is True
    await asyncio.sleep(0.5)  # time for a second notice, if there were one
    (notice,) = receiver.of_type("handback.unconfirmed")
    assert notice["handback_id"] == flagged["id"]
    still = await (
        await first.get(f"/v1/handbacks/{confirmed['id']}", headers=keys.headers["center"])
    ).json()
    assert "unconfirmed" not in still["flags"]
    audit = await HandbackStore(redis).audit(flagged["id"])
    assert [e["event"] for e in audit].count("unconfirmed") == 1
    counted = []
    for instance in (first, second):
        text = await (await instance.get("/metrics")).text()
        counted.append('gateway_handbacks_total{outcome="unconfirmed"} 1.0' in text)
    assert counted.count(True) == 1, "exactly one instance counted it"
    # A late confirmation is still recorded: the flag clears (the handback is confirmed now),
    # and when the deadline passed stays on the record.
    late = await first.post(
        f"/v1/handbacks/{flagged['id']}/contact",
        json={"contact_made": True},
        headers=keys.headers["psap"],
    )
    assert late.status == 200
    confirmed = await late.json()
    assert confirmed["flags"] == []
    assert confirmed["unconfirmed_at"] is not None


async def test_the_unconfirmed_timer_fires_on_its_own(
    make_client: AppFactory, keys: Keys, receiver: Receiver
) -> None:
    client = await make_client(handback_confirm_timeout_s=1)
    _, created = await hand_back(client, keys, psap_id=PSAP, **FULL)
    shown = await told(client, keys, created["id"], "unconfirmed", within_s=10)
    assert shown["flags"] == ["unconfirmed"]
    assert [n["handback_id"] for n in receiver.of_type("handback.unconfirmed")] == [created["id"]]


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


async def move_destination(
    client: TestClient[Any, Any], keys: Keys, destination_id: str, org: str
) -> None:
    """An administrator gives ``destination_id`` to another org (a new policy version)."""
    doc = await (await client.get("/v1/admin/routing", headers=keys.headers["admin"])).json()
    for destination in doc["destinations"]:
        if destination["id"] == destination_id:
            destination["org"] = org
    resp = await client.put("/v1/admin/routing", json=doc, headers=keys.headers["admin"])
    assert resp.status == 200, await resp.text()


async def test_the_org_recorded_at_decision_time_authorizes_after_a_policy_change(
    client: TestClient[Any, Any], keys: Keys, store: TransferStore, make_key: KeyMaker
) -> None:
    transfer_id = await open_transfer(client, keys)
    await connect(store, transfer_id, complete=True)
    await move_destination(client, keys, CENTER_DEST, "moved-org")
    newcomer = {"Authorization": f"Bearer {make_key('moved-org', 'crisis_center')}"}

    # The org that now owns the destination in the policy did not take this call.
    resp = await client.post(
        "/v1/handbacks", json={"transfer_id": transfer_id, "reason": "other"}, headers=newcomer
    )
    assert resp.status == 403, await resp.text()
    url = f"/v1/transfers/{transfer_id}/disposition"
    body = {"outcome": "handed_back_to_911", "police_involved": True}
    assert (await client.post(url, json=body, headers=newcomer)).status == 403

    # The center that took it still hands back and disposes.
    status, created = await hand_back(client, keys, transfer_id=transfer_id, reason="medical")
    assert status == 201, created
    eido = await (
        await client.get(f"/v1/handbacks/{created['id']}/eido", headers=keys.headers["psap"])
    ).json()
    assert eido_errors(eido) == []
    assert eido["agencyComponent"][1]["$id"].startswith("crisis-center.crisis-connections.")
    resp = await client.post(url, json=body, headers=keys.headers["center"])
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["disposition"]["destination_id"] == CENTER_DEST
    shown = await client.get(f"/v1/handbacks/{created['id']}", headers=keys.headers["center"])
    assert shown.status == 200
    assert (await client.get(f"/v1/handbacks/{created['id']}", headers=newcomer)).status == 403


async def test_a_destination_gone_from_the_policy_still_lets_its_center_hand_back(
    client: TestClient[Any, Any], keys: Keys, store: TransferStore
) -> None:
    transfer_id = await open_transfer(client, keys)
    await connect(store, transfer_id, complete=True)
    doc = await (await client.get("/v1/admin/routing", headers=keys.headers["admin"])).json()
    doc["destinations"] = [d for d in doc["destinations"] if d["id"] != CENTER_DEST]
    for rule in doc["policy"]["rules"]:
        rule["chain"] = [d for d in rule["chain"] if d != CENTER_DEST]
    for psap in doc["psaps"]:
        psap["fallback_destination"] = "wa-988-backup"
    resp = await client.put("/v1/admin/routing", json=doc, headers=keys.headers["admin"])
    assert resp.status == 200, await resp.text()
    status, created = await hand_back(client, keys, transfer_id=transfer_id, reason="other")
    assert status == 201, created
    eido = await (
        await client.get(f"/v1/handbacks/{created['id']}/eido", headers=keys.headers["psap"])
    ).json()
    assert eido_errors(eido) == []


async def test_listing_handbacks_by_role_newest_first(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    ours = []
    for reason in ("other", "medical", "caller_request"):
        status, created = await hand_back(client, keys, psap_id=PSAP, reason=reason)
        assert status == 201
        ours.append(created["id"])
    status, theirs = await hand_back(client, keys, "other_center", psap_id=PSAP, reason="other")
    assert status == 201

    async def listed(who: str, **query: str) -> tuple[int, Any]:
        resp = await client.get("/v1/handbacks", params=query, headers=keys.headers[who])
        return resp.status, await resp.json()

    status, page = await listed("psap")
    assert status == 200, page
    assert [h["id"] for h in page["items"]] == [theirs["id"], *reversed(ours)]
    one = await (await client.get(f"/v1/handbacks/{ours[0]}", headers=keys.headers["psap"])).json()
    assert page["items"][-1] == one, "the same view as GET /v1/handbacks/{id}"
    assert "bridge_code" not in json.dumps(page)

    assert [h["id"] for h in (await listed("center"))[1]["items"]] == list(reversed(ours))
    assert "summary" not in json.dumps((await listed("center"))[1]), "the PSAP's fields only"
    assert [h["id"] for h in (await listed("other_center"))[1]["items"]] == [theirs["id"]]
    assert len((await listed("admin"))[1]["items"]) == 4
    assert len((await listed("admin", psap_id=PSAP, state="awaiting_bridge"))[1]["items"]) == 4
    assert (await listed("admin", state="dialing"))[1]["items"] == []
    limited = (await listed("psap", limit="2"))[1]["items"]
    assert [h["id"] for h in limited] == [theirs["id"], ours[2]]
    today = datetime.now(UTC).date()
    assert len((await listed("psap", **{"from": str(today - timedelta(days=1))}))[1]["items"]) == 4
    assert (await listed("psap", **{"from": str(today + timedelta(days=2))}))[1]["items"] == []
    assert (await listed("psap", to=str(today - timedelta(days=2))))[1]["items"] == []

    assert (await listed("psap", psap_id="other-psap"))[0] == 403
    assert (await listed("other_psap"))[1]["items"] == []
    for bad in ({"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"state": "bogus"},
                {"from": "yesterday"}, {"psap_id": "Not A PSAP"}):  # fmt: skip
        status, body = await listed("admin", **bad)
        assert status == 422, (bad, body)
        assert [d["path"] for d in body["error"]["details"]] == list(bad)


async def test_the_cli_lists_handbacks_and_prints_an_eido(
    client: TestClient[Any, Any], keys: Keys, redis_url: str, config_dir: Path
) -> None:
    _, kept = await hand_back(client, keys, psap_id=PSAP, **FULL)
    _, other = await hand_back(client, keys, psap_id=PSAP, reason="other")
    env = {**os.environ, "GATEWAY_REDIS_URL": redis_url, "GATEWAY_CONFIG_DIR": str(config_dir)}

    async def cli(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "handbacks", *args,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await cli("list", "--format", "json")
    assert code == 0, err
    api = await (await client.get("/v1/handbacks", headers=keys.headers["admin"])).json()
    assert json.loads(out) == api
    assert [h["id"] for h in api["items"]] == [other["id"], kept["id"]]

    code, out, err = await cli("list", "--psap", PSAP, "--state", "awaiting_bridge")
    assert code == 0, err
    assert kept["id"] in out
    assert "awaiting_bridge" in out
    code, out, _ = await cli("list", "--state", "connected")
    assert (code, out.strip()) == (0, "no handbacks")

    code, out, err = await cli("eido", kept["id"])
    assert code == 0, err
    sent = await client.get(f"/v1/handbacks/{kept['id']}/eido", headers=keys.headers["psap"])
    assert out == await sent.text() + "\n"
    assert "1200 Main St" not in err
    code, _, err = await cli("eido", f"hb_{'0' * 24}")
    assert code == 1
    assert "not found" in err


async def test_the_contact_notice_survives_the_instance_that_recorded_the_contact(
    make_client: AppFactory, keys: Keys, receiver: Receiver
) -> None:
    # The first instance's timer worker is asleep (it polls every 10 s): it records the
    # contact and stops before it could tell anyone; the center's endpoint is down meanwhile.
    first = await make_client(timer_poll_s=10)
    _, created = await hand_back(first, keys, psap_id=PSAP, **FULL)
    receiver.refuse = 1_000
    resp = await first.post(
        f"/v1/handbacks/{created['id']}/contact",
        json={"contact_made": True, "note": "units on scene"},
        headers=keys.headers["psap"],
    )
    assert resp.status == 200
    await first.close()
    assert receiver.notices == []

    receiver.refuse = 0
    second = await make_client()
    shown = await told(second, keys, created["id"], "contact")
    assert shown["notices"]["contact"]["delivered"] is True
    assert "center_not_notified" not in shown["flags"]
    (notice,) = receiver.of_type("handback.contact")
    assert notice["handback_id"] == created["id"]
    assert notice["contact_made"] is True
    assert notice["note"] == "units on scene"


async def test_a_refused_notice_is_retried_then_delivered(
    make_client: AppFactory, keys: Keys, receiver: Receiver, redis: Any
) -> None:
    client = await make_client()
    _, created = await hand_back(client, keys, psap_id=PSAP, **FULL)
    receiver.refuse = 1
    resp = await client.post(
        f"/v1/handbacks/{created['id']}/contact",
        json={"contact_made": False},
        headers=keys.headers["psap"],
    )
    assert resp.status == 200
    shown = await told(client, keys, created["id"], "contact", within_s=10)
    assert shown["notices"]["contact"]["delivered"] is True, shown
    assert shown["flags"] == ["no_contact"]
    assert len(receiver.of_type("handback.contact")) == 1
    audit = [
        e for e in await HandbackStore(redis).audit(created["id"]) if e["event"] == "notice_contact"
    ]
    assert [e["attempt"] for e in audit] == ["2"]


async def test_contact_reads_the_natural_spellings_and_an_empty_post(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    """DESIGN §4 names no body field for a contact report: the natural spellings work, a bare
    POST to …/contact says contact was made, and anything else is still refused."""
    cases: list[tuple[dict[str, Any] | None, bool]] = [
        (None, True),
        ({"made_contact": False}, False),
        ({"contacted": True}, True),
        ({"contact": False, "note": "no answer at the door"}, False),
    ]
    for payload, made in cases:
        _, created = await hand_back(client, keys, psap_id=PSAP, **FULL)
        url = f"/v1/handbacks/{created['id']}/contact"
        if payload is None:
            resp = await client.post(url, headers=keys.headers["psap"])
        else:
            resp = await client.post(url, json=payload, headers=keys.headers["psap"])
        shown = await resp.json()
        assert resp.status == 200, (payload, shown)
        assert shown["contact"]["contact_made"] is made, payload
    _, created = await hand_back(client, keys, psap_id=PSAP, **FULL)
    typo = await client.post(
        f"/v1/handbacks/{created['id']}/contact",
        json={"contact_mad": False},
        headers=keys.headers["psap"],
    )
    assert typo.status == 422
