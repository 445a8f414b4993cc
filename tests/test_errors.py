"""Every failure the HTTP surface can produce leaves in one JSON shape with the right status."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory, KeyMaker

DECISIONS = "/v1/routing/decisions"
A_DECISION = {
    "psap_id": "kc-valleycom",
    "caller_type": "first_person",
    "screening": {"weapons": False, "violence": False, "medical_emergency": False},
}


def assert_error_shape(body: Any, status_code: str) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == status_code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], list)
    return error


async def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json"
    assert "Traceback" not in text
    return assert_error_shape(json.loads(text), code)


@pytest.fixture
def key(make_key: KeyMaker) -> str:
    return make_key("kc-valleycom", "psap")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- routing errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/healthz/extra", "/v2/x", "/v1x"])
async def test_unknown_route_is_404_json(client: TestClient[Any, Any], path: str) -> None:
    error = await error_of(await client.get(path), 404, "not_found")
    assert path in error["message"]


async def test_unknown_v1_route_with_a_key_is_404_json(
    client: TestClient[Any, Any], key: str
) -> None:
    await error_of(await client.get("/v1/nope", headers=bearer(key)), 404, "not_found")


@pytest.mark.parametrize(("method", "path"), [("POST", "/healthz"), ("DELETE", "/openapi.json")])
async def test_wrong_method_is_405_json(
    client: TestClient[Any, Any], method: str, path: str
) -> None:
    resp = await client.request(method, path)
    await error_of(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


async def test_wrong_method_on_a_v1_route_is_405_json(
    client: TestClient[Any, Any], key: str
) -> None:
    resp = await client.delete(DECISIONS, headers=bearer(key))
    await error_of(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"


# --- operations endpoints -----------------------------------------------------------------------


async def test_openapi_document(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    document = json.loads(await resp.text())
    assert document["openapi"].startswith("3.")
    assert {"/healthz", "/readyz", DECISIONS, "/v1/transfers/{id}"} <= set(document["paths"])
    assert "Error" in document["components"]["schemas"]
    decision = document["paths"][DECISIONS]["post"]
    assert {"200", "400", "401", "422"} <= set(decision["responses"])


async def test_healthz(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_with_redis_up(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["redis"] == "ok"


async def test_readyz_is_503_when_redis_is_unreachable(make_client: AppFactory) -> None:
    # Nothing listens on port 1; the client connects lazily, so the app still starts.
    client = await make_client(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5)
    assert (await client.get("/healthz")).status == 200  # alive, just not ready
    error = await error_of(await client.get("/readyz"), 503, "unavailable")
    assert {"check": "redis", "status": "down"} in error["details"]


async def test_a_v1_call_is_503_when_redis_is_unreachable(
    make_client: AppFactory, key: str
) -> None:
    client = await make_client(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5)
    resp = await client.get("/v1/transfers/tr_" + "0" * 24, headers=bearer(key))
    await error_of(resp, 503, "unavailable")


# --- request ids --------------------------------------------------------------------------------


async def test_request_id_is_echoed(client: TestClient[Any, Any]) -> None:
    for path, status in (("/healthz", 200), ("/nope", 404), ("/v1/transfers", 401)):
        resp = await client.get(path, headers={"X-Request-Id": "console-7.abc_1"})
        assert resp.status == status
        assert resp.headers["X-Request-Id"] == "console-7.abc_1"


async def test_request_id_is_generated_when_absent_or_unusable(
    client: TestClient[Any, Any],
) -> None:
    seen = set()
    for incoming in (None, "", "has spaces", "x" * 65, "<script>"):
        headers = {} if incoming is None else {"X-Request-Id": incoming}
        resp = await client.get("/healthz", headers=headers)
        generated = resp.headers["X-Request-Id"]
        assert generated != incoming
        assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", generated)
        seen.add(generated)
    assert len(seen) == 5


# --- bodies -------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_json(client: TestClient[Any, Any], key: str) -> None:
    oversized = json.dumps({**A_DECISION, "tags": ["x" * 1024] * 300})  # ~300 KiB
    resp = await client.post(
        DECISIONS, data=oversized, headers={**bearer(key), "Content-Type": "application/json"}
    )
    await error_of(resp, 413, "payload_too_large")


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"psap_id": ', b"", b"   ", b"[]", b'"text"', b"42", b"\xff\xfe{}"]
)
async def test_malformed_json_is_400(client: TestClient[Any, Any], key: str, body: bytes) -> None:
    resp = await client.post(
        DECISIONS, data=body, headers={**bearer(key), "Content-Type": "application/json"}
    )
    await error_of(resp, 400, "bad_request")


async def test_wrong_types_are_422_with_paths_and_no_values(
    client: TestClient[Any, Any], key: str
) -> None:
    body = {
        "psap_id": "kc-valleycom",
        "caller_type": "a caller at 1200 Main St",
        "screening": {"weapons": "+12065550123", "violence": False},
        "transfers_so_far": -1,
    }
    resp = await client.post(DECISIONS, json=body, headers=bearer(key))
    error = await error_of(resp, 422, "invalid")
    paths = {d["path"] for d in error["details"]}
    assert {"caller_type", "screening.weapons", "transfers_so_far"} <= paths
    assert all(d["message"] for d in error["details"])
    text = await resp.text()
    assert "Main St" not in text
    assert "+12065550123" not in text


async def test_a_missing_required_field_is_422(client: TestClient[Any, Any], key: str) -> None:
    resp = await client.post(DECISIONS, json={"psap_id": "kc-valleycom"}, headers=bearer(key))
    error = await error_of(resp, 422, "invalid")
    assert {"caller_type", "screening"} <= {d["path"] for d in error["details"]}


async def test_a_valid_body_passes_the_same_route(client: TestClient[Any, Any], key: str) -> None:
    """The route the error tests use does answer a good request (so they test the errors)."""
    resp = await client.post(DECISIONS, json=A_DECISION, headers=bearer(key))
    body = await resp.json()
    assert resp.status == 200, body
    assert body["action"] in {"transfer", "stay_with_911"}


async def test_openapi_documents_query_parameters(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    summary = doc["paths"]["/v1/reports/summary"]["get"]
    assert {(p["name"], p["in"]) for p in summary["parameters"]} == {
        ("from", "query"), ("to", "query"), ("psap_id", "query")
    }  # fmt: skip
    assert "/openapi.json" in doc["paths"]
