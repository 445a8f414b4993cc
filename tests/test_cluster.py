"""The gateway on a Redis Cluster of three primaries and three replicas (``pytest -m ha``).

The same behaviour as on one server — a whole transfer, a ring timeout moving on to the next
destination (timers), a live handback, a report — with every key on the one slot of the ``{gw}``
hash tag; then the primary serving that slot is killed (SIGKILL) under a few ringing transfers,
its replica is promoted, and every transfer still connects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core import keys
from gateway.core.redis_client import connect, parse_cluster
from gateway.core.settings import Settings
from tests.conftest import AppFactory, KeyMaker
from tests.ha_servers import ClusterSet, ask, reconciled
from tests.telephony import BACKUP, PRIMARY, PSAP, short_ring_timeouts, wired

pytestmark = [pytest.mark.ha, pytest.mark.slow]

HANDBACK_LINE = "+12065550100"  # kc-valleycom's handback_number
HANDBACK = {
    "reason": "imminent_risk",
    "location": {"address": "1200 Main St, Kent", "lat": 47.381234, "lon": -122.234567},
    "callback_number": "+12065550123",
    "risk": {"weapons": False, "means_access": True, "summary": "plan tonight"},
    "counselor_ref": "c-104",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    """One cluster for this module (about ten seconds to form); the failover test runs last."""
    servers = ClusterSet(tmp_path_factory.mktemp("cluster"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def answer(after_s: float, hangup_after_s: float | None = None) -> PartyConfig:
    return PartyConfig(
        behaviour=Behaviour.ANSWER, answer_after_s=after_s, hangup_after_s=hangup_after_s
    )


def period() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}


def test_cluster_urls_are_checked_at_start(settings: Settings) -> None:
    assert parse_cluster("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001") == (
        [("10.0.0.1", 7000), ("10.0.0.2", 7001)],
        "s3cret",
    )
    for bad in ("redis+cluster://host", "redis+cluster://host:7000/3"):
        with pytest.raises(ValueError, match="redis_url"):
            Settings.model_validate({**settings.model_dump(), "redis_url": bad})


async def test_transfers_handbacks_timers_and_reports_on_a_cluster(
    cluster: ClusterSet,
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
    config_dir: Path,
) -> None:
    short_ring_timeouts(config_dir)
    psap = make_key(PSAP, "psap")
    center = {"Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"}
    admin = {"Authorization": f"Bearer {make_key('ops', 'admin')}"}
    parties = {PRIMARY: answer(0.5), HANDBACK_LINE: answer(0.5)}
    async with wired(
        make_client,
        settings,
        psap,
        parties=parties,
        time_scale=1.0,
        redis_url=cluster.url,
        handback_retry_delay_s=0.2,
        handback_ring_timeout_s=5,
    ) as line:
        assert (await line.client.get("/readyz")).status == 200

        # A whole transfer, then a live handback into its conference.
        opened = await line.open(callback_number="+12065550123")
        caller = line.dial_bridge(opened["bridge_code"])
        connected = await line.wait_state(opened["id"], "connected")
        assert connected["connected_destination_id"] == "crisis-connections-988"
        resp = await line.client.post(
            "/v1/handbacks", json={"transfer_id": opened["id"], **HANDBACK}, headers=center
        )
        handback: dict[str, Any] = await resp.json()
        assert resp.status == 201, handback
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            shown = await (
                await line.client.get(f"/v1/handbacks/{handback['id']}", headers=line.headers)
            ).json()
            if shown["state"] == "connected":
                break
            assert asyncio.get_running_loop().time() < deadline, shown
            await asyncio.sleep(0.1)
        assert line.dials(opened["id"]) == [PRIMARY, HANDBACK_LINE]
        line.sandbox.hang_up(caller)
        await line.wait_state(opened["id"], "completed", within_s=15)

        # A timer: the first destination never answers, its ring timer moves the call on.
        line.sandbox.set_party(PRIMARY, "no_answer")
        line.sandbox.set_party(BACKUP, "answer", answer_after_s=0.5)
        second = await line.open()
        line.dial_bridge(second["bridge_code"])
        moved = await line.wait_state(second["id"], "connected", within_s=20)
        assert [a["outcome"] for a in moved["attempts"]] == ["no_answer", "answered"]
        assert line.dials(second["id"]) == [PRIMARY, BACKUP]

        report = await line.client.get("/v1/reports/summary", params=period(), headers=admin)
        figures = await report.json()
        assert report.status == 200, figures
        assert figures["considered"] == 2
        assert figures["connected"] == 2

    # Every key of the product lives on the primary serving the {gw} slot.
    owner = cluster.owner()
    assert ask(owner, "EXISTS", keys.transfer(opened["id"])) == 1
    assert ask(owner, "EXISTS", keys.handback(handback["id"])) == 1
    for port in set(cluster.processes) - {owner, *cluster.replicas_of(owner)}:
        assert ask(port, "DBSIZE") == 0


async def test_a_blocking_stream_read_on_the_cluster_client(cluster: ClusterSet) -> None:
    """XREAD BLOCK (live events) goes to the stream's slot and wakes on XADD."""
    client = connect(cluster.url, socket_timeout_s=5)
    stream = f"{keys.PREFIX}test:stream"
    try:
        await client.delete(stream)
        reader = asyncio.ensure_future(client.xread({stream: "$"}, block=3000))
        await asyncio.sleep(0.3)
        await client.xadd(stream, {"kind": "probe"})
        read: Any = await asyncio.wait_for(reader, 5)
        ((name, entries),) = read
        assert name == stream.encode()
        assert entries[0][1] == {b"kind": b"probe"}
    finally:
        await client.delete(stream)
        await client.aclose()


async def test_ringing_transfers_connect_across_a_cluster_failover(
    cluster: ClusterSet,
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
) -> None:
    """Runs last in this module: it kills the primary serving the {gw} slot."""
    psap = make_key(PSAP, "psap")
    async with wired(
        make_client,
        settings,
        psap,
        parties={PRIMARY: answer(1.0)},
        time_scale=1.0,
        redis_url=cluster.url,
    ) as line:
        opened = [await line.open() for _ in range(4)]
        for transfer in opened:
            line.dial_bridge(transfer["bridge_code"])
        for transfer in opened:
            await line.wait_state(transfer["id"], "ringing")

        owner = cluster.owner()
        (replica,) = cluster.replicas_of(owner)
        cluster.kill(owner)
        statuses = []
        while cluster.owner() == owner:  # reads all through the election: held, none fails
            resp = await line.client.get(f"/v1/transfers/{opened[0]['id']}", headers=line.headers)
            statuses.append(resp.status)
            await asyncio.sleep(0.1)
        assert statuses, "the election was over before the first read"
        assert set(statuses) == {200}, statuses
        assert cluster.owner() == replica

        for transfer in opened:
            connected = await line.wait_state(transfer["id"], "connected", within_s=20)
            assert [a["outcome"] for a in connected["attempts"]] == ["answered"]
            assert line.dials(transfer["id"]) == [PRIMARY]
        await reconciled(line.client)
        assert (await line.client.get("/readyz")).status == 200
        failed = [
            e["details"]
            for e in line.sandbox.timeline("webhook.sent")
            if e["details"].get("status", 0) >= 500
        ]
        assert failed == []
