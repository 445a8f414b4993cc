"""Identity and keys (DESIGN.md §9): keys with an id and a holder's name, ``keys new|list|revoke``
as an administrator runs them, a revocation every gateway process honours within 5 s, the actor
``<role>:<org>:<name>`` in the audit trail and the policy versions, and key files from before
keys had ids and names."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.core.auth import (
    KEYS_FILE,
    KeyRing,
    Principal,
    RevocationFeed,
    Role,
    add_key,
    digest,
    load_key_file,
    publish_revocation,
)
from gateway.transfer.store import TransferStore
from tests.conftest import ROOT, AppFactory
from tests.faults import GatewayProcess
from tests.telephony import BRIDGE, SAFE, free_port

REVOCATION_BOUND_S = 5.0
"""DESIGN.md §9: a revoked key gets 401 on every process within 5 s."""


def gateway_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m gateway …`` as an administrator runs it; no GATEWAY_* setting but ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def new_key_via_cli(config_dir: Path, org: str, role: str, name: str | None = None) -> str:
    named = ["--name", name] if name is not None else []
    done = gateway_cli(
        "keys", "new", "--org", org, "--role", role, *named, "--config-dir", str(config_dir)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def listed(config_dir: Path) -> list[dict[str, Any]]:
    done = gateway_cli("keys", "list", "--format", "json", "--config-dir", str(config_dir))
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- the CLI ------------------------------------------------------------------------------------


def test_keys_new_list_revoke(config_dir: Path) -> None:
    console = new_key_via_cli(config_dir, "kc-valleycom", "psap", "Dana Smith")
    ops = new_key_via_cli(config_dir, "ops", "admin")  # admin: any org; no --name: unnamed
    assert console.startswith("gw_psap_")
    assert ops.startswith("gw_admin_")

    rows = listed(config_dir)
    assert [(r["id"], r["org"], r["role"], r["name"], r["revoked"]) for r in rows] == [
        (digest(console)[:12], "kc-valleycom", "psap", "Dana Smith", False),
        (digest(ops)[:12], "ops", "admin", "unnamed", False),
    ]
    assert all(r["created_at"].endswith("+00:00") for r in rows)

    table = gateway_cli("keys", "list", "--config-dir", str(config_dir))
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["id", "org", "role", "name", "created_at", "revoked"]
    assert len(lines) == 2
    assert "Dana Smith" in lines[0]
    for secret in (console, ops, digest(console), digest(ops)):  # neither keys nor digests
        assert secret not in table.stdout

    console_id = rows[0]["id"]
    done = gateway_cli("keys", "revoke", console_id, "--config-dir", str(config_dir))
    assert done.returncode == 0, done.stderr
    assert "psap:kc-valleycom:Dana Smith" in done.stdout
    rows = listed(config_dir)
    assert [r["revoked"] for r in rows] == [True, False]
    assert rows[0]["revoked_at"] is not None

    ring = KeyRing(config_dir / KEYS_FILE)
    assert ring.authenticate(console) is None
    assert ring.authenticate(ops) == Principal("ops", Role.ADMIN, digest(ops)[:12], "unnamed")

    again = gateway_cli("keys", "revoke", console_id, "--config-dir", str(config_dir))
    assert again.returncode == 0, again.stderr  # revoking twice is harmless
    assert listed(config_dir)[0]["revoked_at"] == rows[0]["revoked_at"]


def test_keys_revoke_of_an_unknown_id_fails_naming_the_known_ones(config_dir: Path) -> None:
    key = new_key_via_cli(config_dir, "ops", "admin", "ops-bot")
    before = (config_dir / KEYS_FILE).read_text()
    done = gateway_cli("keys", "revoke", "0123456789ab", "--config-dir", str(config_dir))
    assert done.returncode == 2
    assert "no key with id '0123456789ab'" in done.stderr
    assert digest(key)[:12] in done.stderr
    assert (config_dir / KEYS_FILE).read_text() == before


@pytest.mark.parametrize(
    ("role", "known"),
    [
        ("psap", "kc-valleycom"),
        ("crisis_center", "crisis-connections, kc-clinicians, national-988, wa-988"),
    ],
)
def test_keys_new_refuses_an_org_the_policy_does_not_know(
    config_dir: Path, role: str, known: str
) -> None:
    done = gateway_cli(
        "keys", "new", "--org", "no-such-org", "--role", role, "--config-dir", str(config_dir)
    )
    assert done.returncode == 2
    assert "'no-such-org'" in done.stderr
    assert f"known: {known}" in done.stderr
    assert done.stdout == ""
    assert not (config_dir / KEYS_FILE).exists()


def test_keys_new_takes_a_crisis_center_org_named_by_a_destination(config_dir: Path) -> None:
    key = new_key_via_cli(config_dir, "kc-clinicians", "crisis_center", "team-lead")
    principal = KeyRing(config_dir / KEYS_FILE).authenticate(key)
    assert principal is not None
    assert principal.actor == "crisis_center:kc-clinicians:team-lead"


def test_keys_new_refuses_a_name_that_would_break_the_actor(config_dir: Path) -> None:
    done = gateway_cli(
        "keys", "new", "--org", "ops", "--role", "admin", "--name", "a:b",
        "--config-dir", str(config_dir),
    )  # fmt: skip
    assert done.returncode == 2
    assert "--name" in done.stderr
    assert "colon" in done.stderr
    assert not (config_dir / KEYS_FILE).exists()


async def test_keys_new_knows_a_psap_added_to_the_live_policy(
    client: TestClient[Any, Any], config_dir: Path, redis_url: str
) -> None:
    """The live policy in Redis (changed over the API) says which orgs exist, not the files."""
    admin = bearer(add_key(config_dir, org="ops", role=Role.ADMIN))
    doc = await (await client.get("/v1/admin/routing", headers=admin)).json()
    doc.pop("version")
    doc["psaps"].append({**doc["psaps"][0], "id": "kc-newpsap", "name": "New PSAP"})
    resp = await client.put("/v1/admin/routing", json=doc, headers=admin)
    assert resp.status == 200, await resp.text()

    offline = gateway_cli(
        "keys", "new", "--org", "kc-newpsap", "--role", "psap", "--config-dir", str(config_dir)
    )
    assert offline.returncode == 2  # the files alone do not know it
    live = gateway_cli(
        "keys", "new", "--org", "kc-newpsap", "--role", "psap", "--config-dir", str(config_dir),
        env={"GATEWAY_REDIS_URL": redis_url},
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    assert live.stdout.strip().splitlines()[-1].startswith("gw_psap_")


# --- revocation ---------------------------------------------------------------------------------


async def test_a_revocation_published_in_redis_reaches_a_keyring(
    redis: Redis, config_dir: Path
) -> None:
    key = add_key(config_dir, org="kc-valleycom", role=Role.PSAP, name="console-2")
    ring = KeyRing(config_dir / KEYS_FILE)
    feed = RevocationFeed(ring, redis)
    assert await feed.refresh()
    assert ring.authenticate(key) is not None
    await publish_revocation(redis, digest(key)[:12])
    assert ring.authenticate(key) is not None  # until the next read of the set
    assert await feed.refresh()
    assert ring.authenticate(key) is None
    assert "revoked_at" not in (config_dir / KEYS_FILE).read_text()  # Redis alone did it


async def test_a_revoked_key_is_refused_by_the_app_within_seconds(
    make_client: AppFactory, config_dir: Path, redis: Redis
) -> None:
    client = await make_client()
    key = add_key(config_dir, org="kc-valleycom", role=Role.PSAP, name="console-2")
    assert (await client.get("/v1/admin/routing", headers=bearer(key))).status == 200
    await publish_revocation(redis, digest(key)[:12])
    await until_refused(client.make_url("/v1/admin/routing"), key)


async def until_refused(url: Any, key: str, within_s: float = REVOCATION_BOUND_S) -> float:
    """Poll ``url`` with ``key`` until it answers 401; the seconds that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url, headers=bearer(key)) as answer:
                if answer.status == 401:
                    body = await answer.json()
                    assert body["error"]["code"] == "unauthorized"
                    return loop.time() - started
                assert answer.status == 200, await answer.text()
            assert loop.time() - started < within_s, f"{url} still takes the revoked key"
            await asyncio.sleep(0.1)


@pytest.fixture
async def two_gateways(
    tmp_path: Path, redis_url: str, redis: Redis, config_dir: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess, Path, Path]]:
    """Two ``serve`` processes on one Redis, each reading its own copy of the config (as two
    machines would): a revocation written to one copy reaches the other only through Redis."""
    other_config = tmp_path / "config-b"
    shutil.copytree(config_dir, other_config)
    gateways = []
    for name, directory in (("a", config_dir), ("b", other_config)):
        env = {
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_CONFIG_DIR": str(directory),
            "GATEWAY_STATE_DIR": str(tmp_path / f"state-{name}"),
            "GATEWAY_PUBLIC_BASE_URL": "https://gateway.example.test",
            "GATEWAY_SANDBOX": "false",
            "GATEWAY_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "GATEWAY_TWILIO_AUTH_TOKEN": "not-used-here",
            "GATEWAY_TWILIO_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "GATEWAY_BRIDGE_NUMBER": BRIDGE,
        }
        gateways.append(GatewayProcess(env, tmp_path / f"{name}.log"))
    try:
        for gateway in gateways:
            gateway.start()
        await asyncio.gather(*(g.wait_ready(within_s=60) for g in gateways))
        yield gateways[0], gateways[1], config_dir, other_config
    finally:
        for gateway in gateways:
            gateway.stop()


@pytest.mark.slow
async def test_a_revoked_key_gets_401_on_every_process_within_5_s(
    two_gateways: tuple[GatewayProcess, GatewayProcess, Path, Path], redis_url: str
) -> None:
    a, b, config_a, config_b = two_gateways
    key = add_key(config_a, org="kc-valleycom", role=Role.PSAP, name="console-7")
    shutil.copy(config_a / KEYS_FILE, config_b / KEYS_FILE)  # the key handed to both machines
    async with aiohttp.ClientSession() as session:
        for gateway in (a, b):
            async with session.get(gateway.url + "/v1/admin/routing", headers=bearer(key)) as r:
                assert r.status == 200, (await r.text(), gateway.log())

    key_id = digest(key)[:12]
    done = await asyncio.to_thread(
        gateway_cli,
        "keys", "revoke", key_id, "--config-dir", str(config_a),
        env={"GATEWAY_REDIS_URL": redis_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Published in Redis" in done.stdout
    assert load_key_file(config_b / KEYS_FILE).keys[0].revoked_at is None  # b's copy: unchanged

    took = await asyncio.gather(
        until_refused(a.url + "/v1/admin/routing", key),
        until_refused(b.url + "/v1/admin/routing", key),
    )
    assert max(took) < REVOCATION_BOUND_S


async def test_keys_list_shows_a_key_revoked_from_another_machine(
    redis: Redis, redis_url: str, config_dir: Path
) -> None:
    key = add_key(config_dir, org="kc-valleycom", role=Role.PSAP, name="console-9")
    await publish_revocation(redis, digest(key)[:12])  # revoked elsewhere: in Redis only
    done = await asyncio.to_thread(
        gateway_cli,
        "keys", "list", "--format", "json", "--config-dir", str(config_dir),
        env={"GATEWAY_REDIS_URL": redis_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert (row["id"], row["revoked"], row["revoked_at"]) == (digest(key)[:12], True, None)


def test_keys_revoke_says_so_when_redis_cannot_be_told(config_dir: Path) -> None:
    key = add_key(config_dir, org="ops", role=Role.ADMIN, name="ops-bot")
    done = gateway_cli(
        "keys", "revoke", digest(key)[:12], "--config-dir", str(config_dir),
        env={"GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}"},
    )  # fmt: skip
    assert done.returncode == 1
    assert "could not publish" in done.stderr
    assert "again" in done.stderr
    assert load_key_file(config_dir / KEYS_FILE).keys[0].revoked  # the file has it anyway


# --- the actor ----------------------------------------------------------------------------------


async def test_the_actor_names_the_key_holder_in_the_audit_and_policy_versions(
    client: TestClient[Any, Any], config_dir: Path, redis: Redis
) -> None:
    console = add_key(config_dir, org="kc-valleycom", role=Role.PSAP, name="Dana Smith")
    resp = await client.post(
        "/v1/transfers",
        json={"psap_id": "kc-valleycom", "caller_type": "first_person", "screening": SAFE},
        headers=bearer(console),
    )
    transfer = await resp.json()
    assert resp.status == 201, transfer
    audit = await TransferStore(redis).audit(transfer["id"])
    assert audit[0]["actor"] == "psap:kc-valleycom:Dana Smith", audit

    admin = bearer(add_key(config_dir, org="ops", role=Role.ADMIN, name="policy-bot"))
    doc = await (await client.get("/v1/admin/routing", headers=admin)).json()
    doc.pop("version")
    doc["policy"]["hop_limit"] = doc["policy"]["hop_limit"] - 1
    resp = await client.put("/v1/admin/routing", json=doc, headers=admin)
    assert resp.status == 200, await resp.text()
    versions = await (await client.get("/v1/admin/routing/versions", headers=admin)).json()
    latest = versions[-1]
    assert latest.get("actor", latest.get("who")) == "admin:ops:policy-bot"


# --- key files from before ids and names --------------------------------------------------------


async def test_a_key_file_without_ids_or_names_still_works(
    make_client: AppFactory, config_dir: Path
) -> None:
    key = "gw_psap_" + "L" * 43
    legacy = {
        "keys": [
            {
                "digest": digest(key),
                "org": "kc-valleycom",
                "role": "psap",
                "created_at": "2026-01-05T10:00:00+00:00",
                "label": "console 1",
            }
        ]
    }
    (config_dir / KEYS_FILE).write_text(yaml.safe_dump(legacy))
    principal = KeyRing(config_dir / KEYS_FILE).authenticate(key)
    assert principal == Principal("kc-valleycom", Role.PSAP, digest(key)[:12], "unnamed")
    assert principal.actor == "psap:kc-valleycom:unnamed"

    client = await make_client()
    assert (await client.get("/v1/admin/routing", headers=bearer(key))).status == 200

    rows = listed(config_dir)
    assert [(r["id"], r["name"], r["revoked"]) for r in rows] == [
        (digest(key)[:12], "unnamed", False)
    ]
    done = gateway_cli("keys", "revoke", digest(key)[:12], "--config-dir", str(config_dir))
    assert done.returncode == 0, done.stderr
    (record,) = yaml.safe_load((config_dir / KEYS_FILE).read_text())["keys"]
    assert (record["id"], record["name"], record["label"]) == (
        digest(key)[:12],
        "unnamed",
        "console 1",
    )  # migrated on write, the old note kept
    assert (await client.get("/v1/admin/routing", headers=bearer(key))).status == 401
