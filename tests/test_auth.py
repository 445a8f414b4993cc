"""API keys: digests only on disk, the CLI that makes them, and what the HTTP surface does with
missing, unknown, malformed and foreign keys."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from gateway.core.auth import (
    KEYS_FILE,
    KeyRing,
    Principal,
    Role,
    add_key,
    bearer_token,
    digest,
    load_key_file,
    new_key,
    require_org,
    require_role,
)
from gateway.core.errors import Forbidden, Unauthorized
from tests.conftest import ROOT, AppFactory, KeyMaker
from tests.telephony import SAFE


def assert_error_shape(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)


def touch_later(path: Path) -> None:
    """Make sure a rewrite is seen as a change even on coarse-mtime filesystems."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


# --- digests and the key file -------------------------------------------------------------------


def test_digest_is_sha256_hex() -> None:
    assert digest("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(digest("gw_psap_x")) == 64


def test_new_keys_are_unique_and_name_their_role() -> None:
    made = {new_key(Role.PSAP) for _ in range(50)}
    assert len(made) == 50
    assert all(k.startswith("gw_psap_") and len(k) > 40 for k in made)
    assert new_key(Role.CRISIS_CENTER).startswith("gw_crisis_center_")


def test_add_key_stores_only_the_digest_and_appends(tmp_path: Path) -> None:
    first = add_key(tmp_path, org="kc-valleycom", role=Role.PSAP, name="console 1")
    second = add_key(tmp_path, org="crisis-connections", role=Role.CRISIS_CENTER)
    text = (tmp_path / KEYS_FILE).read_text()
    assert first not in text
    assert second not in text
    records = load_key_file(tmp_path / KEYS_FILE).keys
    assert [(r.id, r.digest, r.org, r.role, r.name) for r in records] == [
        (digest(first)[:12], digest(first), "kc-valleycom", Role.PSAP, "console 1"),
        (digest(second)[:12], digest(second), "crisis-connections", Role.CRISIS_CENTER, "unnamed"),
    ]
    assert all(r.created_at is not None and r.created_at.tzinfo for r in records)
    assert not list(tmp_path.glob("*.tmp"))


def test_add_key_refuses_an_org_that_is_not_an_identifier(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        add_key(tmp_path, org="Not An Org!", role=Role.ADMIN)
    assert not (tmp_path / KEYS_FILE).exists()


def test_a_broken_key_file_fails_loudly_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / KEYS_FILE
    path.write_text("keys:\n  - digest: not-hex\n    org: x\n    role: psap\n")
    with pytest.raises(ValueError, match=str(path)):
        load_key_file(path)
    path.write_text("keys: [\n")
    with pytest.raises(ValueError, match=str(path)):
        KeyRing(path)


def test_keyring_authenticates_by_digest(tmp_path: Path) -> None:
    key = add_key(tmp_path, org="kc-valleycom", role=Role.PSAP)
    ring = KeyRing(tmp_path / KEYS_FILE)
    principal = ring.authenticate(key)
    assert principal == Principal(org="kc-valleycom", role=Role.PSAP, key_id=digest(key)[:12])
    assert key not in principal.actor
    assert principal.actor == "psap:kc-valleycom:unnamed"  # made without a name
    assert ring.authenticate(key + "x") is None
    assert ring.authenticate(digest(key)) is None  # the digest itself is not a key
    assert ring.authenticate("") is None


def test_keyring_without_a_file_knows_no_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / KEYS_FILE)
    assert ring.authenticate("gw_admin_anything") is None


def test_keyring_sees_new_and_removed_keys_without_restart(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / KEYS_FILE)  # no file yet
    key = add_key(tmp_path, org="kc-valleycom", role=Role.PSAP)
    assert ring.authenticate(key) is not None

    later = add_key(tmp_path, org="ops", role=Role.ADMIN)
    touch_later(tmp_path / KEYS_FILE)
    assert ring.authenticate(later) == Principal("ops", Role.ADMIN, digest(later)[:12])

    path = tmp_path / KEYS_FILE
    data = yaml.safe_load(path.read_text())
    data["keys"] = [r for r in data["keys"] if r["digest"] != digest(key)]
    path.write_text(yaml.safe_dump(data))
    touch_later(path)
    assert ring.authenticate(key) is None
    assert ring.authenticate(later) is not None


# --- bearer parsing, roles and orgs -------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc"]
)
def test_malformed_authorization_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        bearer_token(header)


def test_bearer_token_extracts_the_key() -> None:
    assert bearer_token("Bearer gw_psap_abc") == "gw_psap_abc"
    assert bearer_token("bearer  gw_psap_abc ") == "gw_psap_abc"


def test_require_role() -> None:
    psap = Principal("kc-valleycom", Role.PSAP, "k1")
    assert require_role(psap, Role.PSAP, Role.ADMIN) is psap
    with pytest.raises(Forbidden, match="crisis_center"):
        require_role(psap, Role.CRISIS_CENTER)
    admin = Principal("ops", Role.ADMIN, "k2")
    with pytest.raises(Forbidden):
        require_role(admin, Role.PSAP)  # an admin is not every role


def test_require_org() -> None:
    psap = Principal("kc-valleycom", Role.PSAP, "k1")
    assert require_org(psap, "kc-valleycom") is psap
    assert require_org(psap, "other", "kc-valleycom") is psap
    with pytest.raises(Forbidden):
        require_org(psap, "other-psap")
    with pytest.raises(Forbidden):
        require_org(psap)
    admin = Principal("ops", Role.ADMIN, "k2")
    assert require_org(admin, "any-psap") is admin
    center = Principal("crisis-connections", Role.CRISIS_CENTER, "k3")
    with pytest.raises(Forbidden):
        require_org(center, "kc-valleycom")


# --- the CLI ------------------------------------------------------------------------------------


def run_keys_new(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "new", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_keys_new_prints_the_key_last_and_stores_its_digest(config_dir: Path) -> None:
    config = config_dir
    done = run_keys_new("--org", "kc-valleycom", "--role", "psap", "--config-dir", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    key = lines[-1].strip()
    assert key.startswith("gw_psap_")
    assert done.stdout.count(key) == 1
    assert key not in done.stderr

    text = (config / KEYS_FILE).read_text()
    assert key not in text
    assert digest(key) in text
    principal = KeyRing(config / KEYS_FILE).authenticate(key)
    assert principal is not None
    assert (principal.org, principal.role) == ("kc-valleycom", Role.PSAP)


def test_cli_keys_new_rejects_an_unknown_role(tmp_path: Path) -> None:
    done = run_keys_new("--org", "x", "--role", "root", "--config-dir", str(tmp_path))
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
    assert not (tmp_path / KEYS_FILE).exists()


# --- over HTTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/transfers/abc"),
        ("POST", "/v1/transfers"),
        ("POST", "/v1/routing/decisions"),
        ("GET", "/v1/admin/routing"),
        ("GET", "/v1/no-such-thing"),
        ("GET", "/v1"),
    ],
)
async def test_v1_without_a_key_is_401(
    client: TestClient[Any, Any], method: str, path: str
) -> None:
    resp = await client.request(method, path, json={})
    assert resp.status == 401
    assert resp.content_type == "application/json"
    assert_error_shape(await resp.json(), "unauthorized")


async def test_v1_with_an_unknown_key_is_401(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    key = make_key("kc-valleycom", "psap")
    for wrong in (key + "x", key[:-1], "gw_psap_" + "A" * 43, digest(key)):
        resp = await client.get("/v1/transfers/abc", headers={"Authorization": f"Bearer {wrong}"})
        assert resp.status == 401
        assert_error_shape(await resp.json(), "unauthorized")


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token gw_psap_x", "gw_psap_x"]
)
async def test_v1_with_a_malformed_authorization_is_401(
    client: TestClient[Any, Any], header: str
) -> None:
    resp = await client.get("/v1/transfers/abc", headers={"Authorization": header})
    assert resp.status == 401
    assert_error_shape(await resp.json(), "unauthorized")


async def test_a_key_made_while_running_works_without_restart(
    client: TestClient[Any, Any], make_key: KeyMaker, config_dir: Path
) -> None:
    first = make_key("kc-valleycom", "psap")
    resp = await client.get("/v1/no-such-thing", headers={"Authorization": f"Bearer {first}"})
    assert resp.status == 404  # past authentication
    later = make_key("ops", "admin")
    touch_later(config_dir / KEYS_FILE)
    resp = await client.get("/v1/no-such-thing", headers={"Authorization": f"Bearer {later}"})
    assert resp.status == 404


async def test_unauthenticated_operational_routes_stay_open(client: TestClient[Any, Any]) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
        resp = await client.get(path)
        assert resp.status == 200, path


async def test_the_key_file_is_private_to_the_config_dir(
    make_client: AppFactory, make_key: KeyMaker, tmp_path: Path, settings: Any
) -> None:
    """A key recorded in one config dir means nothing to a gateway reading another."""
    other_dir = tmp_path / "other-config"
    other_dir.mkdir()
    key = make_key("kc-valleycom", "psap")
    client = await make_client(config_dir=other_dir)
    resp = await client.get("/v1/no-such-thing", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 401


# --- 403: another org's transfer ----------------------------------------------------------------

FIRST_PERSON_CALL = {"psap_id": "kc-valleycom", "caller_type": "first_person", "screening": SAFE}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def open_first_person_transfer(client: TestClient[Any, Any], key: str) -> dict[str, Any]:
    resp = await client.post("/v1/transfers", json=FIRST_PERSON_CALL, headers=bearer(key))
    body = await resp.json()
    assert resp.status == 201, body
    # The default policy sends first-person callers to the 988 chain only.
    assert [d["id"] for d in body["decision"]["destinations"]] == [
        "crisis-connections-988",
        "wa-988-backup",
        "national-988-backup",
    ]
    transfer: dict[str, Any] = body
    return transfer


async def test_transfer_reads_are_limited_to_the_orgs_involved(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    own_psap = make_key("kc-valleycom", "psap")
    transfer = await open_first_person_transfer(client, own_psap)
    path = f"/v1/transfers/{transfer['id']}"

    allowed = [
        own_psap,
        make_key("ops", "admin"),
        make_key("crisis-connections", "crisis_center"),  # first in the chain
        make_key("national-988", "crisis_center"),  # a backup named by the decision
    ]
    for key in allowed:
        resp = await client.get(path, headers=bearer(key))
        body = await resp.json()
        assert resp.status == 200, body
        assert (body["id"], body["psap_id"]) == (transfer["id"], "kc-valleycom")

    forbidden = [
        make_key("other-psap", "psap"),
        make_key("kc-clinicians", "crisis_center"),  # a destination, but not in this chain
        make_key("kc-valleycom", "crisis_center"),  # the PSAP's name, but not a PSAP key
    ]
    for key in forbidden:
        resp = await client.get(path, headers=bearer(key))
        assert resp.status == 403, key
        assert_error_shape(await resp.json(), "forbidden")


async def test_only_psap_keys_open_transfers(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    for org, role in (("ops", "admin"), ("crisis-connections", "crisis_center")):
        resp = await client.post(
            "/v1/transfers", json=FIRST_PERSON_CALL, headers=bearer(make_key(org, role))
        )
        assert resp.status == 403, role
        assert_error_shape(await resp.json(), "forbidden")


async def test_a_psap_cannot_open_a_transfer_for_another_psap(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    key = make_key("other-psap", "psap")
    resp = await client.post("/v1/transfers", json=FIRST_PERSON_CALL, headers=bearer(key))
    assert resp.status == 403
    assert_error_shape(await resp.json(), "forbidden")


@pytest.mark.parametrize("key", [b"\xe9\xe9", b"\xff", b"gw_psap_\xc3\xa9"])
async def test_a_key_that_is_not_ascii_is_401_not_a_crash(
    client: TestClient[Any, Any], key: bytes
) -> None:
    """A header's bytes that are no key the gateway issues (they would not even encode as
    UTF-8 once aiohttp decodes them) are an unknown key."""
    reader_writer = await asyncio.open_connection("127.0.0.1", client.port)
    reader, writer = reader_writer
    writer.write(
        b"GET /v1/admin/routing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + key + b"\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    assert answer.split(b" ")[1] == b"401", answer[:80]
    assert b'"code": "unauthorized"' in answer
