"""The routing endpoints over real HTTP, on real Redis; several app instances share it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.policy.models import MANDATORY_SCREENING
from tests.conftest import AppFactory, KeyMaker

Client = TestClient[Any, Any]

# gateway/web/middlewares.py stores the principal under a str request key, which aiohttp 3.14
# warns about (an error under this suite's warning filter). Until it uses a web.RequestKey:

CLEAR = {
    "weapons": False,
    "violence": False,
    "medical_emergency": False,
    "consent_to_transfer": True,
}
NOON_UTC = "2026-06-15T19:00:00Z"  # 12:00 in Seattle
NIGHT_UTC = "2026-06-15T10:00:00Z"  # 03:00 in Seattle


def body(caller_type: str = "first_person", **extra: Any) -> dict[str, Any]:
    return {
        "psap_id": "kc-valleycom",
        "caller_type": caller_type,
        "screening": CLEAR,
        "at": NOON_UTC,
        **extra,
    }


@pytest.fixture
def auth(make_key: KeyMaker) -> dict[str, dict[str, str]]:
    return {
        role: {"Authorization": f"Bearer {make_key(org, role)}"}
        for role, org in (
            ("admin", "ops"),
            ("psap", "kc-valleycom"),
            ("crisis_center", "crisis-connections"),
        )
    }


async def decide(client: Client, headers: dict[str, str], payload: dict[str, Any]) -> Any:
    resp = await client.post("/v1/routing/decisions", json=payload, headers=headers)
    data = await resp.json()
    assert resp.status == 200, data
    return data


@pytest.mark.parametrize("role", ["admin", "psap", "crisis_center"])
async def test_dry_run_for_every_role(
    client: Client, auth: dict[str, dict[str, str]], role: str
) -> None:
    data = await decide(client, auth[role], body("third_party"))
    assert data == {
        "action": "transfer",
        "destinations": [
            {
                "id": "kc-dispatch-clinicians",
                "kind": "local_clinician",
                "name": "King County dispatch-embedded clinicians",
                "number": "+12065550142",
            },
            {
                "id": "crisis-connections-988",
                "kind": "988_center",
                "name": "Crisis Connections 988 (King County primary)",
                "number": "+12065550188",
            },
        ],
        "ring_timeout_s": 20,
        "reasons": ["rule:third-party-daytime"],
        "policy_version": 1,
    }


async def test_design_5_cases(client: Client, auth: dict[str, dict[str, str]]) -> None:
    h = auth["psap"]
    night = await decide(client, h, body("third_party", at=NIGHT_UTC))
    assert [d["id"] for d in night["destinations"]] == [
        "crisis-connections-988",
        "wa-988-backup",
        "national-988-backup",
    ]
    assert "closed:kc-dispatch-clinicians" in night["reasons"]
    first = await decide(client, h, body("first_person"))
    assert first["reasons"] == ["rule:first-person"]
    gated = await decide(
        client,
        h,
        body(
            screening={"weapons": True, "violence": None, "consent_to_transfer": False},
            transfers_so_far=2,
        ),
    )
    assert gated == {
        "action": "stay_with_911",
        "destinations": [],
        "ring_timeout_s": 20,
        "reasons": [
            "excluded:weapons",
            "screening_incomplete:violence",
            "screening_incomplete:medical_emergency",
            "no_consent",
            "hop_limit",
        ],
        "policy_version": 1,
    }
    defaults = await decide(
        client, h, {"psap_id": "kc-valleycom", "caller_type": "unknown", "screening": CLEAR}
    )
    assert defaults["action"] == "transfer"  # language en, no hops, now


async def test_unknown_psap_is_404(client: Client, auth: dict[str, dict[str, str]]) -> None:
    # (A psap key naming another PSAP is 403 before the PSAP is looked up: test_request_rules.)
    resp = await client.post(
        "/v1/routing/decisions", json=body(psap_id="nowhere"), headers=auth["admin"]
    )
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error["code"] == "not_found"
    assert "nowhere" in error["message"]


async def test_invalid_body_is_422_with_fields(
    client: Client, auth: dict[str, dict[str, str]]
) -> None:
    resp = await client.post(
        "/v1/routing/decisions",
        json=body(caller_type="martian", screening={"weapons": "maybe"}, transfers_so_far=-1),
        headers=auth["psap"],
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    assert {d["path"] for d in error["details"]} == {
        "caller_type",
        "screening.weapons",
        "transfers_so_far",
    }


@pytest.mark.parametrize("language", ["zz", "english please", "zh-"])
async def test_bad_language_tag_is_422(
    client: Client, auth: dict[str, dict[str, str]], language: str
) -> None:
    resp = await client.post(
        "/v1/routing/decisions", json=body(language=language), headers=auth["psap"]
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert [d["path"] for d in error["details"]] == ["language"]


async def test_cantonese_caller_dry_run(client: Client, auth: dict[str, dict[str, str]]) -> None:
    data = await decide(client, auth["psap"], body(language="zh-yue"))
    assert data["action"] == "transfer"  # nobody speaks Cantonese: the rule's order holds
    assert [d["id"] for d in data["destinations"]] == [
        "crisis-connections-988",
        "wa-988-backup",
        "national-988-backup",
    ]


async def test_no_key_is_401(client: Client) -> None:
    resp = await client.post("/v1/routing/decisions", json=body())
    assert resp.status == 401
    resp = await client.get("/v1/admin/routing")
    assert resp.status == 401


async def test_get_policy_any_role(client: Client, auth: dict[str, dict[str, str]]) -> None:
    resp = await client.get("/v1/admin/routing", headers=auth["crisis_center"])
    data = await resp.json()
    assert resp.status == 200
    assert data["version"] == 1
    assert set(data) == {"version", "psaps", "destinations", "policy"}
    assert [r["id"] for r in data["policy"]["rules"]] == [
        "first-person",
        "third-party-daytime",
        "third-party-overnight",
    ]


@pytest.mark.parametrize("role", ["psap", "crisis_center"])
async def test_changes_need_admin(
    client: Client, auth: dict[str, dict[str, str]], role: str
) -> None:
    current = await (await client.get("/v1/admin/routing", headers=auth[role])).json()
    resp = await client.put("/v1/admin/routing", json=current, headers=auth[role])
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    resp = await client.post("/v1/admin/routing/rollback", json={"version": 1}, headers=auth[role])
    assert resp.status == 403
    again = await (await client.get("/v1/admin/routing", headers=auth[role])).json()
    assert again["version"] == 1


async def test_put_on_one_instance_is_live_on_the_other(
    make_client: AppFactory, auth: dict[str, dict[str, str]]
) -> None:
    one, two = await make_client(), await make_client()
    admin = auth["admin"]
    assert (await decide(two, admin, body()))["policy_version"] == 1
    doc = await (await one.get("/v1/admin/routing", headers=admin)).json()
    doc["policy"]["rules"][0]["chain"] = ["wa-988-backup"]
    resp = await one.put("/v1/admin/routing", json=doc, headers=admin)  # "version" is ignored
    data = await resp.json()
    assert resp.status == 200, data
    assert data["version"] == 2
    assert data["policy"]["rules"][0]["chain"] == ["wa-988-backup"]

    decision = await decide(two, auth["psap"], body())
    assert decision["policy_version"] == 2
    assert [d["id"] for d in decision["destinations"]] == ["wa-988-backup"]
    seen = await (await two.get("/v1/admin/routing", headers=admin)).json()
    assert seen["version"] == 2

    versions = await (await two.get("/v1/admin/routing/versions", headers=auth["psap"])).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert set(versions[1]) == {"version", "at", "actor", "summary"}
    assert versions[1]["actor"].startswith("admin:ops:")
    assert versions[1]["summary"] == (
        "policy.rules.first-person.chain: "
        "[crisis-connections-988, wa-988-backup, national-988-backup] → [wa-988-backup]"
    )
    assert versions[1]["at"].endswith(("+00:00", "Z"))


async def test_rollback_on_one_instance_is_live_on_the_other(
    make_client: AppFactory, auth: dict[str, dict[str, str]]
) -> None:
    one, two = await make_client(), await make_client()
    admin = auth["admin"]
    doc = await (await one.get("/v1/admin/routing", headers=admin)).json()
    doc["policy"]["hop_limit"] = 1
    assert (await one.put("/v1/admin/routing", json=doc, headers=admin)).status == 200
    second_hop = body(transfers_so_far=1)
    assert (await decide(two, admin, second_hop))["reasons"] == ["hop_limit"]

    resp = await one.post("/v1/admin/routing/rollback", json={"version": 1}, headers=admin)
    data = await resp.json()
    assert resp.status == 200, data
    assert data["version"] == 3
    assert data["policy"]["hop_limit"] == 2
    decision = await decide(two, admin, second_hop)
    assert decision["policy_version"] == 3
    assert decision["action"] == "transfer"
    assert decision["reasons"] == ["rule:first-person"]
    versions = await (await two.get("/v1/admin/routing/versions", headers=admin)).json()
    assert versions[-1]["summary"].startswith("rollback to version 1")


async def test_rollback_unknown_version_is_404(
    client: Client, auth: dict[str, dict[str, str]]
) -> None:
    resp = await client.post(
        "/v1/admin/routing/rollback", json={"version": 42}, headers=auth["admin"]
    )
    assert resp.status == 404
    resp = await client.post(
        "/v1/admin/routing/rollback", json={"version": "one"}, headers=auth["admin"]
    )
    assert resp.status == 422


async def test_bad_put_changes_nothing_anywhere(
    make_client: AppFactory, auth: dict[str, dict[str, str]]
) -> None:
    one, two = await make_client(), await make_client()
    admin = auth["admin"]
    before = await (await two.get("/v1/admin/routing", headers=admin)).json()
    bad = {k: v for k, v in before.items() if k != "version"}
    bad["policy"] = {
        **bad["policy"],
        "rules": [
            {
                "id": "armed-to-988",
                "match": {"screening": {"weapons": True}},
                "chain": ["crisis-connections-988"],
            },
            {"id": "ghost", "chain": ["nowhere"]},
        ],
    }
    bad["psaps"] = [{**bad["psaps"][0], "timezone": "Not/AZone"}]
    resp = await one.put("/v1/admin/routing", json=bad, headers=admin)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    details = {d["path"]: d["message"] for d in error["details"]}
    assert set(details) == {
        "psaps.0.timezone",
        "policy.rules.0.match.screening.weapons",
        "policy.rules.1.chain.0",
    }
    assert "exclusion flag" in details["policy.rules.0.match.screening.weapons"]

    for client in (one, two):
        after = await (await client.get("/v1/admin/routing", headers=admin)).json()
        assert after == before
        versions = await (await client.get("/v1/admin/routing/versions", headers=admin)).json()
        assert len(versions) == 1
        assert (await decide(client, admin, body()))["policy_version"] == 1


async def test_bad_put_lists_independent_errors_in_different_places(
    client: Client, auth: dict[str, dict[str, str]]
) -> None:
    admin = auth["admin"]
    before = await (await client.get("/v1/admin/routing", headers=admin)).json()
    bad = copy.deepcopy({k: v for k, v in before.items() if k != "version"})
    bad["policy"]["rules"][0]["ring_timeout_s"] = 2  # a field error in one rule
    bad["policy"]["rules"][2]["chain"] = ["nope"]  # a dangling reference in another
    resp = await client.put("/v1/admin/routing", json=bad, headers=admin)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    assert error["details"] == [
        {
            "path": "policy.rules.0.ring_timeout_s",
            "message": "Input should be greater than or equal to 5",
        },
        {"path": "policy.rules.2.chain.0", "message": "unknown destination 'nope'"},
    ]
    after = await (await client.get("/v1/admin/routing", headers=admin)).json()
    assert after == before
    assert after["version"] == 1
    assert (await decide(client, admin, body()))["policy_version"] == 1


async def test_put_malformed_json_is_400(client: Client, auth: dict[str, dict[str, str]]) -> None:
    resp = await client.put(
        "/v1/admin/routing",
        data=b"{not json",
        headers={**auth["admin"], "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"


async def test_openapi_lists_the_routing_endpoints(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert "post" in paths["/v1/routing/decisions"]
    assert {"get", "put"} <= set(paths["/v1/admin/routing"])
    assert "get" in paths["/v1/admin/routing/versions"]
    assert paths["/v1/admin/routing/rollback"]["post"]["x-roles"] == ["admin"]
    assert "Decision" in doc["components"]["schemas"]


async def test_readyz_reports_policy(client: Client) -> None:
    resp = await client.get("/readyz")
    data = await resp.json()
    assert resp.status == 200, data
    assert data["checks"]["policy"] == "ok"


async def test_starts_with_redis_down(make_client: AppFactory) -> None:
    client = await make_client(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5)
    resp = await client.get("/healthz")
    assert resp.status == 200
    resp = await client.get("/readyz")
    assert resp.status == 503
    down = {d["check"] for d in (await resp.json())["error"]["details"]}
    assert {"redis", "policy"} <= down


async def test_starts_without_a_valid_policy_but_decides_nothing(
    make_client: AppFactory, auth: dict[str, dict[str, str]], config_dir: Path
) -> None:
    (config_dir / "policy.yaml").write_text("policy:\n  hop_limit: 9\n")
    client = await make_client()
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert {d["check"] for d in (await resp.json())["error"]["details"]} == {"policy"}
    resp = await client.post("/v1/routing/decisions", json=body(), headers=auth["psap"])
    assert resp.status == 503
    error = (await resp.json())["error"]
    assert error["code"] == "unavailable"
    assert "policy.yaml:policy.hop_limit" in {d["path"] for d in error["details"]}


async def test_rollback_without_a_version_undoes_the_last_change(
    client: Client, auth: dict[str, dict[str, str]]
) -> None:
    admin = auth["admin"]
    first = await client.post("/v1/admin/routing/rollback", headers=admin)
    assert first.status == 409, "nothing to roll back to at version 1"
    doc = await (await client.get("/v1/admin/routing", headers=admin)).json()
    doc["policy"]["hop_limit"] = 1
    assert (await client.put("/v1/admin/routing", json=doc, headers=admin)).status == 200
    for payload in ({"data": b""}, {"json": {}}):
        resp = await client.post("/v1/admin/routing/rollback", headers=admin, **payload)
        data = await resp.json()
        assert resp.status == 200, data
        assert data["policy"]["hop_limit"] == (2 if payload == {"data": b""} else 1)


# -- the safety floor (DESIGN.md §5): a PUT that would loosen it is refused -----------------------

LOOSENINGS: list[tuple[str, Any, str]] = [
    *[
        (f"require_consent={spelling!r}", {"require_consent": spelling}, "policy.require_consent")
        for spelling in (False, "no", "false", 0)
    ],
    *[
        (
            f"required_screening-without-{flag}",
            {"required_screening": [f for f in MANDATORY_SCREENING if f != flag]},
            "policy.required_screening",
        )
        for flag in MANDATORY_SCREENING
    ],
    ("required_screening-empty", {"required_screening": []}, "policy.required_screening"),
    ("hop_limit=0", {"hop_limit": 0}, "policy.hop_limit"),
    ("hop_limit=3", {"hop_limit": 3}, "policy.hop_limit"),
]


@pytest.mark.parametrize(
    ("change", "path"), [case[1:] for case in LOOSENINGS], ids=[case[0] for case in LOOSENINGS]
)
async def test_a_put_loosening_the_floor_is_422_and_changes_nothing(
    client: Client, auth: dict[str, dict[str, str]], change: dict[str, Any], path: str
) -> None:
    admin = auth["admin"]
    before = await (await client.get("/v1/admin/routing", headers=admin)).json()
    loosened = copy.deepcopy({k: v for k, v in before.items() if k != "version"})
    loosened["policy"].update(change)
    resp = await client.put("/v1/admin/routing", json=loosened, headers=admin)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    assert [d["path"] for d in error["details"]] == [path]

    after = await (await client.get("/v1/admin/routing", headers=admin)).json()
    assert after == before
    assert after["version"] == 1
    versions = await (await client.get("/v1/admin/routing/versions", headers=admin)).json()
    assert len(versions) == 1

    unasked = await decide(client, admin, body(screening={**CLEAR, "weapons": None}))
    assert unasked["action"] == "stay_with_911"
    assert unasked["reasons"] == ["screening_incomplete:weapons"]
    assert unasked["policy_version"] == 1
    refused = await decide(client, admin, body(screening={**CLEAR, "consent_to_transfer": False}))
    assert refused["action"] == "stay_with_911"
    assert refused["reasons"] == ["no_consent"]
    second_hop = await decide(client, admin, body(transfers_so_far=2))
    assert second_hop["reasons"] == ["hop_limit"]


async def test_a_put_loosening_everything_lists_every_path(
    client: Client, auth: dict[str, dict[str, str]]
) -> None:
    admin = auth["admin"]
    before = await (await client.get("/v1/admin/routing", headers=admin)).json()
    loosened = copy.deepcopy({k: v for k, v in before.items() if k != "version"})
    loosened["policy"].update(required_screening=[], require_consent="no", hop_limit=3)
    loosened["policy"]["rules"][0]["match"]["screening"] = {"consent_to_transfer": "true"}
    resp = await client.put("/v1/admin/routing", json=loosened, headers=admin)
    assert resp.status == 422
    details = (await resp.json())["error"]["details"]
    assert [d["path"] for d in details] == [
        "policy.required_screening",
        "policy.require_consent",
        "policy.hop_limit",
        "policy.rules.0.match.screening.consent_to_transfer",
    ]
    assert (await (await client.get("/v1/admin/routing", headers=admin)).json()) == before
