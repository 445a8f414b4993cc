"""``python -m gateway audit export``: the audit trail as JSON lines, nothing personal in it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.settings import Settings
from tests.conftest import ROOT, AppFactory, KeyMaker
from tests.telephony import PRIMARY, PSAP, SAFE, short_ring_timeouts, wired

CALLER = "+12065550123"


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_export_has_every_transition_and_no_personal_data(
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
    config_dir: Path,
    redis_url: str,
    tmp_path: Path,
) -> None:
    short_ring_timeouts(config_dir)
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line:
        line.sandbox.set_party(PRIMARY, "answer", answer_after_s=1)
        opened = await line.open(callback_number=CALLER)
        line.dial_bridge(opened["bridge_code"], hangup_after_s=10)
        await line.wait_state(opened["id"], "completed")
        kept = await line.open(screening={**SAFE, "weapons": True}, callback_number=CALLER)

    today = datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles")).date()
    env = {**os.environ, "GATEWAY_REDIS_URL": redis_url, "GATEWAY_CONFIG_DIR": str(config_dir)}
    target = tmp_path / "audit.jsonl"
    code, _, err = await run_cli(
        "audit", "export", "--from", (today - timedelta(days=1)).isoformat(),
        "--to", (today + timedelta(days=1)).isoformat(), "--output", str(target), env=env,
    )  # fmt: skip
    assert code == 0, err
    text = target.read_text()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines()]
    by_transfer = [e["event"] for e in lines if e.get("transfer_id") == opened["id"]]
    assert by_transfer == ["created", "bridged", "answered", "conference_ended"]
    assert [e["to"] for e in lines if e.get("transfer_id") == kept["id"]] == ["not_transferred"]
    assert any(e["kind"] == "policy" for e in lines), "the policy seeding is audited too"
    assert CALLER not in text
    assert "5550123" not in text
    assert f"{len(lines)} audit events exported" in err

    code, _, err = await run_cli(
        "audit", "export", "--from", "2026-02-01", "--to", "2026-01-01", env=env
    )
    assert code == 2
    assert "after 'to'" in err
