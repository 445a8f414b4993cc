from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import TransferStore


async def test_healthz_and_readyz(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"]["redis"] == "ok"


async def test_store_roundtrip(store: TransferStore) -> None:
    t = await store.create("t1", psap_id="p1", state=TransferState.AWAITING_BRIDGE, fields={})
    assert t.version == 1
    t2 = await store.transition("t1", TransferEvent.BRIDGED, psap_id="p1", expected_version=1)
    assert t2.state is TransferState.RINGING
    events = await store.audit("t1")
    assert [e["event"] for e in events] == ["created", "bridged"]
