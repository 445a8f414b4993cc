"""``/v1/transfers`` at the API boundary: decisions kept with 911, validation, roles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from gateway.core import keys
from gateway.core.settings import Settings
from tests.conftest import KeyMaker
from tests.telephony import PSAP, SAFE


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_excluded_call_is_recorded_as_not_transferred(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    key = make_key(PSAP, "psap")
    body = {
        "psap_id": PSAP,
        "caller_type": "third_party",
        "screening": {**SAFE, "weapons": True, "consent_to_transfer": None},
    }
    resp = await client.post("/v1/transfers", json=body, headers=bearer(key))
    created = await resp.json()
    assert resp.status == 201, created
    assert created["state"] == "not_transferred"
    assert created["decision"]["action"] == "stay_with_911"
    assert created["decision"]["reasons"] == ["excluded:weapons", "no_consent"]
    assert created["decision"]["destinations"] == []
    assert created.get("bridge_code") is None
    again = await client.get(f"/v1/transfers/{created['id']}", headers=bearer(key))
    assert (await again.json())["state"] == "not_transferred"
    cancel = await client.post(f"/v1/transfers/{created['id']}/cancel", headers=bearer(key))
    assert cancel.status == 409


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"screening": {**SAFE, "weapons": "yes"}}, "screening.weapons"),
        ({"screening": {**SAFE, "violence": 0}}, "screening.violence"),
        ({"screening": {**SAFE, "suicidal": True}}, "screening.suicidal"),
        ({"caller_type": "neighbour"}, "caller_type"),
        ({"callback_number": "206-555-012"}, "callback_number"),
        ({"callback_numbr": "+12065550123"}, "callback_numbr"),
        ({"language": "english please"}, "language"),
    ],
)
async def test_bad_fields_are_named_and_nothing_is_recorded(
    client: TestClient[Any, Any], make_key: KeyMaker, redis: Any, change: dict[str, Any], path: str
) -> None:
    key = make_key(PSAP, "psap")
    body = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE, **change}
    resp = await client.post("/v1/transfers", json=body, headers=bearer(key))
    error = (await resp.json())["error"]
    assert resp.status == 422
    assert error["code"] == "invalid"
    assert path in [d["path"] for d in error["details"]]
    assert not [k async for k in redis.scan_iter(match=keys.PREFIX + "xfer:*")]


async def test_only_a_psap_opens_transfers_and_only_its_own(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    center = make_key("crisis-connections", "crisis_center")
    resp = await client.post("/v1/transfers", data=b"{not json", headers=bearer(center))
    assert resp.status == 403, "the role is checked before the body"
    other_psap = make_key("another-psap", "psap")
    body = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
    resp = await client.post("/v1/transfers", json=body, headers=bearer(other_psap))
    assert resp.status == 403


async def test_unknown_psap_and_unknown_transfer_are_404(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    admin = make_key("ops", "admin")
    psap = make_key("nowhere", "psap")
    body = {"psap_id": "nowhere", "caller_type": "first_person", "screening": SAFE}
    resp = await client.post("/v1/transfers", json=body, headers=bearer(psap))
    assert resp.status == 404
    for path in ("/v1/transfers/tr_000000000000000000000000", "/v1/transfers/../../etc"):
        resp = await client.get(path, headers=bearer(admin))
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


def test_twilio_credentials_need_a_bridge_number(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_BRIDGE_NUMBER"):
        Settings.model_validate(
            {**settings.model_dump(), "twilio_account_sid": "AC1", "twilio_auth_token": "t"}
        )


async def test_other_call_facts_are_refused_and_named(
    client: TestClient[Any, Any], make_key: KeyMaker, redis: Any
) -> None:
    """Unknown fields are 422, each named (DESIGN.md §9): ``ignored_fields`` is gone, since a
    misspelt ``transfers_so_far`` must not be taken as 0 (test_request_rules has the rest)."""
    key = make_key(PSAP, "psap")
    body = {
        "psap_id": PSAP,
        "caller_type": "first_person",
        "screening": SAFE,
        "transfers_sofar": 2,
        "cad_incident_id": "24-118812",
    }
    for path in ("/v1/transfers", "/v1/routing/decisions"):
        resp = await client.post(path, json=body, headers=bearer(key))
        error = (await resp.json())["error"]
        assert resp.status == 422, error
        assert sorted(d["path"] for d in error["details"]) == ["cad_incident_id", "transfers_sofar"]
        assert "24-118812" not in json.dumps(error)
    assert not [k async for k in redis.scan_iter(match=keys.PREFIX + "xfer:*")]
    plain = {k: v for k, v in body.items() if k in ("psap_id", "caller_type", "screening")}
    resp = await client.post("/v1/transfers", json=plain, headers=bearer(key))
    assert resp.status == 201
    assert "ignored_fields" not in await resp.json()
