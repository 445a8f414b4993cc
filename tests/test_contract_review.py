"""The contract as an integrator meets it from outside (DESIGN.md §5, §6, §9), each test a
mismatch found by probing a running gateway: a key of the wrong role is refused (403) before its
body or the resource it names is looked at; a rollback's ``version`` and a policy's counts are
JSON integers (``true`` is not 1); a stale ``If-Match`` is 412 whatever the body; a 401 names the
bearer scheme; a key file broken by hand is no 500; ``keys new`` names the id ``keys revoke``
takes; ``/openapi.json`` says which bodies may be left out and which answers carry the policy's
``ETag``. Real app on a real port, real Redis."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway.core.auth import KEYS_FILE
from tests.conftest import ROOT, KeyMaker

Client = TestClient[Any, Any]
ROUTING = "/v1/admin/routing"
VERSIONS = "/v1/admin/routing/versions"
ROLLBACK = "/v1/admin/routing/rollback"
ROLES = ("psap", "crisis_center", "admin")
ORGS = {"psap": "kc-valleycom", "crisis_center": "crisis-connections", "admin": "ops"}


@pytest.fixture
def keys(make_key: KeyMaker) -> dict[str, dict[str, str]]:
    """An ``Authorization`` header for a key of each role."""
    return {role: {"Authorization": f"Bearer {make_key(ORGS[role], role)}"} for role in ROLES}


async def live(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    resp = await client.get(ROUTING, headers=headers)
    data: dict[str, Any] = await resp.json()
    assert resp.status == 200, data
    return data


def with_languages(doc: dict[str, Any], languages: list[str]) -> dict[str, Any]:
    new = copy.deepcopy({k: v for k, v in doc.items() if k != "version"})
    for dest in new["destinations"]:
        if dest["id"] == "wa-988-backup":
            dest["languages"] = languages
    return new


async def assert_error(resp: Any, status: int) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body


async def test_every_v1_route_refuses_a_role_it_does_not_list_with_403(
    client: Client, keys: dict[str, dict[str, str]]
) -> None:
    """For each operation of /openapi.json with ``x-roles``, a key of any other role gets 403 —
    not 422 for the body it sent, nor 404 for the resource it named (DESIGN.md §6: 403 wrong
    role). The body is an empty object and ids are well-formed but unknown."""
    doc = await (await client.get("/openapi.json")).json()
    ids = {"transfers": "tr_" + "0" * 24, "handbacks": "hb_" + "0" * 24}
    checked = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            allowed = operation.get("x-roles")
            if not path.startswith("/v1/") or allowed is None:
                continue
            some_id = ids.get(path.split("/")[2], "x")
            url = re.sub(r"{\w+}", some_id, path.replace("{version}", "1"))
            for role in set(ROLES) - set(allowed):
                body = None if method == "get" else {}
                resp = await client.request(method.upper(), url, json=body, headers=keys[role])
                error = await assert_error(resp, 403)
                assert error["error"]["code"] == "forbidden", (method, path, role)
                checked += 1
    assert checked >= 15  # policy admin, transfers, handbacks, dispositions, reports


async def test_a_handback_from_another_role_is_403_before_its_body_is_read(
    client: Client, keys: dict[str, dict[str, str]]
) -> None:
    for role in ("psap", "admin"):
        resp = await client.post("/v1/handbacks", json={}, headers=keys[role])
        await assert_error(resp, 403)
        resp = await client.post(
            "/v1/transfers/tr_" + "0" * 24 + "/disposition", json={}, headers=keys[role]
        )
        await assert_error(resp, 403)
    # Malformed ids too: the role is the first thing refused.
    resp = await client.get("/v1/handbacks/hb_x/eido", headers=keys["crisis_center"])
    await assert_error(resp, 403)
    resp = await client.post("/v1/handbacks/hb_x/contact", json={}, headers=keys["admin"])
    await assert_error(resp, 403)


@pytest.mark.parametrize("version", ["2", 2.0, True, "one", [2], {"n": 2}])
async def test_a_rollback_version_is_a_json_integer(
    client: Client, keys: dict[str, dict[str, str]], version: Any
) -> None:
    """``{"version": n}`` (DESIGN.md §9): a string, float or boolean is 422 naming ``version``
    (``true`` must not read as version 1), and nothing changes."""
    admin = keys["admin"]
    first = await live(client, admin)
    resp = await client.put(ROUTING, json=with_languages(first, ["en", "zh"]), headers=admin)
    assert resp.status == 200
    resp = await client.post(ROLLBACK, json={"version": version}, headers=admin)
    error = await assert_error(resp, 422)
    assert [d["path"] for d in error["error"]["details"]] == ["version"]
    assert (await live(client, admin))["version"] == 2


@pytest.mark.parametrize(
    "body",
    [{"json": {}}, {"json": {"version": None}}, {}, {"json": {"version": 1}}],
    ids=["empty-object", "null", "no-body", "one"],
)
async def test_a_rollback_without_a_version_or_with_one(
    client: Client, keys: dict[str, dict[str, str]], body: dict[str, Any]
) -> None:
    admin = keys["admin"]
    first = await live(client, admin)
    await client.put(ROUTING, json=with_languages(first, ["en", "zh"]), headers=admin)
    resp = await client.post(ROLLBACK, headers=admin, **body)
    data = await resp.json()
    assert resp.status == 200, data
    assert data["version"] == 3
    assert resp.headers["ETag"] == '"3"'
    assert with_languages(data, ["en"]) == with_languages(first, ["en"])


@pytest.mark.parametrize("version", [0, -1, 99])
async def test_a_rollback_to_no_such_version(
    client: Client, keys: dict[str, dict[str, str]], version: int
) -> None:
    resp = await client.post(ROLLBACK, json={"version": version}, headers=keys["admin"])
    await assert_error(resp, 404 if version > 0 else 422)


@pytest.mark.parametrize(
    "payload",
    [
        {"json": {"psaps": []}},
        {"data": b"not json", "headers": {"Content-Type": "application/json"}},
        {"json": [1, 2]},
    ],
    ids=["invalid-policy", "not-json", "array"],
)
async def test_a_stale_if_match_is_412_whatever_the_body(
    client: Client, keys: dict[str, dict[str, str]], payload: dict[str, Any]
) -> None:
    """The precondition is evaluated before the content (RFC 9110 §13.2.2): an edit made from
    an old version is told to reload (412 with the live version), not to fix its errors."""
    admin = keys["admin"]
    first = await live(client, admin)
    await client.put(ROUTING, json=with_languages(first, ["en", "zh"]), headers=admin)
    payload = dict(payload)
    headers = {**admin, **payload.pop("headers", {}), "If-Match": '"1"'}
    for url, method in ((ROUTING, "PUT"), (ROLLBACK, "POST")):
        resp = await client.request(method, url, headers=headers, **payload)
        error = await assert_error(resp, 412)
        assert error["error"]["details"][0]["live_version"] == 2
        assert resp.headers["ETag"] == '"2"'
    # From the live version, the body's own errors are what the client hears.
    resp = await client.put(ROUTING, headers={**headers, "If-Match": '"2"'}, **payload)
    assert resp.status in (400, 422)
    assert (await live(client, admin))["version"] == 2


async def test_a_stale_rollback_is_412_even_for_an_invalid_version(
    client: Client, keys: dict[str, dict[str, str]]
) -> None:
    admin = keys["admin"]
    first = await live(client, admin)
    await client.put(ROUTING, json=with_languages(first, ["en", "zh"]), headers=admin)
    resp = await client.post(ROLLBACK, json={"version": 0}, headers={**admin, "If-Match": '"1"'})
    await assert_error(resp, 412)


async def test_a_401_names_the_bearer_scheme(
    client: Client, keys: dict[str, dict[str, str]]
) -> None:
    """RFC 9110 §11.6.1 / RFC 6750 §3: a 401 carries ``WWW-Authenticate: Bearer …``."""
    for headers in ({}, {"Authorization": "Bearer gw_psap_nope"}, {"Authorization": "Basic x"}):
        resp = await client.get(VERSIONS, headers=headers)
        await assert_error(resp, 401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.get(VERSIONS, headers=keys["psap"])
    assert resp.status == 200
    assert "WWW-Authenticate" not in resp.headers


async def test_openapi_says_which_request_bodies_may_be_left_out(client: Client) -> None:
    """A rollback, a release and a contact confirmation work with no body; every other body is
    required."""
    doc = await (await client.get("/openapi.json")).json()
    optional = {
        (method, path)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation and not operation["requestBody"]["required"]
    }
    assert optional == {
        ("post", ROLLBACK),
        ("post", "/v1/transfers/{id}/release"),
        ("post", "/v1/handbacks/{id}/contact"),
    }
    assert doc["paths"][ROUTING]["put"]["requestBody"]["required"] is True


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("max_concurrent", True),
        ("max_concurrent", "2"),
        ("max_concurrent", 2.0),
        ("ring_timeout_s", "21"),
        ("ring_timeout_s", True),
        ("hop_limit", True),
    ],
)
async def test_numbers_in_a_policy_are_json_integers(
    client: Client, keys: dict[str, dict[str, str]], where: str, value: Any
) -> None:
    """``max_concurrent: true`` must not become a cap of 1 call, nor ``"21"`` a ring timeout:
    422 naming the path, and the live policy untouched (DESIGN.md §5: a bad policy gets 422
    with the path of every error)."""
    admin = keys["admin"]
    doc = {k: v for k, v in (await live(client, admin)).items() if k != "version"}
    edited = copy.deepcopy(doc)
    if where == "max_concurrent":
        edited["destinations"][0]["max_concurrent"] = value
        path = "destinations.0.max_concurrent"
    elif where == "ring_timeout_s":
        edited["policy"]["rules"][0]["ring_timeout_s"] = value
        path = "policy.rules.0.ring_timeout_s"
    else:
        edited["policy"]["hop_limit"] = value
        path = "policy.hop_limit"
    resp = await client.put(ROUTING, json=edited, headers=admin)
    error = await assert_error(resp, 422)
    assert [d["path"] for d in error["error"]["details"]] == [path]
    assert (await live(client, admin))["version"] == 1
    # The same edit as a true integer is accepted.
    if where != "hop_limit":
        fixed = copy.deepcopy(edited)
        if where == "max_concurrent":
            fixed["destinations"][0]["max_concurrent"] = 2
        else:
            fixed["policy"]["rules"][0]["ring_timeout_s"] = 21
        assert (await client.put(ROUTING, json=fixed, headers=admin)).status == 200


async def test_a_key_file_broken_by_hand_is_no_500(
    client: Client, keys: dict[str, dict[str, str]], config_dir: Path
) -> None:
    """An operator's half-done edit of api_keys.yaml must not turn every request into a 500
    (DESIGN.md §6): the keys last read stay in force until the file parses again."""
    path = config_dir / KEYS_FILE
    good = path.read_text()
    assert (await client.get(VERSIONS, headers=keys["admin"])).status == 200
    path.write_text("keys: [[[\n")
    os.utime(path, (time.time() + 5, time.time() + 5))  # a change the mtime check sees
    assert (await client.get(VERSIONS, headers=keys["admin"])).status == 200
    await assert_error(await client.get(VERSIONS, headers={"Authorization": "Bearer x"}), 401)
    # Fixed without one of the keys: that key is refused at once.
    kept = yaml.safe_load(good)
    kept["keys"] = [k for k in kept["keys"] if k["role"] != "admin"]
    path.write_text(yaml.safe_dump(kept))
    os.utime(path, (time.time() + 10, time.time() + 10))
    await assert_error(await client.get(VERSIONS, headers=keys["admin"]), 401)
    assert (await client.get(VERSIONS, headers=keys["psap"])).status == 200


def test_keys_new_names_the_id_that_keys_revoke_takes(config_dir: Path) -> None:
    """``keys new`` prints the new key's id (what ``keys list`` shows and ``keys revoke``
    takes) — two keys may share a holder's name — and the key itself as the last line."""
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_REDIS_URL"}
    env.update(GATEWAY_CONFIG_DIR=str(config_dir), GATEWAY_STATE_DIR=str(config_dir / "state"))
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "new", "--org", "ops", "--role", "admin",
         "--name", "dana", "--config-dir", str(config_dir)],
        capture_output=True, text=True, env=env, check=True, cwd=ROOT,
    )  # fmt: skip
    key = made.stdout.splitlines()[-1]
    key_id = hashlib.sha256(key.encode()).hexdigest()[:12]
    assert f"key {key_id} " in made.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "list", "--format", "json",
         "--config-dir", str(config_dir)],
        capture_output=True, text=True, env=env, check=True, cwd=ROOT,
    )  # fmt: skip
    assert [k["id"] for k in json.loads(listed.stdout) if k["name"] == "dana"] == [key_id]


async def test_openapi_documents_the_policy_etag(
    client: Client, keys: dict[str, dict[str, str]]
) -> None:
    """Every answer that carries the policy's ``ETag`` says so in /openapi.json, and the answer
    really carries it, quoted, equal to the body's version."""
    doc = await (await client.get("/openapi.json")).json()
    carrying = [
        ("get", ROUTING, "200"),
        ("put", ROUTING, "200"),
        ("put", ROUTING, "412"),
        ("get", VERSIONS + "/{version}", "200"),
        ("post", ROLLBACK, "200"),
        ("post", ROLLBACK, "412"),
    ]
    for method, path, status in carrying:
        assert "ETag" in doc["paths"][path][method]["responses"][status]["headers"], (path, status)
    assert "headers" not in doc["paths"][VERSIONS]["get"]["responses"]["200"]
    admin = keys["admin"]
    for url in (ROUTING, VERSIONS + "/1"):
        resp = await client.get(url, headers=admin)
        assert resp.headers["ETag"] == f'"{(await resp.json())["version"]}"'
