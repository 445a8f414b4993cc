"""DESIGN.md §9's request rules, through the real HTTP API on real Redis, and the phone parsing
beneath them:

1. a ``psap`` key may leave ``psap_id`` out of a decision, a transfer or a report request (its
   own org); a different one is 403, naming the key's org;
2. unknown top-level fields of a decision or transfer request are 422, each named, with the
   closest known name — nothing vanishes into the void, nothing is recorded;
3. phone numbers are answered in E.164; national formats are read in the PSAP's country; only
   ASCII digits count; an invalid number is 422 with an E.164 example and no pattern.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.phone import PhoneNumberError, example, to_e164
from gateway.core.settings import Settings
from gateway.policy.loader import PolicyInvalid, load_config_dir
from gateway.transfer.store import TransferStore
from tests.conftest import AppFactory, KeyMaker, with_overrides
from tests.telephony import PSAP, SAFE
from tests.test_handback_api import connect

UK_PSAP = "uk-example"
UK_PSAPS = f"""
  - id: {UK_PSAP}
    name: An example PSAP in London
    timezone: Europe/London
    country: GB
    handback_number: "020 7946 0100"
    fallback_destination: crisis-connections-988
"""
CALL = {"caller_type": "first_person", "screening": SAFE}
REGEX_MARKS = ("^", "$", "[0-9]", "\\d", "{1,", "pattern")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def with_uk_psap(config_dir: Path) -> None:
    psaps = config_dir / "psaps.yaml"
    psaps.write_text(psaps.read_text() + UK_PSAPS)


async def transfer_keys(redis: Redis) -> list[Any]:
    return [k async for k in redis.scan_iter(match=keys.PREFIX + "xfer:*")]


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    error: dict[str, Any] = body["error"]
    return error


def assert_no_regex(text: str) -> None:
    for mark in REGEX_MARKS:
        assert mark not in text, (mark, text)


# ---- 1. psap_id: the key's own org -----------------------------------------------------------


async def test_a_psap_key_may_leave_psap_id_out(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    decision = await client.post("/v1/routing/decisions", json=CALL, headers=psap)
    assert decision.status == 200, await decision.text()
    assert (await decision.json())["action"] == "transfer"
    created = await client.post("/v1/transfers", json=CALL, headers=psap)
    assert created.status == 201, await created.text()
    assert (await created.json())["psap_id"] == PSAP
    report = await client.get("/v1/reports/summary", headers=psap)
    assert report.status == 200, await report.text()
    assert (await report.json())["considered"] == 1
    # Given and equal to the key's org is the same request.
    same = await client.post("/v1/transfers", json={**CALL, "psap_id": PSAP}, headers=psap)
    assert same.status == 201
    assert (await same.json())["psap_id"] == PSAP


async def test_another_psap_id_is_403_naming_the_keys_org(
    client: TestClient[Any, Any], make_key: KeyMaker, redis: Redis
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    typo = {**CALL, "psap_id": "kc-valeycom"}
    for path in ("/v1/routing/decisions", "/v1/transfers"):
        error = await error_of(await client.post(path, json=typo, headers=psap), 403)
        assert error["code"] == "forbidden"
        assert '"kc-valeycom"' in error["message"]
        assert f'belongs to PSAP "{PSAP}"' in error["message"]
        assert "Leave psap_id out" in error["message"]
        assert "another organization" not in error["message"]
    report = await client.get(
        "/v1/reports/summary", params={"psap_id": "kc-valeycom"}, headers=psap
    )
    error = await error_of(report, 403)
    assert f'belongs to PSAP "{PSAP}"' in error["message"]
    assert not await transfer_keys(redis)


async def test_other_keys_give_psap_id(client: TestClient[Any, Any], make_key: KeyMaker) -> None:
    admin = bearer(make_key("ops", "admin"))
    center = bearer(make_key("crisis-connections", "crisis_center"))
    for headers in (admin, center):
        error = await error_of(
            await client.post("/v1/routing/decisions", json=CALL, headers=headers), 422
        )
        assert [d["path"] for d in error["details"]] == ["psap_id"]
        ok = await client.post(
            "/v1/routing/decisions", json={**CALL, "psap_id": PSAP}, headers=headers
        )
        assert ok.status == 200, await ok.text()
    # An admin's report without psap_id covers every PSAP; with one, that PSAP.
    for params in ({}, {"psap_id": PSAP}):
        assert (await client.get("/v1/reports/summary", params=params, headers=admin)).status == 200


async def test_a_psap_id_that_is_no_string_is_422_not_403(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    resp = await client.post("/v1/transfers", json={**CALL, "psap_id": 7}, headers=psap)
    error = await error_of(resp, 422)
    assert [d["path"] for d in error["details"]] == ["psap_id"]


async def test_the_openapi_document_says_psap_id_may_be_left_out(
    client: TestClient[Any, Any],
) -> None:
    schemas = (await (await client.get("/openapi.json")).json())["components"]["schemas"]
    for name in ("DecisionRequest", "TransferRequest"):
        assert "psap_id" in schemas[name]["properties"]
        assert "psap_id" not in schemas[name]["required"]
        assert "caller_type" in schemas[name]["required"]
        assert schemas[name]["additionalProperties"] is False


# ---- 2. unknown fields ------------------------------------------------------------------------


async def test_a_misspelt_callback_number_is_422_with_the_right_name(
    client: TestClient[Any, Any], make_key: KeyMaker, redis: Redis
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    body = {**CALL, "callback_numbr": "+12065550123"}
    error = await error_of(await client.post("/v1/transfers", json=body, headers=psap), 422)
    assert error["code"] == "invalid"
    assert error["details"] == [
        {
            "path": "callback_numbr",
            "message": "unknown field; did you mean 'callback_number'?",
            "type": "extra_forbidden",
            "did_you_mean": "callback_number",
        }
    ]
    assert "'callback_numbr' (did you mean 'callback_number'?)" in error["message"]
    assert "+12065550123" not in str(error)
    assert not await transfer_keys(redis)


async def test_each_unknown_field_is_named_on_decisions_and_transfers(
    client: TestClient[Any, Any], make_key: KeyMaker, redis: Redis
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    body = {**CALL, "transfers_sofar": 2, "cad_incident_id": "24-118812"}
    for path in ("/v1/routing/decisions", "/v1/transfers"):
        error = await error_of(await client.post(path, json=body, headers=psap), 422)
        details = {d["path"]: d for d in error["details"]}
        assert set(details) == {"transfers_sofar", "cad_incident_id"}
        assert details["transfers_sofar"]["did_you_mean"] == "transfers_so_far"
        assert "did_you_mean" not in details["cad_incident_id"]  # nothing close
        assert details["cad_incident_id"]["message"] == "unknown field"
        assert "'cad_incident_id'" in error["message"]
        assert "ignored_fields" not in error
    assert not await transfer_keys(redis)


async def test_unknown_and_invalid_fields_are_reported_together(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    body = {
        "caller_type": "neighbour",
        "screening": {**SAFE, "wepons": False},
        "langauge": "en",
        "x" * 500: 1,
    }
    error = await error_of(await client.post("/v1/transfers", json=body, headers=psap), 422)
    details = {d["path"]: d for d in error["details"]}
    assert details["screening.wepons"]["did_you_mean"] == "weapons"
    assert details["langauge"]["did_you_mean"] == "language"
    assert "caller_type" in details
    assert "x" * 40 in details, "a long unknown name is cut, never echoed whole"
    assert "x" * 41 not in str(error)
    assert error["message"].endswith("1 other invalid field(s)")


async def test_a_valid_request_answers_no_ignored_fields(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    created = await client.post("/v1/transfers", json=CALL, headers=psap)
    assert created.status == 201
    assert "ignored_fields" not in await created.json()
    decided = await client.post("/v1/routing/decisions", json=CALL, headers=psap)
    assert "ignored_fields" not in await decided.json()


# ---- 3. phone numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["(206) 555-0123", "206-555-0123", "206.555.0123", "1 206 555 0123", "+1 (206) 555-0123"],
)
async def test_a_transfer_callback_number_is_answered_in_e164(
    client: TestClient[Any, Any], make_key: KeyMaker, number: str
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    resp = await client.post(
        "/v1/transfers", json={**CALL, "callback_number": number}, headers=psap
    )
    created = await resp.json()
    assert resp.status == 201, created
    assert created["callback_number"] == "+12065550123"
    again = await client.get(f"/v1/transfers/{created['id']}", headers=psap)
    assert (await again.json())["callback_number"] == "+12065550123"


@pytest.mark.parametrize(
    "number",
    [
        "555-0123",  # too short for the US
        "+15555550123",  # 555 is no area code
        "(206) 555-012",
        "+1206555\u0660\u0661\u0662\u0663",  # Arabic-Indic digits
        "(206) 555-\uff10\uff11\uff12\uff13",  # fullwidth digits
        "1-800-FLOWERS",
        "+12065550123\n",
        "tel:+12065550123",
        "",
        "1" * 100,
    ],
)
async def test_an_invalid_callback_number_is_422_with_an_example(
    client: TestClient[Any, Any], make_key: KeyMaker, redis: Redis, number: str
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    resp = await client.post(
        "/v1/transfers", json={**CALL, "callback_number": number}, headers=psap
    )
    error = await error_of(resp, 422)
    [detail] = error["details"]
    assert detail["path"] == "callback_number"
    if len(number) <= 40:
        assert "E.164, e.g. +12015550123" in detail["message"]
    assert_no_regex(detail["message"])
    assert not await transfer_keys(redis)


async def test_unicode_digits_are_named_as_the_problem(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    psap = bearer(make_key(PSAP, "psap"))
    body = {**CALL, "callback_number": "+1206555\u0660\u0661\u0662\u0663"}
    error = await error_of(await client.post("/v1/transfers", json=body, headers=psap), 422)
    assert "only the ASCII digits 0-9 count" in error["details"][0]["message"]


async def test_a_national_number_is_read_in_the_psaps_country(
    config_dir: Path, make_client: AppFactory, make_key: KeyMaker
) -> None:
    with_uk_psap(config_dir)
    client = await make_client()
    uk = bearer(make_key(UK_PSAP, "psap"))
    resp = await client.post(
        "/v1/transfers", json={**CALL, "callback_number": "020 7946 0123"}, headers=uk
    )
    created = await resp.json()
    assert resp.status == 201, created
    assert created["callback_number"] == "+442079460123"
    # A US national number is no number in the UK: the example is a UK one.
    resp = await client.post(
        "/v1/transfers", json={**CALL, "callback_number": "(206) 555-0123"}, headers=uk
    )
    error = await error_of(resp, 422)
    message = error["details"][0]["message"]
    assert f"e.g. {example('GB')}" in message
    assert "national format of GB" in message
    # E.164 is read the same everywhere.
    resp = await client.post(
        "/v1/transfers", json={**CALL, "callback_number": "+12065550123"}, headers=uk
    )
    assert (await resp.json())["callback_number"] == "+12065550123"
    # The PSAP's own handback line, written nationally in its file, is kept in E.164.
    policy = await (await client.get("/v1/admin/routing", headers=uk)).json()
    [uk_psap] = [p for p in policy["psaps"] if p["id"] == UK_PSAP]
    assert uk_psap["country"] == "GB"
    assert uk_psap["handback_number"] == "+442079460100"
    [us_psap] = [p for p in policy["psaps"] if p["id"] == PSAP]
    assert us_psap["country"] == "US"


async def handback_eido_callback(
    client: TestClient[Any, Any], body: dict[str, Any], center: str, psap: str
) -> str:
    resp = await client.post("/v1/handbacks", json=body, headers=bearer(center))
    created = await resp.json()
    assert resp.status == 201, created
    eido = await client.get(f"/v1/handbacks/{created['id']}/eido", headers=bearer(psap))
    assert eido.status == 200, await eido.text()
    [component] = (await eido.json())["callbackComponent"]
    [uri] = component["callBackInformationUri"]
    assert isinstance(uri, str)
    return uri


async def test_a_handback_callback_number_is_read_as_its_psaps(
    config_dir: Path, make_client: AppFactory, make_key: KeyMaker, redis: Redis
) -> None:
    with_uk_psap(config_dir)
    client = await make_client()
    center = make_key("crisis-connections", "crisis_center")
    psap, uk = make_key(PSAP, "psap"), make_key(UK_PSAP, "psap")
    base = {"reason": "imminent_risk", "location": None}
    # With psap_id: that PSAP's country.
    for number in ("(206) 555-0123", "206-555-0123"):
        body = {**base, "psap_id": PSAP, "callback_number": number}
        assert await handback_eido_callback(client, body, center, psap) == "tel:+12065550123"
    body = {**base, "psap_id": UK_PSAP, "callback_number": "020 7946 0123"}
    assert await handback_eido_callback(client, body, center, uk) == "tel:+442079460123"
    # With transfer_id: the transfer's PSAP's country.
    opened = await client.post("/v1/transfers", json=CALL, headers=bearer(uk))
    assert opened.status == 201, await opened.text()
    transfer_id = (await opened.json())["id"]
    await connect(TransferStore(redis), transfer_id, psap_id=UK_PSAP, complete=True)
    body = {**base, "transfer_id": transfer_id, "callback_number": "020 7946 0124"}
    assert await handback_eido_callback(client, body, center, uk) == "tel:+442079460124"
    # Refused as a transfer's would be.
    for number in ("555-0123", "+1206555\u0660\u0661\u0662\u0663", "(206) 555-0123"):
        body = {**base, "psap_id": UK_PSAP, "callback_number": number}
        resp = await client.post("/v1/handbacks", json=body, headers=bearer(center))
        error = await error_of(resp, 422)
        assert [d["path"] for d in error["details"]] == ["callback_number"]
        assert f"e.g. {example('GB')}" in error["details"][0]["message"]
        assert_no_regex(error["details"][0]["message"])


def test_config_numbers_are_read_and_kept_in_e164(config_dir: Path) -> None:
    destinations = config_dir / "destinations.yaml"
    destinations.write_text(
        destinations.read_text().replace('number: "+12065550188"', 'number: "(206) 555-0188"')
    )
    with_uk_psap(config_dir)
    document = load_config_dir(config_dir)
    assert document.destinations[0].number == "+12065550188"
    uk = document.psap(UK_PSAP)
    assert uk is not None
    assert uk.country == "GB"
    assert uk.handback_number == "+442079460100"


def test_a_psap_without_country_reads_us_numbers(config_dir: Path) -> None:
    psaps = config_dir / "psaps.yaml"
    psaps.write_text(
        psaps.read_text()
        .replace("    country: US\n", "")
        .replace('"+12065550100"', '"(206) 555-0100"')
    )
    assert "country" not in yaml.safe_load(psaps.read_text())["psaps"][0]
    psap = load_config_dir(config_dir).psap(PSAP)
    assert psap is not None
    assert (psap.country, psap.handback_number) == ("US", "+12065550100")


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ('handback_number: "+12065550100"', 'handback_number: "555-0100"', "handback_number"),
        ("country: US", "country: us", "country"),
        ("country: US", "country: XX", "country"),
        ("country: US", 'country: "1"', "country"),
    ],
)  # fmt: skip
def test_bad_config_numbers_and_countries_are_refused(
    config_dir: Path, old: str, new: str, path: str
) -> None:
    psaps = config_dir / "psaps.yaml"
    psaps.write_text(psaps.read_text().replace(old, new))
    with pytest.raises(PolicyInvalid) as caught:
        load_config_dir(config_dir)
    [error] = caught.value.errors
    assert error["path"].endswith(f"psaps.0.{path}"), error
    assert_no_regex(error["message"])


def test_the_bridge_number_setting_is_read_and_kept_in_e164(settings: Settings) -> None:
    assert with_overrides(settings, bridge_number="(206) 555-0199").bridge_number == "+12065550199"
    with pytest.raises(ValidationError, match="not a valid, dialable phone number"):
        with_overrides(settings, bridge_number="+15555550199")


# ---- the phone parsing itself -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("+12065550123", "US", "+12065550123"),
        ("(206) 555-0123", "US", "+12065550123"),
        ("206-555-0123", "US", "+12065550123"),
        ("206.555.0123", "US", "+12065550123"),
        ("206 555 0123", "US", "+12065550123"),
        ("1-206-555-0123", "US", "+12065550123"),
        ("+1 206 555 0123", "GB", "+12065550123"),
        ("020 7946 0123", "GB", "+442079460123"),
        ("+44 20 7946 0123", "US", "+442079460123"),
        ("(604) 555-0123", "CA", "+16045550123"),
        ("800-555-0198", "US", "+18005550198"),
    ],
)
def test_to_e164_reads_e164_and_national_formats(text: str, region: str, e164: str) -> None:
    assert to_e164(text, region) == e164


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("+1206555\u0660\u0661\u0662\u0663", "only the ASCII digits"),
        ("\uff12\uff10\uff16-555-0123", "only the ASCII digits"),
        ("206-555-\u09e6\u09e7\u09e8\u09e9", "only the ASCII digits"),
        ("1-800-FLOWERS", "digits, spaces"),
        ("206 555 0123 ext 4", "digits, spaces"),
        ("+12065550123\n", "digits, spaces"),
        ("1+2065550123", "digits, spaces"),
        ("+15555550123", "not a valid, dialable"),
        ("555-0123", "not a valid, dialable"),
        ("+1206555012345678", "not a valid, dialable"),
        ("+", "not a valid, dialable"),
        ("()", "not a valid, dialable"),
        ("   ", "empty"),
        ("2" * 41, "at most 40 characters"),
    ],
)
def test_to_e164_refuses_what_is_no_dialable_number(text: str, says: str) -> None:
    with pytest.raises(PhoneNumberError) as caught:
        to_e164(text)
    message = caught.value.message
    assert says in message
    assert "e.g. +12015550123" in message
    assert_no_regex(message)
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) >= 7:
        assert digits not in message.replace(example(), ""), "the number is never echoed"


def test_the_example_is_the_regions_own() -> None:
    assert example("US") == "+12015550123"
    assert example("GB").startswith("+44")
    assert to_e164(example("GB"), "GB") == example("GB")
