"""DESIGN.md §6 and §9 probed from outside, as an integrator reads them: the lists' query
rules (unknown parameters, cursors answered to another list or another organization), the
``psap_id`` of a ``psap`` key, phone numbers that are too long, unknown fields given a shortened
name, and the handback summary line. Real app on a real port, real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PSAP, SAFE

OTHER_PSAP = "other-psap"
CENTER = "crisis-connections"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Api:
    def __init__(self, client: TestClient[Any, Any], make_key: KeyMaker) -> None:
        self.client = client
        self.psap = bearer(make_key(PSAP, "psap"))
        self.psap_again = bearer(make_key(PSAP, "psap"))  # a second console of the same PSAP
        self.other_psap = bearer(make_key(OTHER_PSAP, "psap"))
        self.admin = bearer(make_key("ops", "admin"))
        self.center = bearer(make_key(CENTER, "crisis_center"))

    async def open(self, **extra: Any) -> dict[str, Any]:
        body = {"caller_type": "first_person", "screening": SAFE, **extra}
        resp = await self.client.post("/v1/transfers", json=body, headers=self.psap)
        data: dict[str, Any] = await resp.json()
        assert resp.status == 201, data
        return data

    async def get(self, path: str, headers: dict[str, str], **query: Any) -> tuple[int, Any]:
        resp = await self.client.get(path, params=query, headers=headers)
        return resp.status, await resp.json()


@pytest.fixture
async def api(client: TestClient[Any, Any], make_key: KeyMaker) -> Api:
    return Api(client, make_key)


def error_of(status: int, body: Any, expected: int) -> dict[str, Any]:
    assert status == expected, body
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    return error


# ---- query parameters a list does not take ----------------------------------------------------


async def test_a_misspelt_list_parameter_is_422_with_the_closest_name(api: Api) -> None:
    await api.open()
    # ``states`` used to be ignored: the answer listed every state, as if unfiltered.
    error = error_of(*await api.get("/v1/transfers", api.psap, states="ringing"), expected=422)
    assert error["details"] == [
        {
            "path": "states",
            "message": "unknown query parameter; did you mean 'state'?",
            "did_you_mean": "state",
        }
    ]
    assert "'states'" in error["message"]
    error = error_of(*await api.get("/v1/transfers", api.admin, destination="x"), expected=422)
    assert error["details"][0]["did_you_mean"] == "destination_id"
    error = error_of(*await api.get("/v1/transfers", api.admin, zzz="1"), expected=422)
    assert error["details"] == [{"path": "zzz", "message": "unknown query parameter"}]


async def test_each_list_takes_its_own_parameters(api: Api) -> None:
    # destination_id filters transfers; handbacks take from/to instead.
    status, page = await api.get("/v1/transfers", api.admin, destination_id=CENTER + "-988")
    assert status == 200, page
    status, page = await api.get("/v1/handbacks", api.admin, **{"from": "2026-01-01"})
    assert status == 200, page
    error = error_of(*await api.get("/v1/handbacks", api.admin, destination_id="x"), expected=422)
    assert error["details"][0]["path"] == "destination_id"
    error = error_of(*await api.get("/v1/transfers", api.admin, to="2026-01-01"), expected=422)
    assert error["details"][0]["path"] == "to"


# ---- cursors ------------------------------------------------------------------------------------


async def test_a_cursor_pages_on_for_keys_of_the_same_organization(api: Api) -> None:
    opened = [(await api.open())["id"] for _ in range(3)]
    status, first = await api.get("/v1/transfers", api.psap, limit=2)
    assert status == 200, first
    assert first["next_cursor"], first
    status, rest = await api.get(
        "/v1/transfers", api.psap_again, limit=2, cursor=first["next_cursor"]
    )
    assert status == 200, rest
    listed = [t["id"] for t in first["items"] + rest["items"]]
    assert listed == opened[::-1]
    assert rest["next_cursor"] is None


async def test_a_cursor_answered_to_another_organization_or_list_is_422(api: Api) -> None:
    for _ in range(2):
        await api.open()
    status, page = await api.get("/v1/transfers", api.psap, limit=1)
    assert status == 200, page
    cursor = page["next_cursor"]
    assert cursor
    for path, headers in (
        ("/v1/transfers", api.other_psap),  # another PSAP's key
        ("/v1/transfers", api.admin),  # another role
        ("/v1/transfers", api.center),
        ("/v1/handbacks", api.psap),  # another list
    ):
        error = error_of(*await api.get(path, headers, cursor=cursor), expected=422)
        assert error["details"][0]["path"] == "cursor", (path, error)
    # Tampered with, cut short, or without its tag: 422 as well.
    for bad in (cursor[:-1] + ("A" if cursor[-1] != "A" else "B"), cursor.split(".")[0], "."):
        error = error_of(*await api.get("/v1/transfers", api.psap, cursor=bad), expected=422)
        assert error["details"][0]["path"] == "cursor"


# ---- psap_id of a psap key --------------------------------------------------------------------


async def test_a_psap_key_listing_another_psap_gets_403_naming_its_own(api: Api) -> None:
    for path in ("/v1/transfers", "/v1/handbacks"):
        error = error_of(*await api.get(path, api.psap, psap_id=OTHER_PSAP), expected=403)
        assert PSAP in error["message"], error
        status, page = await api.get(path, api.psap, psap_id=PSAP)
        assert status == 200, page


# ---- phone numbers and unknown fields ---------------------------------------------------------


async def test_a_phone_number_that_is_too_long_gets_an_e164_example(api: Api) -> None:
    body = {"caller_type": "first_person", "screening": SAFE, "callback_number": "2" * 41}
    resp = await api.client.post("/v1/transfers", json=body, headers=api.psap)
    error = error_of(resp.status, await resp.json(), expected=422)
    [detail] = error["details"]
    assert detail["path"] == "callback_number"
    assert "E.164, e.g. +1" in detail["message"], detail
    assert "2" * 41 not in str(error)  # never echoed
    handback = {"psap_id": PSAP, "reason": "other", "callback_number": "2" * 41}
    resp = await api.client.post("/v1/handbacks", json=handback, headers=api.center)
    error = error_of(resp.status, await resp.json(), expected=422)
    assert "E.164, e.g. +1" in error["details"][0]["message"], error


async def test_a_shortened_field_name_is_given_the_full_one(api: Api) -> None:
    screening = {**SAFE, "consent": True}
    del screening["consent_to_transfer"]
    body = {"caller_type": "first_person", "screening": screening}
    for path in ("/v1/transfers", "/v1/routing/decisions"):
        resp = await api.client.post(path, json=body, headers=api.psap)
        error = error_of(resp.status, await resp.json(), expected=422)
        unknown = [d for d in error["details"] if d["path"] == "screening.consent"]
        assert [d["did_you_mean"] for d in unknown] == ["consent_to_transfer"], error
        assert "did you mean 'consent_to_transfer'?" in error["message"]


# ---- non-string JSON types in a decision ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("transfers_so_far", "1"),
        ("transfers_so_far", True),
        ("transfers_so_far", 1.0),
        ("at", 1_777_000_000),
        ("at", True),
    ],
)
async def test_a_decision_field_of_the_wrong_json_type_is_422(
    api: Api, field: str, value: Any
) -> None:
    # Were read as 1 and as a Unix time; the screening answers were already strict.
    body = {"caller_type": "first_person", "screening": SAFE, field: value}
    for path in ("/v1/routing/decisions", "/v1/transfers"):
        resp = await api.client.post(path, json=body, headers=api.psap)
        error = error_of(resp.status, await resp.json(), expected=422)
        assert [d["path"] for d in error["details"]] == [field], error
        assert not error["details"][0]["message"].startswith("Value error"), error
    ok = {"caller_type": "first_person", "screening": SAFE, "transfers_so_far": 1}
    resp = await api.client.post(
        "/v1/routing/decisions", json={**ok, "at": "2026-05-01T19:00:00Z"}, headers=api.psap
    )
    assert resp.status == 200, await resp.json()


# ---- destination_id for each role -------------------------------------------------------------


async def test_destination_id_for_each_role(api: Api, make_key: KeyMaker) -> None:
    third = {"caller_type": "third_party", "at": "2026-05-01T19:00:00Z"}  # clinicians open
    opened = await api.open(**third)
    chain = [d["id"] for d in opened["decision"]["destinations"]]
    assert chain == ["kc-dispatch-clinicians", "crisis-connections-988"]
    clinicians = bearer(make_key("kc-clinicians", "crisis_center"))
    for headers in (api.psap, api.admin, api.center, clinicians):
        destination = "crisis-connections-988" if headers is api.center else chain[0]
        status, page = await api.get("/v1/transfers", headers, destination_id=destination)
        assert status == 200, page
        assert [t["id"] for t in page["items"]] == [opened["id"]]
    # A crisis center naming another org's destination lists nothing of it (tests/test_lists.py).
    status, page = await api.get("/v1/transfers", api.center, destination_id=chain[0])
    assert status == 200, page
    assert page["items"] == []
    # A destination no policy names lists nothing, for every role.
    for headers in (api.psap, api.admin, api.center):
        status, page = await api.get("/v1/transfers", headers, destination_id="no-such-place")
        assert status == 200, page
        assert page == {"items": [], "next_cursor": None}


# ---- since: the instants other platforms write -------------------------------------------------


@pytest.mark.parametrize(
    "since",
    [
        "2026-05-01T08:00:00.123456789Z",  # Go's RFC3339Nano, Java's Instant.toString()
        "2026-05-01T08:00:00.123Z",  # JavaScript's toISOString()
        "2026-05-01t08:00:00z",  # RFC 3339 lets both letters be lower case
        "2026-05-01T01:00:00-07:00",
    ],
)
async def test_since_reads_the_instants_other_platforms_write(api: Api, since: str) -> None:
    opened = await api.open()
    status, page = await api.get("/v1/transfers", api.psap, since=since)
    assert status == 200, page
    assert [t["id"] for t in page["items"]] == [opened["id"]]
    status, page = await api.get("/v1/transfers", api.psap, since="2099-01-01T00:00:00.5Z")
    assert status == 200, page
    assert page["items"] == []


# ---- phone numbers as people paste them --------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["(206) 555-0123", "206-555-0123", "+1 206 555 0123", " +1 206 555 0123", "+12065550123 "],
)
async def test_a_callback_number_as_people_write_it_is_answered_in_e164(
    api: Api, written: str
) -> None:
    opened = await api.open(callback_number=written)
    assert opened["callback_number"] == "+12065550123"


@pytest.mark.parametrize(
    "written",
    [
        "206-555-0123".translate({c: c + 0xFEE0 for c in range(0x30, 0x3A)}),  # fullwidth digits
        "1-800-FLOWERS",
        "911",
        "+ 1 206 555 0123 +",
        "2065550123\n",
    ],
)
async def test_a_number_that_is_not_one_is_422_with_an_example(api: Api, written: str) -> None:
    body = {"caller_type": "first_person", "screening": SAFE, "callback_number": written}
    resp = await api.client.post("/v1/transfers", json=body, headers=api.psap)
    error = error_of(resp.status, await resp.json(), expected=422)
    [detail] = error["details"]
    assert detail["path"] == "callback_number"
    assert "E.164, e.g. +1" in detail["message"], detail


async def test_a_validators_message_comes_without_pydantics_prefix(api: Api) -> None:
    body = {"psap_id": PSAP, "reason": "other", "location": {"lat": 47.4}}
    resp = await api.client.post("/v1/handbacks", json=body, headers=api.center)
    error = error_of(resp.status, await resp.json(), expected=422)
    assert error["details"][0]["message"] == "lat and lon go together: give both or neither"
    body = {"caller_type": "first_person", "screening": SAFE, "language": "qq"}
    resp = await api.client.post("/v1/routing/decisions", json=body, headers=api.psap)
    error = error_of(resp.status, await resp.json(), expected=422)
    assert error["details"][0]["message"].startswith("'qq' is not a valid BCP 47"), error


async def test_a_misspelt_report_parameter_is_422(api: Api) -> None:
    error = error_of(
        *await api.get("/v1/reports/summary", api.psap, form="2026-05-01"), expected=422
    )
    assert error["details"][0]["did_you_mean"] == "from"
    status, body = await api.get("/v1/reports/summary", api.psap, **{"from": "2026-05-01"})
    assert status == 200, body


async def test_handbacks_from_after_to_is_422_as_in_reports(api: Api) -> None:
    period = {"from": "2026-03-02", "to": "2026-03-01"}
    for path in ("/v1/handbacks", "/v1/reports/summary"):
        error = error_of(*await api.get(path, api.psap, **period), expected=422)
        assert error["details"][0]["path"] == "from", (path, error)


# ---- a new code for an expired transfer ----------------------------------------------------------


async def test_no_new_code_once_the_code_expired(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client = await make_client(bridge_code_ttl_s=5)  # the shortest allowed
    psap = bearer(make_key(PSAP, "psap"))
    body = {"caller_type": "first_person", "screening": SAFE}
    resp = await client.post("/v1/transfers", json=body, headers=psap)
    opened = await resp.json()
    assert resp.status == 201, opened
    state = opened["state"]
    for _ in range(600):  # the expiry timer fires about five seconds later
        state = (await (await client.get(f"/v1/transfers/{opened['id']}", headers=psap)).json())[
            "state"
        ]
        if state == "expired":
            break
        await asyncio.sleep(0.05)
    assert state == "expired"
    resp = await client.post(f"/v1/transfers/{opened['id']}/code", headers=psap)
    error = error_of(resp.status, await resp.json(), expected=409)
    assert error["details"] == [{"state": "expired", "event": "new_code"}]


async def test_an_empty_parameter_is_no_filter(api: Api) -> None:
    opened = await api.open()
    for path in ("/v1/transfers", "/v1/handbacks"):
        query = {"state": "", "psap_id": "", "since": "", "cursor": "", "limit": ""}
        status, page = await api.get(path, api.psap, **query)
        assert status == 200, (path, page)
    status, page = await api.get("/v1/transfers", api.psap, state=["", "awaiting_bridge"])
    assert status == 200, page
    assert [t["id"] for t in page["items"]] == [opened["id"]]


async def test_a_401_names_the_bearer_scheme(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        resp = await api.client.get("/v1/transfers", headers=headers)
        error_of(resp.status, await resp.json(), expected=401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), resp.headers


async def test_an_unknown_field_of_a_release_is_422_before_anything_changes(api: Api) -> None:
    opened = await api.open()
    path = f"/v1/transfers/{opened['id']}/release"
    resp = await api.client.post(path, json={"nte": "x"}, headers=api.psap)
    error = error_of(resp.status, await resp.json(), expected=422)
    assert error["details"][0]["did_you_mean"] == "note"
    status, shown = await api.get(f"/v1/transfers/{opened['id']}", api.psap)
    assert status == 200, shown
    assert shown["version"] == opened["version"]


@pytest.mark.parametrize("value", ["no", "false", 0, None])
async def test_police_involved_is_a_json_boolean(api: Api, value: Any) -> None:
    opened = await api.open()  # not connected: a valid body would be 409, a bad one 422 first
    body = {"outcome": "referred", "police_involved": value}
    resp = await api.client.post(
        f"/v1/transfers/{opened['id']}/disposition", json=body, headers=api.center
    )
    error = error_of(resp.status, await resp.json(), expected=422)
    assert [d["path"] for d in error["details"]] == ["police_involved"], error
