"""EIDOs to CAD: the signed POST, the durable outbox, retries across a restart (respx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from aiohttp.test_utils import TestClient

from adapters.cad_http import HttpCadSink
from gateway.core.ports import CadError
from gateway.core.signing import verify
from gateway.handback.store import HandbackStore
from tests.conftest import AppFactory, KeyMaker
from tests.test_eido import eido_errors
from tests.test_handback_api import FULL, PSAP

CAD_URL = "https://cad.valleycom.example.test/eido"
CAD_SECRET = "valleycom-cad-secret"


@pytest.fixture
def cad_config(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    psaps = config_dir / "psaps.yaml"
    psaps.write_text(
        psaps.read_text().replace(
            "    cad_url: null\n", f"    cad_url: {CAD_URL}\n    cad_secret_env: KC_CAD_SECRET\n"
        )
    )
    monkeypatch.setenv("KC_CAD_SECRET", CAD_SECRET)


@pytest.fixture
def cad() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def center(make_key: KeyMaker) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"}


@pytest.fixture
def psap(make_key: KeyMaker) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(PSAP, 'psap')}"}


async def create(client: TestClient[Any, Any], center: dict[str, str]) -> dict[str, Any]:
    resp = await client.post("/v1/handbacks", json={"psap_id": PSAP, **FULL}, headers=center)
    data: dict[str, Any] = await resp.json()
    assert resp.status == 201, data
    return data


async def wait_until(check: Callable[[], Any], within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def cad_status(client: TestClient[Any, Any], handback_id: str, headers: Any) -> str:
    shown = await (await client.get(f"/v1/handbacks/{handback_id}", headers=headers)).json()
    status: str = shown["cad"]["status"]
    return status


@pytest.mark.usefixtures("cad_config")
async def test_the_eido_is_posted_signed_with_an_idempotency_key(
    client: TestClient[Any, Any],
    cad: respx.MockRouter,
    center: dict[str, str],
    psap: dict[str, str],
) -> None:
    route = cad.post(CAD_URL).mock(return_value=httpx.Response(202))
    created = await create(client, center)

    async def delivered() -> bool:
        return await cad_status(client, created["id"], psap) == "delivered"

    await wait_until(delivered)
    (call,) = route.calls
    request = call.request
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == created["eido_id"]
    assert verify(CAD_SECRET, request.content, request.headers["X-Gateway-Signature"])
    assert not verify("another-secret", request.content, request.headers["X-Gateway-Signature"])
    as_sent = await (await client.get(f"/v1/handbacks/{created['id']}/eido", headers=psap)).read()
    assert request.content == as_sent
    assert eido_errors(json.loads(request.content)) == []
    shown = await (await client.get(f"/v1/handbacks/{created['id']}", headers=psap)).json()
    assert shown["cad"]["attempts"] == 1
    assert shown["cad"]["delivered_at"] is not None
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_cad_deliveries_total{result="delivered"} 1.0' in metrics


@pytest.mark.usefixtures("cad_config")
async def test_a_cad_outage_is_waited_out_and_the_eido_delivered_once_after_a_restart(
    make_client: AppFactory,
    cad: respx.MockRouter,
    center: dict[str, str],
    psap: dict[str, str],
    redis: Any,
) -> None:
    up = False

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201 if up else 503)

    route = cad.post(CAD_URL).mock(side_effect=answer)
    first = await make_client(cad_retry_base_s=0.1, cad_retry_max_s=0.3)
    created = await create(first, center)
    store = HandbackStore(redis)

    async def failed_twice() -> bool:
        return route.call_count >= 2

    await wait_until(failed_twice)
    assert await store.outbox() == [created["id"]]
    assert await cad_status(first, created["id"], psap) == "pending"
    await first.close()  # this instance goes away during the outage

    up = True
    failures = route.call_count
    second = await make_client(cad_retry_base_s=0.1, cad_retry_max_s=0.3)

    async def delivered() -> bool:
        return await cad_status(second, created["id"], psap) == "delivered"

    await wait_until(delivered)
    await asyncio.sleep(1.0)  # time for a duplicate, if there were one
    assert route.call_count == failures + 1, "delivered exactly once after recovery"
    keys = {c.request.headers["Idempotency-Key"] for c in route.calls}
    assert keys == {created["eido_id"]}
    bodies = {c.request.content for c in route.calls}
    assert len(bodies) == 1, "every retry sends the same document"
    assert await store.outbox() == []
    shown = await (await second.get(f"/v1/handbacks/{created['id']}", headers=psap)).json()
    assert shown["cad"]["attempts"] == failures + 1


@pytest.mark.usefixtures("cad_config")
async def test_a_cad_that_refuses_the_document_is_given_up_on_and_flagged(
    client: TestClient[Any, Any], cad: respx.MockRouter, center: dict[str, str], psap: Any
) -> None:
    route = cad.post(CAD_URL).mock(return_value=httpx.Response(400))
    created = await create(client, center)

    async def failed() -> bool:
        return await cad_status(client, created["id"], psap) == "failed"

    await wait_until(failed)
    assert route.call_count == 1
    shown = await (await client.get(f"/v1/handbacks/{created['id']}", headers=psap)).json()
    assert "cad_undelivered" in shown["flags"]
    eido = await client.get(f"/v1/handbacks/{created['id']}/eido", headers=psap)
    assert eido.status == 200, "the EIDO is still kept for the PSAP"


async def test_without_a_cad_url_the_eido_is_only_kept(
    client: TestClient[Any, Any], cad: respx.MockRouter, center: dict[str, str], psap: Any
) -> None:
    created = await create(client, center)
    await asyncio.sleep(0.3)
    assert cad.calls.call_count == 0
    assert await cad_status(client, created["id"], psap) == "kept"


async def test_the_adapter_maps_failures_to_cad_errors(cad: respx.MockRouter) -> None:
    sink = HttpCadSink(timeout_s=0.5)
    try:
        cad.post(CAD_URL).mock(side_effect=httpx.ConnectTimeout("slow"))
        with pytest.raises(CadError) as timeout:
            await sink.deliver(CAD_URL, {"a": 1}, secret="s", idempotency_key="k")
        assert timeout.value.retryable
        cad.post(CAD_URL).mock(return_value=httpx.Response(429))
        with pytest.raises(CadError) as busy:
            await sink.deliver(CAD_URL, {"a": 1}, secret="s", idempotency_key="k")
        assert busy.value.retryable
        cad.post(CAD_URL).mock(return_value=httpx.Response(422))
        with pytest.raises(CadError) as refused:
            await sink.deliver(CAD_URL, {"a": 1}, secret="s", idempotency_key="k")
        assert not refused.value.retryable
    finally:
        await sink.aclose()


def test_a_cad_url_needs_a_secret_env(config_dir: Path) -> None:
    from gateway.policy.loader import PolicyInvalid, load_config_dir

    psaps = config_dir / "psaps.yaml"
    psaps.write_text(psaps.read_text().replace("    cad_url: null\n", f"    cad_url: {CAD_URL}\n"))
    with pytest.raises(PolicyInvalid) as invalid:
        load_config_dir(config_dir)
    assert "cad_secret_env" in str(invalid.value.errors)
