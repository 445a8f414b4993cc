"""Webhook signatures, and the fallback URL that works with Redis down."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from twilio.request_validator import RequestValidator

from adapters.redis_server import embedded_redis
from gateway.core.settings import Settings
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PRIMARY, PUBLIC

TOKEN = "webhook-test-token"
PARAMS = {"CallSid": "CA" + "5" * 32, "From": "+12065550111", "To": "+12065550199"}


def signed(url: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


async def _client(make_client: AppFactory, settings: Settings, **kw: Any) -> TestClient[Any, Any]:
    return await make_client(settings, public_base_url=PUBLIC, twilio_auth_token=TOKEN, **kw)


async def test_signature_on_the_public_url_is_accepted(
    make_client: AppFactory, settings: Settings
) -> None:
    client = await _client(make_client, settings)
    resp = await client.post(
        "/twilio/voice", data=PARAMS, headers=signed(f"{PUBLIC}/twilio/voice", PARAMS)
    )
    assert resp.status == 200
    assert "<Gather" in await resp.text()


async def test_signature_covers_the_query_string(
    make_client: AppFactory, settings: Settings
) -> None:
    client = await _client(make_client, settings)
    path = "/twilio/fallback?psap=kc-valleycom"
    good = signed(f"{PUBLIC}{path}", PARAMS)
    assert (await client.post(path, data=PARAMS, headers=good)).status == 200
    tampered = await client.post("/twilio/fallback?psap=other", data=PARAMS, headers=good)
    assert tampered.status == 403


async def test_bad_missing_or_internal_url_signatures_are_refused(
    make_client: AppFactory, settings: Settings
) -> None:
    client = await _client(make_client, settings)
    internal = f"http://127.0.0.1:{client.port}/twilio/voice"
    cases = {
        "missing": {},
        "garbage": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        "internal url": signed(internal, PARAMS),
        "other token": signed(f"{PUBLIC}/twilio/voice", PARAMS, token="someone-else"),
    }
    for name, headers in cases.items():
        resp = await client.post("/twilio/voice", data=PARAMS, headers=headers)
        assert resp.status == 403, name
        body = await resp.json()
        assert body["error"]["code"] == "forbidden", name
    tampered = dict(PARAMS, To="+19995550000")
    resp = await client.post(
        "/twilio/voice", data=tampered, headers=signed(f"{PUBLIC}/twilio/voice", PARAMS)
    )
    assert resp.status == 403
    metrics = await (await client.get("/metrics")).text()
    line = next(
        m for m in metrics.splitlines() if m.startswith("gateway_twilio_signature_failures_total{")
    )
    assert float(line.rsplit(" ", 1)[1]) == 5.0


async def test_every_twilio_route_needs_a_signature(
    make_client: AppFactory, settings: Settings
) -> None:
    client = await _client(make_client, settings)
    for path in (
        "/twilio/voice",
        "/twilio/voice/code",
        "/twilio/voice/hold",
        "/twilio/conference/tr_000000000000000000000000",
        "/twilio/participant/tr_000000000000000000000000?attempt=1",
        "/twilio/fallback",
    ):
        assert (await client.post(path, data=PARAMS)).status == 403, path


async def test_fallback_dials_the_psaps_fallback_destination_with_redis_down(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    key = make_key("kc-valleycom", "psap")
    data_dir = Path(tempfile.mkdtemp(prefix="gw-down-"))
    try:
        with embedded_redis(data_dir, persist=False) as server:
            client = await _client(make_client, settings, redis_url=server.url)
            assert (await client.get("/readyz")).status == 200
        # The Redis server is gone now.
        resp = await client.post(
            "/twilio/fallback", data=PARAMS, headers=signed(f"{PUBLIC}/twilio/fallback", PARAMS)
        )
        assert resp.status == 200
        twiml = await resp.text()
        assert f'<Dial timeout="30">{PRIMARY}</Dial>' in twiml
        api = await client.get(
            "/v1/transfers/tr_000000000000000000000000",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert api.status == 503
        assert (await api.json())["error"]["code"] == "unavailable"
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["error"]["code"] == "unavailable"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_fallback_works_when_redis_was_never_reachable(
    make_client: AppFactory, settings: Settings
) -> None:
    client = await _client(make_client, settings, redis_url="redis://127.0.0.1:1/0")
    resp = await client.post(
        "/twilio/fallback", data=PARAMS, headers=signed(f"{PUBLIC}/twilio/fallback", PARAMS)
    )
    assert resp.status == 200
    assert PRIMARY in await resp.text()


async def test_a_988_center_keying_a_code_while_state_is_down_is_put_through_to_911(
    make_client: AppFactory, settings: Settings
) -> None:
    """A call from one of the destinations' own numbers is a 988 center handing a caller back:
    when the gateway cannot help (here Twilio's fallback URL), it dials the PSAP's handback
    line — 911 — not the crisis line the caller came from."""
    client = await _client(make_client, settings)
    center = {**PARAMS, "From": PRIMARY}
    path = "/twilio/fallback?psap=kc-valleycom"
    resp = await client.post(path, data=center, headers=signed(f"{PUBLIC}{path}", center))
    assert resp.status == 200
    twiml = await resp.text()
    assert "+12065550100</Dial>" in twiml  # kc-valleycom's handback line
    assert PRIMARY not in twiml
