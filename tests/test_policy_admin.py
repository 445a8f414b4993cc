"""Policy administration (DESIGN.md §9) over real HTTP on real Redis: If-Match and 412, a PUT of
the live policy is no version, the version list with what changed, one version whole, rollback."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.policy import PolicyChange
from gateway.web.appkeys import POLICY
from tests.conftest import AppFactory, KeyMaker

Client = TestClient[Any, Any]
ROUTING = "/v1/admin/routing"
VERSIONS = "/v1/admin/routing/versions"
ROLLBACK = "/v1/admin/routing/rollback"
OTHERS = ["zh", "vi", "ko", "ru", "so", "tl", "ar", "fr", "de", "ja", "uk", "am"]


@pytest.fixture
def admin(make_key: KeyMaker) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('ops', 'admin')}"}


async def live(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    resp = await client.get(ROUTING, headers=headers)
    data: dict[str, Any] = await resp.json()
    assert resp.status == 200, data
    assert resp.headers["ETag"] == f'"{data["version"]}"'
    return data


async def versions(client: Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    resp = await client.get(VERSIONS, headers=headers)
    data: list[dict[str, Any]] = await resp.json()
    assert resp.status == 200, data
    return data


def edited(doc: dict[str, Any], languages: list[str]) -> dict[str, Any]:
    """``doc`` with wa-988-backup speaking ``languages`` (and no ``version`` key)."""
    new = copy.deepcopy({k: v for k, v in doc.items() if k != "version"})
    for dest in new["destinations"]:
        if dest["id"] == "wa-988-backup":
            dest["languages"] = languages
    return new


def languages_of(doc: dict[str, Any]) -> list[str]:
    return next(d["languages"] for d in doc["destinations"] if d["id"] == "wa-988-backup")


async def put(
    client: Client, headers: dict[str, str], doc: dict[str, Any], if_match: str | None = None
) -> tuple[int, dict[str, Any], str | None]:
    extra = {} if if_match is None else {"If-Match": if_match}
    resp = await client.put(ROUTING, json=doc, headers={**headers, **extra})
    return resp.status, await resp.json(), resp.headers.get("ETag")


async def test_get_answers_an_etag(client: Client, admin: dict[str, str]) -> None:
    assert (await live(client, admin))["version"] == 1


async def test_put_with_if_match_quoted_or_bare(client: Client, admin: dict[str, str]) -> None:
    doc = await live(client, admin)
    status, data, tag = await put(client, admin, edited(doc, ["en", "zh"]), '"1"')
    assert (status, data["version"], tag) == (200, 2, '"2"')
    assert languages_of(data) == ["en", "zh"]
    status, data, tag = await put(client, admin, edited(doc, ["en", "es"]), "2")
    assert (status, data["version"], tag) == (200, 3, '"3"')
    assert languages_of(await live(client, admin)) == ["en", "es"]


async def test_stale_if_match_is_412_with_the_live_version(
    client: Client, admin: dict[str, str]
) -> None:
    doc = await live(client, admin)
    assert (await put(client, admin, edited(doc, ["en", "zh"]), '"1"'))[0] == 200
    status, data, tag = await put(client, admin, edited(doc, ["en", "es"]), '"1"')
    assert status == 412
    assert tag == '"2"'
    error = data["error"]
    assert error["code"] == "precondition_failed"
    assert error["details"] == [
        {
            "path": "If-Match",
            "message": "not the live version",
            "expected_version": 1,
            "live_version": 2,
        }
    ]
    assert "version 2 is live" in error["message"]
    after = await live(client, admin)
    assert (after["version"], languages_of(after)) == (2, ["en", "zh"])
    assert len(await versions(client, admin)) == 2
    # Even the content already live: the edit was made from another version.
    status, _, _ = await put(client, admin, edited(doc, ["en", "zh"]), '"1"')
    assert status == 412
    # A version that never existed is just as stale.
    assert (await put(client, admin, edited(doc, ["en"]), '"7"'))[0] == 412


@pytest.mark.parametrize("value", ["abc", '"one"', 'W/"1"', '"1", "2"', "-1", '""', "1.0", '"1'])
async def test_malformed_if_match_is_400_and_changes_nothing(
    client: Client, admin: dict[str, str], value: str
) -> None:
    doc = await live(client, admin)
    status, data, _ = await put(client, admin, edited(doc, ["en", "zh"]), value)
    assert status == 400, data
    assert data["error"]["code"] == "bad_request"
    assert [d["path"] for d in data["error"]["details"]] == ["If-Match"]
    assert (await live(client, admin))["version"] == 1
    assert len(await versions(client, admin)) == 1


async def test_put_without_if_match_is_accepted(client: Client, admin: dict[str, str]) -> None:
    doc = await live(client, admin)
    status, data, tag = await put(client, admin, edited(doc, ["en", "zh"]))
    assert (status, data["version"], tag) == (200, 2, '"2"')
    status, data, _ = await put(client, admin, edited(doc, ["en", "es"]), "*")
    assert (status, data["version"]) == (200, 3)


async def test_two_admins_racing_from_the_same_version(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    """Each round, two admins on two gateway processes PUT different edits of the live version
    at once, both with its If-Match: exactly one commits, the other gets 412 naming the
    winner's version, and the live policy is the winner's."""
    one, two = await make_client(), await make_client()
    alice = {"Authorization": f"Bearer {make_key('ops', 'admin')}"}
    bob = {"Authorization": f"Bearer {make_key('ops', 'admin')}"}
    for round_ in range(1, 6):
        doc = await live(one, alice)
        assert doc["version"] == round_
        tag = f'"{round_}"'
        edits = (
            edited(doc, ["en", OTHERS[2 * round_]]),
            edited(doc, ["en", OTHERS[2 * round_ + 1]]),
        )
        results = await asyncio.gather(put(one, alice, edits[0], tag), put(two, bob, edits[1], tag))
        assert sorted(status for status, _, _ in results) == [200, 412], results
        (_, won, _), (_, lost, lost_tag) = sorted(results, key=lambda r: r[0])
        assert won["version"] == round_ + 1
        assert lost["error"]["details"][0]["live_version"] == round_ + 1
        assert lost_tag == f'"{round_ + 1}"'
        now = await live(two, bob)
        assert now == won
        assert [v["version"] for v in await versions(one, alice)] == list(range(1, round_ + 2))


async def test_racing_without_if_match_both_commit_in_turn(
    make_client: AppFactory, admin: dict[str, str]
) -> None:
    """Scripts without If-Match: both PUTs are versions, one after the other, and each summary
    is computed against the version it replaced."""
    one, two = await make_client(), await make_client()
    doc = await live(one, admin)
    results = await asyncio.gather(
        put(one, admin, edited(doc, ["en", "zh"])), put(two, admin, edited(doc, ["en", "es"]))
    )
    assert sorted(data["version"] for _, data, _ in results) == [2, 3]
    listed = await versions(one, admin)
    assert [v["version"] for v in listed] == [1, 2, 3]
    second = next(data for _, data, _ in results if data["version"] == 2)
    third = next(data for _, data, _ in results if data["version"] == 3)
    assert listed[1]["summary"] == (
        f"destinations.wa-988-backup.languages: [en] → {_flow(languages_of(second))}"
    )
    assert listed[2]["summary"] == (
        "destinations.wa-988-backup.languages: "
        f"{_flow(languages_of(second))} → {_flow(languages_of(third))}"
    )


def _flow(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"


async def test_a_put_of_the_live_policy_is_no_new_version(
    client: Client, admin: dict[str, str]
) -> None:
    doc = await live(client, admin)
    before = await versions(client, admin)
    for if_match in (None, '"1"', "1"):
        status, data, tag = await put(client, admin, doc, if_match)  # "version" is ignored
        assert (status, data["version"], tag) == (200, 1, '"1"')
        assert data == doc
    assert await versions(client, admin) == before
    status, data, _ = await put(client, admin, edited(doc, ["en", "zh"]), '"1"')
    assert data["version"] == 2
    assert (await put(client, admin, data, '"2"'))[1]["version"] == 2
    assert len(await versions(client, admin)) == 2


async def test_versions_list_who_when_and_what_changed(
    client: Client, admin: dict[str, str], make_key: KeyMaker
) -> None:
    psap = {"Authorization": f"Bearer {make_key('kc-valleycom', 'psap')}"}
    doc = await live(client, admin)
    await put(client, admin, edited(doc, ["en", "zh"]), '"1"')
    doc = await live(client, admin)
    new = copy.deepcopy({k: v for k, v in doc.items() if k != "version"})
    new["policy"]["hop_limit"] = 1
    new["policy"]["rules"][0]["ring_timeout_s"] = 30
    rules = new["policy"]["rules"]
    rules[0], rules[1] = rules[1], rules[0]
    del new["policy"]["rules"][0]["description"]
    new["destinations"].append(
        {"id": "county-mobile-team", "kind": "local_clinician", "name": "Mobile team",
         "number": "+12065550111", "org": "king-county", "languages": ["en"]}
    )  # fmt: skip
    status, data, _ = await put(client, admin, new, '"2"')
    assert status == 200, data
    listed = await versions(client, psap)  # any role may read
    assert [v["version"] for v in listed] == [1, 2, 3]
    assert all(set(v) == {"version", "at", "actor", "summary"} for v in listed)
    assert listed[0]["actor"] == "system:config-files"
    assert listed[0]["summary"] == "seeded from config/"
    assert listed[1]["actor"].startswith("admin:ops:")
    assert listed[1]["at"].endswith(("+00:00", "Z"))
    assert listed[1]["at"] <= listed[2]["at"]
    assert listed[1]["summary"] == "destinations.wa-988-backup.languages: [en] → [en, zh]"
    described = doc["policy"]["rules"][1]["description"]
    assert listed[2]["summary"] == "; ".join(
        [
            "destinations.county-mobile-team: added",
            "policy.hop_limit: 2 → 1",
            "policy.rules.first-person.ring_timeout_s: 20 → 30",
            f"policy.rules.third-party-daytime.description: {described} → none",
            "policy.rules: order [first-person, third-party-daytime, third-party-overnight]"
            " → [third-party-daytime, first-person, third-party-overnight]",
        ]
    )


async def test_one_version_whole(client: Client, admin: dict[str, str], make_key: KeyMaker) -> None:
    center = {"Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"}
    first = await live(client, admin)
    await put(client, admin, edited(first, ["en", "zh"]), '"1"')
    second = await live(client, admin)
    resp = await client.get(f"{VERSIONS}/1", headers=center)
    assert resp.status == 200
    assert resp.headers["ETag"] == '"1"'
    assert await resp.json() == first
    resp = await client.get(f"{VERSIONS}/2", headers=admin)
    assert await resp.json() == second
    for unknown in ("3", "0", "99", "abc", "-1", "1e3", "9" * 40):
        resp = await client.get(f"{VERSIONS}/{unknown}", headers=admin)
        assert resp.status == 404, unknown
        assert (await resp.json())["error"]["code"] == "not_found"
    assert (await client.get(f"{VERSIONS}/1")).status == 401


async def test_rollback_to_a_version(client: Client, admin: dict[str, str]) -> None:
    first = await live(client, admin)
    await put(client, admin, edited(first, ["en", "zh"]), '"1"')
    await put(client, admin, edited(first, ["en", "es"]), '"2"')
    resp = await client.post(ROLLBACK, json={"version": 1}, headers=admin)
    data = await resp.json()
    assert resp.status == 200, data
    assert resp.headers["ETag"] == '"4"'
    assert data == {**first, "version": 4}
    listed = await versions(client, admin)
    assert listed[-1]["summary"] == (
        "rollback to version 1: destinations.wa-988-backup.languages: [en, es] → [en]"
    )
    # Back to 2, whose content is not live: a copy of it as version 5.
    resp = await client.post(ROLLBACK, json={"version": 2}, headers=admin)
    assert (await resp.json())["version"] == 5
    assert languages_of(await live(client, admin)) == ["en", "zh"]
    assert (await versions(client, admin))[-1]["summary"] == (
        "rollback to version 2: destinations.wa-988-backup.languages: [en] → [en, zh]"
    )


async def test_rollback_to_what_is_live_is_no_new_version(
    client: Client, admin: dict[str, str]
) -> None:
    first = await live(client, admin)
    await put(client, admin, edited(first, ["en", "zh"]), '"1"')
    for version in (2, 2):  # the live version itself
        resp = await client.post(ROLLBACK, json={"version": version}, headers=admin)
        assert (resp.status, (await resp.json())["version"]) == (200, 2)
    await client.post(ROLLBACK, json={"version": 1}, headers=admin)  # version 3 = version 1
    for version in (1, 3):  # both hold the live content
        resp = await client.post(ROLLBACK, json={"version": version}, headers=admin)
        assert (resp.status, (await resp.json())["version"]) == (200, 3)
    assert [v["version"] for v in await versions(client, admin)] == [1, 2, 3]


async def test_rollback_without_a_version(client: Client, admin: dict[str, str]) -> None:
    resp = await client.post(ROLLBACK, headers=admin)
    assert resp.status == 409, "version 1 has nothing before it"
    assert (await resp.json())["error"]["code"] == "conflict"
    first = await live(client, admin)
    await put(client, admin, edited(first, ["en", "zh"]), '"1"')
    for payload in ({"data": b""}, {"json": {}}, {"json": {"version": None}}):
        before = await live(client, admin)
        resp = await client.post(ROLLBACK, headers=admin, **payload)  # type: ignore[arg-type]
        data = await resp.json()
        assert resp.status == 200, data
        assert data["version"] == before["version"] + 1
        previous = await client.get(f"{VERSIONS}/{before['version'] - 1}", headers=admin)
        assert {**(await previous.json()), "version": data["version"]} == data
    listed = await versions(client, admin)
    assert listed[2]["summary"] == (
        "rollback to version 1: destinations.wa-988-backup.languages: [en, zh] → [en]"
    )


async def test_bare_rollback_after_a_no_op_put_undoes_the_real_change(
    client: Client, admin: dict[str, str]
) -> None:
    first = await live(client, admin)
    changed = (await put(client, admin, edited(first, ["en", "zh"]), '"1"'))[1]
    assert changed["version"] == 2
    same = (await put(client, admin, changed, '"2"'))[1]
    assert same["version"] == 2  # no version 3 for the no-op
    resp = await client.post(ROLLBACK, headers=admin)
    data = await resp.json()
    assert data["version"] == 3
    assert languages_of(data) == ["en"]
    assert data == {**first, "version": 3}


async def test_rollback_errors(client: Client, admin: dict[str, str], make_key: KeyMaker) -> None:
    psap = {"Authorization": f"Bearer {make_key('kc-valleycom', 'psap')}"}
    first = await live(client, admin)
    await put(client, admin, edited(first, ["en", "zh"]), '"1"')
    cases: list[tuple[dict[str, Any], dict[str, str], int]] = [
        ({"json": {"version": 42}}, admin, 404),
        ({"json": {"version": 0}}, admin, 422),
        ({"json": {"version": "one"}}, admin, 422),
        ({"json": {"version": 1, "extra": True}}, admin, 422),
        ({"json": {"version": 1}}, {**admin, "If-Match": '"1"'}, 412),
        ({"json": {"version": 1}}, {**admin, "If-Match": "one"}, 400),
        ({"json": {"version": 1}}, psap, 403),
        ({"data": b"{"}, {**admin, "Content-Type": "application/json"}, 400),
    ]
    for payload, headers, status in cases:
        resp = await client.post(ROLLBACK, headers=headers, **payload)
        assert resp.status == status, (payload, headers)
        assert set((await resp.json())["error"]) == {"code", "message", "details"}
    assert (await live(client, admin))["version"] == 2
    resp = await client.post(ROLLBACK, json={"version": 1}, headers={**admin, "If-Match": '"2"'})
    assert (await resp.json())["version"] == 3


async def test_policy_changed_hook_sees_every_new_version_once(
    client: Client, admin: dict[str, str]
) -> None:
    """The hook ``policy.changed`` events hang on: one call per committed version, none for a
    no-op or a refused edit."""
    seen: list[PolicyChange] = []

    async def listener(change: PolicyChange) -> None:
        seen.append(change)

    client.server.app[POLICY].listeners.append(listener)
    first = await live(client, admin)
    await put(client, admin, edited(first, ["en", "zh"]), '"1"')
    await put(client, admin, edited(first, ["en", "zh"]), '"2"')  # no-op
    await put(client, admin, edited(first, ["en", "es"]), '"1"')  # 412
    await client.post(ROLLBACK, headers=admin)
    assert [(c.version, c.previous_version, c.action, c.changed) for c in seen] == [
        (2, 1, "put", True),
        (3, 2, "rollback", True),
    ]
    assert seen[0].summary == "destinations.wa-988-backup.languages: [en] → [en, zh]"
    assert seen[0].actor.startswith("admin:ops:")
    assert seen[1].at is not None
    assert seen[1].at.tzinfo is not None


async def test_openapi_documents_if_match_and_versions(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    one = doc["paths"]["/v1/admin/routing/versions/{version}"]["get"]
    assert one["parameters"][0]["name"] == "version"
    schema = doc["components"]["schemas"]["VersionInfo"]
    assert set(schema["properties"]) == {"version", "at", "actor", "summary"}
    for method, path in (("put", ROUTING), ("post", ROLLBACK)):
        operation = doc["paths"][path][method]
        assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["If-Match"]
        assert "412" in operation["responses"]
    assert "412" not in doc["paths"][ROUTING]["get"]["responses"]
