"""Program figures: a known mix of calls through the sandbox, every figure checked by hand."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.cli.report import render_csv, render_table
from gateway.core.settings import Settings
from gateway.reports.counters import answer_bucket, percentile
from gateway.web.reports import ReportSummary
from tests.conftest import ROOT, AppFactory, KeyMaker
from tests.telephony import (
    BACKUP,
    CLINICIANS,
    PRIMARY,
    PSAP,
    SAFE,
    Line,
    short_ring_timeouts,
    wired,
)

pytestmark = pytest.mark.slow

DAYTIME = "2026-06-15T18:00:00Z"  # 11:00 in Seattle: the clinicians are on shift


def period() -> dict[str, str]:
    today = datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles")).date()
    return {
        "from": (today - timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
        "psap_id": PSAP,
    }


def answered_after(transfer: dict[str, Any], attempt: int = 0) -> float:
    """Seconds from ``attempt`` (by default the first: the caller's whole wait) ringing to the
    answer, from the transfer record alone."""
    started = datetime.fromisoformat(transfer["attempts"][attempt]["started_at"])
    connected = datetime.fromisoformat(transfer["connected_at"])
    return (connected - started).total_seconds()


async def run_mix(line: Line, centers: dict[str, str]) -> dict[str, Any]:
    """Seven calls, one of each fate; returns the transfers that connected."""
    sb = line.sandbox
    # 1. first-person, the primary answers, the caller hangs up later: completed.
    sb.set_party(PRIMARY, "answer", answer_after_s=1)
    t1 = await line.open()
    line.dial_bridge(t1["bridge_code"], hangup_after_s=10)
    t1 = await line.wait_state(t1["id"], "completed")
    # 2. first-person, the primary never answers, the backup does: completed via backup.
    sb.set_party(PRIMARY, "no_answer")
    sb.set_party(BACKUP, "answer", answer_after_s=2)
    t2 = await line.open()
    line.dial_bridge(t2["bridge_code"], hangup_after_s=25)
    t2 = await line.wait_state(t2["id"], "completed")
    # 3. third-party by day: the clinicians and then the primary are busy: failed.
    sb.set_party(CLINICIANS, "busy")
    sb.set_party(PRIMARY, "busy")
    t3 = await line.open("third_party", at=DAYTIME)
    line.dial_bridge(t3["bridge_code"])
    await line.wait_state(t3["id"], "failed")
    # 4. third-party by day: the caller hangs up while the clinicians ring: abandoned.
    sb.set_party(CLINICIANS, "no_answer")
    t4 = await line.open("third_party", at=DAYTIME)
    line.dial_bridge(t4["bridge_code"], hangup_after_s=2)
    await line.wait_state(t4["id"], "abandoned")
    # 5. first-person with a weapon: kept with 911.
    t5 = await line.open(screening={**SAFE, "weapons": True})
    assert t5["state"] == "not_transferred"
    # 6. unknown caller type, cancelled before the bridge.
    t6 = await line.open("unknown", at=DAYTIME)
    resp = await line.client.post(f"/v1/transfers/{t6['id']}/cancel", headers=line.headers)
    assert (await resp.json())["state"] == "cancelled"
    # 7. first-person, the code is never used: expired.
    t7 = await line.open()
    await line.wait_state(t7["id"], "expired", within_s=20)
    # Dispositions: the primary resolved t1 by phone; the backup sent a mobile team with police.
    for transfer_id, key, outcome, police in (
        (t1["id"], centers["crisis-connections"], "resolved_by_phone", False),
        (t2["id"], centers["wa-988"], "mobile_crisis_dispatched", True),
    ):
        resp = await line.client.post(
            f"/v1/transfers/{transfer_id}/disposition",
            json={"outcome": outcome, "police_involved": police},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert resp.status == 200, await resp.text()
    # Handbacks (data-only): one confirmed by the PSAP, one left to the confirmation timer.
    handbacks = []
    for _ in range(2):
        resp = await line.client.post(
            "/v1/handbacks",
            json={"psap_id": PSAP, "reason": "imminent_risk", "location": None,
                  "callback_number": "+12065550123"},
            headers={"Authorization": f"Bearer {centers['crisis-connections']}"},
        )  # fmt: skip
        assert resp.status == 201, await resp.text()
        handbacks.append((await resp.json())["id"])
    resp = await line.client.post(
        f"/v1/handbacks/{handbacks[0]}/contact", json={"contact_made": True}, headers=line.headers
    )
    assert resp.status == 200, await resp.text()
    for _ in range(100):
        flagged = await line.client.get(f"/v1/handbacks/{handbacks[1]}", headers=line.headers)
        if "unconfirmed" in (await flagged.json())["flags"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the unconfirmed handback was never flagged")
    # A third, flagged unconfirmed and then confirmed late: it moves from unconfirmed to
    # confirmed, so the three handback figures still split the total.
    resp = await line.client.post(
        "/v1/handbacks",
        json={"psap_id": PSAP, "reason": "imminent_risk", "location": None},
        headers={"Authorization": f"Bearer {centers['crisis-connections']}"},
    )
    late = (await resp.json())["id"]
    for _ in range(100):
        flagged = await line.client.get(f"/v1/handbacks/{late}", headers=line.headers)
        if "unconfirmed" in (await flagged.json())["flags"]:
            break
        await asyncio.sleep(0.1)
    resp = await line.client.post(
        f"/v1/handbacks/{late}/contact", json={"contact_made": True}, headers=line.headers
    )
    assert "unconfirmed" not in (await resp.json())["flags"]
    return {"t1": t1, "t2": t2}


def expected(connected: dict[str, Any]) -> dict[str, Any]:
    t1, t2 = connected["t1"], connected["t2"]
    answers = [answered_after(t1), answered_after(t2)]
    return {
        "considered": 7,
        "kept_with_911": 1,
        "kept_by_reason": {"excluded:weapons": 1},
        "eligible": 6,
        "attempts": 6,
        "connected": 2,
        "capture_rate": 2 / 6,
        "connected_via_backup": 1,
        "completed": 2,
        "abandoned": 1,
        "failed": 1,
        "cancelled": 1,
        "expired": 1,
        "answer_time_s": {
            "p50": percentile(answers, 0.5),
            "p90": percentile(answers, 0.9),
            "count": 2,
        },
        "first_person": {"considered": 4, "eligible": 3, "connected": 2, "capture_rate": 2 / 3},
        "third_party": {"considered": 2, "eligible": 2, "connected": 0, "capture_rate": 0.0,
                        "failed": 1, "abandoned": 1},
        "unknown": {"considered": 1, "eligible": 1, "cancelled": 1, "capture_rate": 0.0},
        "destinations": {
            "crisis-connections-988": {"attempts": 3, "connected": 1, "connected_via_backup": 0},
            "wa-988-backup": {"attempts": 1, "connected": 1, "connected_via_backup": 1},
            "kc-dispatch-clinicians": {"attempts": 2, "connected": 0, "abandoned": 1},
            "national-988-backup": {"attempts": 0, "connected": 0},
        },
        # Per destination: the answering destination's own ring → answer (ring_time_s) …
        "rings": {"crisis-connections-988": answers[0], "wa-988-backup": answered_after(t2, 1)},
        # … and the caller's whole wait for the calls it answered (answer_time_s).
        "waits": {"crisis-connections-988": answers[0], "wa-988-backup": answers[1]},
    }  # fmt: skip


def check(summary: dict[str, Any], want: dict[str, Any]) -> None:
    for name in (
        "considered", "kept_with_911", "kept_by_reason", "eligible", "attempts", "connected",
        "capture_rate", "connected_via_backup", "completed", "abandoned", "failed", "cancelled",
        "expired",
    ):  # fmt: skip
        assert summary[name] == want[name], name
    for name, value in want["answer_time_s"].items():
        assert summary["answer_time_s"][name] == pytest.approx(value), name
    for ct in ("first_person", "third_party", "unknown"):
        for name, value in want[ct].items():
            assert summary["by_caller_type"][ct][name] == value, (ct, name)
    for dest, figures in want["destinations"].items():
        for name, value in figures.items():
            assert summary["by_destination"][dest][name] == value, (dest, name)
    for dest, seconds in want["rings"].items():
        assert summary["by_destination"][dest]["ring_time_s"]["p50"] == pytest.approx(seconds)
    for dest, seconds in want["waits"].items():
        assert summary["by_destination"][dest]["answer_time_s"]["p50"] == pytest.approx(seconds)
    # The backup answered after the primary rang out: its own ring time is shorter than the
    # caller's wait, which is what answer_time_s reports under it too.
    assert want["rings"]["wa-988-backup"] < want["waits"]["wa-988-backup"]
    rings = list(want["rings"].values())
    assert summary["ring_time_s"]["count"] == 2
    assert summary["ring_time_s"]["p50"] == pytest.approx(percentile(rings, 0.5))
    assert summary["ring_time_s"]["p90"] == pytest.approx(percentile(rings, 0.9))
    # Fixed buckets of the caller's wait: overall, and under the destination that answered.
    histogram = summary["answer_time_s"]["histogram"]
    assert sum(histogram.values()) == 2
    for dest, waited in want["waits"].items():
        bucket = answer_bucket(waited).removeprefix("answer_le:")
        assert histogram[bucket] >= 1
        dest_histogram = summary["by_destination"][dest]["answer_time_s"]["histogram"]
        assert {b: n for b, n in dest_histogram.items() if n} == {bucket: 1}
    assert summary["dispositions"] == {"mobile_crisis_dispatched": 1, "resolved_by_phone": 1}
    assert summary["resolved_without_police_share"] == 0.5
    assert summary["phone_only_share"] == 0.5
    fp = summary["by_caller_type"]["first_person"]
    assert fp["dispositions"] == summary["dispositions"]
    assert summary["by_caller_type"]["third_party"]["dispositions"] == {}
    primary = summary["by_destination"]["crisis-connections-988"]
    assert primary["dispositions"] == {"resolved_by_phone": 1}
    assert primary["resolved_without_police_share"] == 1.0
    backup = summary["by_destination"]["wa-988-backup"]
    assert backup["resolved_without_police_share"] == 0.0
    assert backup["phone_only_share"] == 0.0
    assert summary["handbacks"] == {
        "total": 3, "confirmed": 2, "unconfirmed": 1, "no_contact": 0, "confirmation_rate": 2 / 3
    }  # fmt: skip


async def test_every_figure_of_a_known_mix(
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
    config_dir: Path,
    redis_url: str,
) -> None:
    short_ring_timeouts(config_dir)
    psap = make_key(PSAP, "psap")
    admin = make_key("ops", "admin")
    centers = {org: make_key(org, "crisis_center") for org in ("crisis-connections", "wa-988")}
    async with wired(
        make_client, settings, psap, bridge_code_ttl_s=5, handback_confirm_timeout_s=1
    ) as line:
        want = expected(await run_mix(line, centers))
        resp = await line.client.get(
            "/v1/reports/summary", params=period(), headers={"Authorization": f"Bearer {admin}"}
        )
        api = await resp.json()
        assert resp.status == 200, api
        check(api, want)
        ReportSummary.model_validate(api)  # every figure is one the glossary describes
        own = await line.client.get("/v1/reports/summary", params=period(), headers=line.headers)
        assert (await own.json())["considered"] == 7

    env = {**os.environ, "GATEWAY_REDIS_URL": redis_url, "GATEWAY_CONFIG_DIR": str(config_dir)}
    args = ["--from", period()["from"], "--to", period()["to"], "--psap", PSAP]
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "report", "--format", "json", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await cli.communicate()
    assert cli.returncode == 0, stderr.decode()
    assert json.loads(stdout) == api
    table = render_table(api)
    assert "capture rate" in table
    assert "33.3%" in table
    assert "excluded:weapons" in table
    rows = render_csv(api).splitlines()
    assert f"all,,capture_rate,{2 / 6}" in rows
    assert "caller_type,first_person,connected,2" in rows
    assert "destination,wa-988-backup,connected_via_backup,1" in rows


async def test_figures_outlive_the_records(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker, config_dir: Path
) -> None:
    short_ring_timeouts(config_dir)
    psap = make_key(PSAP, "psap")
    admin = {"Authorization": f"Bearer {make_key('ops', 'admin')}"}
    async with wired(make_client, settings, psap, retention_days=2 / 86_400) as line:
        line.sandbox.set_party(PRIMARY, "answer", answer_after_s=1)
        t1 = await line.open()
        line.dial_bridge(t1["bridge_code"], hangup_after_s=5)
        await line.wait_state(t1["id"], "completed")
        kept = await line.open(screening={**SAFE, "violence": True})
        before = await (
            await line.client.get("/v1/reports/summary", params=period(), headers=admin)
        ).json()
        for _ in range(100):
            gone = await line.client.get(f"/v1/transfers/{kept['id']}", headers=line.headers)
            done = await line.client.get(f"/v1/transfers/{t1['id']}", headers=line.headers)
            if gone.status == done.status == 404:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the records did not expire")
        after = await (
            await line.client.get("/v1/reports/summary", params=period(), headers=admin)
        ).json()
    assert after == before
    assert after["considered"] == 2
    assert after["connected"] == 1
    assert after["kept_by_reason"] == {"excluded:violence": 1}


async def test_report_scoping_and_bad_dates(make_client: AppFactory, make_key: KeyMaker) -> None:
    client = await make_client()
    other = {"Authorization": f"Bearer {make_key('another-psap', 'psap')}"}
    center = {"Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"}
    admin = {"Authorization": f"Bearer {make_key('ops', 'admin')}"}
    assert (await client.get("/v1/reports/summary", params=period(), headers=other)).status == 403
    assert (await client.get("/v1/reports/summary", headers=center)).status == 403
    for params in ({"from": "yesterday"}, {"from": "2026-02-01", "to": "2026-01-01"},
                   {"to": "2026-13-01"}):  # fmt: skip
        resp = await client.get("/v1/reports/summary", params=params, headers=admin)
        assert resp.status == 422, params
        assert (await resp.json())["error"]["code"] == "invalid"
    wide = await client.get(
        "/v1/reports/summary", params={"from": "2000-01-01", "to": "2099-12-31"}, headers=admin
    )
    assert wide.status == 200
    assert ((await wide.json())["from"], (await wide.json())["to"]) == ("2000-01-01", "2099-12-31")
    future = await client.get("/v1/reports/summary", params={"from": "2099-01-01"}, headers=admin)
    assert (await future.json())["to"] == "2099-01-01"
    empty = await (await client.get("/v1/reports/summary", headers=admin)).json()
    assert empty["considered"] == 0
    assert empty["capture_rate"] is None
    assert set(empty["by_caller_type"]) == {"first_person", "third_party", "unknown"}


def test_answer_buckets_are_fixed_upper_bounds() -> None:
    assert answer_bucket(0.2) == "answer_le:5"
    assert answer_bucket(5) == "answer_le:5"
    assert answer_bucket(5.01) == "answer_le:10"
    assert answer_bucket(299) == "answer_le:300"
    assert answer_bucket(301) == "answer_le:+Inf"
