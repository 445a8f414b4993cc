"""``/openapi.json`` is valid OpenAPI 3.1 and enough to integrate from: the notices the gateway
sends are under ``webhooks``, and every body the gateway really sends — screen pop, each
handback notice, the EIDO to CAD — validates against the schema documented for it."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.settings import Settings
from gateway.core.signing import verify
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PRIMARY, short_ring_timeouts, wired
from tests.test_eido import eido_errors
from tests.test_handback_api import FULL, PSAP, with_notify_url
from tests.test_handback_flows import FAST, HANDBACK_LINE, answer, connected_transfer

NOTIFY_SECRET = "shared-with-crisis-connections"
CAD_SECRET = "valleycom-cad-secret"
WEBHOOKS = {"transfer.incoming", "handback.failed", "handback.unconfirmed", "handback.contact"}


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed


@dataclass
class Partner:
    """A 988 center's ``notify_url`` (``/notices``) and a CAD's ``cad_url`` (``/cad``)."""

    base: str
    seen: list[Captured] = field(default_factory=list)

    async def wait_for(self, path: str, kind: str | None = None, within_s: float = 10) -> Captured:
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            for captured in self.seen:
                if captured.path == path and kind in (None, captured.body.get("type")):
                    return captured
            assert asyncio.get_running_loop().time() < deadline, f"no {kind or path} came"
            await asyncio.sleep(0.05)


@pytest.fixture
async def partner(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Partner]:
    found: list[Partner] = []

    async def take(request: web.Request) -> web.Response:
        found[0].seen.append(Captured(request.path, dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notices", take)
    app.router.add_post("/cad", take)
    async with TestServer(app, host="127.0.0.1") as server:
        found.append(Partner(f"http://127.0.0.1:{server.port}"))
        with_notify_url(config_dir, f"{found[0].base}/notices")
        psaps = config_dir / "psaps.yaml"
        psaps.write_text(
            psaps.read_text().replace(
                "    cad_url: null\n",
                f"    cad_url: {found[0].base}/cad\n    cad_secret_env: KC_CAD_SECRET\n",
                1,
            )
        )
        monkeypatch.setenv("CC_NOTIFY_SECRET", NOTIFY_SECRET)
        monkeypatch.setenv("KC_CAD_SECRET", CAD_SECRET)
        yield found[0]


async def openapi(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    document: dict[str, Any] = json.loads(await resp.text())
    return document


def check_against_document(document: dict[str, Any], name: str, sent: Captured) -> None:
    """``sent`` is what the ``name`` webhook documents: its headers, its signature (with the
    documented secret) and its body, by the documented schema — with no undocumented field."""
    hook = document["webhooks"][name]["post"]
    for parameter in hook["parameters"]:
        assert parameter["in"] == "header"
        value = sent.headers.get(parameter["name"])
        assert value is not None, parameter["name"]
        pattern = parameter["schema"].get("pattern")
        assert pattern is None or re.match(pattern, value), (parameter["name"], value)
    secret = CAD_SECRET if name == "eido" else NOTIFY_SECRET
    assert verify(secret, sent.raw, sent.headers["X-Gateway-Signature"])
    assert sent.headers["Content-Type"] == "application/json"
    schema = hook["requestBody"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(sent.body)]
    assert errors == [], (name, errors)
    declared = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(sent.body) <= set(declared["properties"]), name
    assert set(declared.get("required", [])) <= set(sent.body), name


async def test_the_document_is_valid_openapi_3_1_with_webhooks_and_typed_queries(
    client: TestClient[Any, Any],
) -> None:
    document = await openapi(client)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on anything invalid
    assert set(document["webhooks"]) == {*WEBHOOKS, "eido"}
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    signature = schemes["gatewaySignature"]
    assert (signature["in"], signature["name"]) == ("header", "X-Gateway-Signature")
    assert "HMAC-SHA256" in signature["description"]
    for name, hook in document["webhooks"].items():
        post = hook["post"]
        assert post["security"] == [{"gatewaySignature": []}], name
        media = post["requestBody"]["content"]["application/json"]
        assert media["schema"]["$ref"].startswith("#/components/schemas/"), name
        assert {p["name"] for p in post["parameters"]} == {"X-Gateway-Signature", "Idempotency-Key"}
    # Every query parameter carries a schema with a type; known ones their real type.
    queries = {
        (path, p["name"]): p["schema"]
        for path, item in document["paths"].items()
        for operation in item.values()
        for p in operation.get("parameters", [])
        if p["in"] == "query"
    }
    assert queries, "the document lists query parameters"
    for where, schema in queries.items():
        assert "type" in schema, where
    assert queries["/v1/handbacks", "limit"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 200,
        "default": 50,
    }
    assert queries["/v1/handbacks", "from"]["format"] == "date"
    for path, states in (("/v1/handbacks", "awaiting_bridge"), ("/v1/transfers", "ringing")):
        state = queries[path, "state"]
        assert state["type"] == "array", "state is repeatable"
        assert states in state["items"]["enum"], path
    assert queries["/v1/reports/summary", "to"]["format"] == "date"
    # The examples shown for each webhook are valid bodies themselves.
    for name, hook in document["webhooks"].items():
        media = hook["post"]["requestBody"]["content"]["application/json"]
        validator = Draft202012Validator({**media["schema"], "components": document["components"]})
        for example in media.get("examples", {}).values():
            assert list(validator.iter_errors(example["value"])) == [], name
    (eido,) = document["webhooks"]["eido"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ].values()
    assert eido_errors(eido["value"]) == [], "the EIDO example is a valid EIDO (NENA's schema)"


async def test_the_handback_notices_and_the_eido_sent_match_the_document(
    make_client: AppFactory, make_key: KeyMaker, partner: Partner
) -> None:
    client = await make_client(handback_confirm_timeout_s=1)
    document = await openapi(client)
    center = {"Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"}
    psap = {"Authorization": f"Bearer {make_key(PSAP, 'psap')}"}
    resp = await client.post("/v1/handbacks", json={"psap_id": PSAP, **FULL}, headers=center)
    created = await resp.json()
    assert resp.status == 201, created

    eido = await partner.wait_for("/cad")
    check_against_document(document, "eido", eido)
    assert eido.headers["Idempotency-Key"] == created["eido_id"] == eido.body["$id"]
    kept = await client.get(f"/v1/handbacks/{created['id']}/eido", headers=psap)
    assert await kept.json() == eido.body, "the CAD got the document the PSAP can read"

    unconfirmed = await partner.wait_for("/notices", "handback.unconfirmed")
    check_against_document(document, "handback.unconfirmed", unconfirmed)
    assert unconfirmed.headers["Idempotency-Key"] == f"{created['id']}:unconfirmed"

    resp = await client.post(
        f"/v1/handbacks/{created['id']}/contact",
        json={"contact_made": False, "note": "no answer at the door — café closed"},
        headers=psap,
    )
    assert resp.status == 200, await resp.text()
    contact = await partner.wait_for("/notices", "handback.contact")
    check_against_document(document, "handback.contact", contact)
    assert contact.body["contact_made"] is False
    assert "café".encode() in contact.raw, "UTF-8, not escaped: the signed bytes as sent"


@pytest.mark.slow
async def test_the_screen_pop_and_a_failed_notice_sent_match_the_document(
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
    config_dir: Path,
    partner: Partner,
) -> None:
    short_ring_timeouts(config_dir)
    psap_key = make_key(PSAP, "psap")
    center = {"Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"}
    parties = {PRIMARY: answer(), HANDBACK_LINE: PartyConfig(behaviour=Behaviour.BUSY)}
    async with wired(make_client, settings, psap_key, parties=parties, **FAST) as line:
        document = await openapi(line.client)
        transfer, _, _ = await connected_transfer(line)
        pop = await partner.wait_for("/notices", "transfer.incoming")
        check_against_document(document, "transfer.incoming", pop)
        assert pop.headers["Idempotency-Key"] == f"{transfer['id']}:1"

        resp = await line.client.post(
            "/v1/handbacks", json={"transfer_id": transfer["id"], **FULL}, headers=center
        )
        created = await resp.json()
        assert resp.status == 201, created
        failed = await partner.wait_for("/notices", "handback.failed", within_s=30)
        check_against_document(document, "handback.failed", failed)
        assert failed.body["attempts"] == ["busy", "busy", "busy"]
        assert "failure" not in failed.body, "sent only when the call ended first"


async def test_the_statuses_reading_a_body_answers_are_documented_on_its_operation(
    client: TestClient[Any, Any], make_key: KeyMaker
) -> None:
    """A body too large (413) or in a charset not read (415) is answered in the error shape, and
    the operation's document lists that status; one that reads no body does not list them."""
    document = await openapi(client)
    headers = {"Authorization": f"Bearer {make_key('kc-valleycom', 'psap')}"}
    big = b'{"caller_type": "' + b"x" * 2_000_000 + b'"}'
    answers = {
        "413": await client.post(
            "/v1/transfers",
            data=io.BytesIO(big),
            headers={**headers, "Content-Type": "application/json"},
        ),
        "415": await client.post(
            "/v1/transfers",
            data=b"{}",
            headers={**headers, "Content-Type": "application/json; charset=latin-9"},
        ),
    }
    responses = document["paths"]["/v1/transfers"]["post"]["responses"]
    for status, resp in answers.items():
        assert str(resp.status) == status
        assert set((await resp.json())["error"]) == {"code", "message", "details"}
        error = responses[status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, status
    for status in ("408", "413", "415"):
        assert status in document["paths"]["/twilio/voice"]["post"]["responses"], status
        assert status in document["paths"]["/v1/handbacks"]["post"]["responses"], status
        assert status not in document["paths"]["/v1/transfers"]["get"]["responses"], status
