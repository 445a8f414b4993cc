"""Properties of the input boundary over generated input, against the real app on a real port.

Whatever is sent — any JSON value, any bytes, any Content-Type, to every POST/PUT route under
``/v1`` with a key of each role; any list of form pairs, correctly signed, to every ``/twilio``
route; any query string on every GET route — the answer is never a 5xx, an error is always
``{"error": {"code", "message", "details"}}``, a webhook's success is TwiML or a 204, and nothing
is logged at ERROR or with a traceback. Bounded: a few hundred examples in all.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from gateway.core.settings import Settings
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PSAP, PUBLIC, SAFE

TOKEN = "property-test-token"
FORM = "application/x-www-form-urlencoded"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text with the characters that break things more likely than chance would make them.
ODD = st.sampled_from(["\ud800", "\udfff", "\x00", "\u0663", "\uff11", "\ufeff", "+", "%", "&"])
TEXT = st.text(st.characters(exclude_categories=()) | ODD, max_size=12)
FIELDS = st.sampled_from(
    ["psap_id", "caller_type", "screening", "language", "transfers_so_far", "tags", "at",
     "callback_number", "transfer_id", "reason", "location", "lat", "lon", "risk", "note",
     "contact_made", "outcome", "police_involved", "version", "counselor_ref", "weapons"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | TEXT
    | st.sampled_from(["+12065550123", "+1206555\u0660\u0661\u0662\u0663", PSAP, "2026-01-01"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(FIELDS | TEXT, inner, max_size=4),
    max_leaves=16,
)
LITERALS = st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n) | st.sampled_from(
    ["NaN", "-Infinity", "1e999", "-1e-999", "-0", "1.5e308", r'"\ud800"', r'"\udc00\ud800"',
     r'"\u0000"', '"\u0663"', "[" * 40 + "]" * 40]
)  # fmt: skip
CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "application/json; charset=utf-8", FORM, "text/plain",
     "application/json; charset=latin-1", "multipart/form-data; boundary=x", "application/xml"]
)  # fmt: skip
TWILIO_FIELDS = st.sampled_from(
    ["CallSid", "CallStatus", "Digits", "ConferenceSid", "StatusCallbackEvent", "SequenceNumber",
     "From", "To", "StirVerstat", "AnsweredBy", "CallDuration", "FriendlyName"]
)  # fmt: skip
TWILIO_VALUES = st.text(max_size=12) | st.sampled_from(
    ["completed", "in-progress", "busy", "no-answer", "failed", "canceled", "participant-leave",
     "participant-join", "conference-end", "conference-start", "123456", "1", "0"]
)  # fmt: skip


def encode(value: Any, ascii_only: bool) -> bytes:
    """JSON as a client might send it: NaN and Infinity kept, surrogates as escapes or (with
    ``ascii_only`` off) as the invalid bytes ``surrogatepass`` makes."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@dataclass
class World:
    client: TestClient[Any, Any]
    headers: dict[str, dict[str, str]]
    transfer_id: str
    handback_id: str
    bases: dict[tuple[str, str], dict[str, Any]]
    roles: dict[tuple[str, str], list[str]]
    caplog: pytest.LogCaptureFixture

    def routes(self, methods: set[str], prefix: str) -> list[tuple[str, str]]:
        return sorted(
            {
                (route.method, route.resource.canonical)
                for route in self.client.app.router.routes()
                if route.method in methods
                and route.resource is not None
                and route.resource.canonical.startswith(prefix)
            }
        )

    def role(self, data: st.DataObject, method: str, template: str) -> str:
        """A role the route allows, at least half the time (else any role)."""
        allowed = self.roles.get((method, template)) or sorted(self.headers)
        return data.draw(st.sampled_from(allowed) | st.sampled_from(sorted(self.headers)))

    def fill(self, path: str, known: bool) -> str:
        """``path`` with its ids: this world's transfer or handback, or an unknown one."""
        handback = "/handbacks" in path or "/handback/" in path
        ident = self.handback_id if handback else self.transfer_id
        if not known:
            ident = ident[:3] + "f" * 24
        return path.replace("{id}", ident).replace("{message}", "exhausted")

    def assert_quiet(self) -> None:
        """No traceback anywhere, no ERROR from serving a request. (The flows the valid bodies
        start may log ERROR on their own, e.g. a 988 center without a notify URL.)"""
        loud = [
            (r.name, r.levelname, r.getMessage())
            for r in self.caplog.records
            if r.exc_info
            or (r.levelno >= logging.ERROR and r.name.startswith(("gateway.web", "aiohttp")))
        ]
        assert loud == []


@pytest.fixture
async def world(
    make_client: AppFactory,
    settings: Settings,
    make_key: KeyMaker,
    caplog: pytest.LogCaptureFixture,
) -> World:
    client = await make_client(
        settings,
        public_base_url=PUBLIC,
        twilio_auth_token=TOKEN,
        twilio_api_base_url="http://127.0.0.1:9",  # no outbound call leaves the machine
    )
    headers = {
        "psap": {"Authorization": f"Bearer {make_key(PSAP, 'psap')}"},
        "crisis_center": {
            "Authorization": f"Bearer {make_key('crisis-connections', 'crisis_center')}"
        },
        "admin": {"Authorization": f"Bearer {make_key('ops', 'admin')}"},
    }
    decision = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
    resp = await client.post(
        "/v1/transfers",
        json={**decision, "callback_number": "+12065550123"},
        headers=headers["psap"],
    )
    assert resp.status == 201, await resp.text()
    transfer_id = (await resp.json())["id"]
    resp = await client.post(
        "/v1/handbacks", json={"psap_id": PSAP, "reason": "other"}, headers=headers["crisis_center"]
    )
    assert resp.status == 201, await resp.text()
    handback_id = (await resp.json())["id"]
    policy = await (await client.get("/v1/admin/routing", headers=headers["admin"])).json()
    policy.pop("version", None)
    bases = {
        ("POST", "/v1/routing/decisions"): decision,
        ("POST", "/v1/transfers"): {**decision, "callback_number": "+12065550123"},
        ("POST", "/v1/transfers/{id}/disposition"): {
            "outcome": "resolved_by_phone",
            "police_involved": False,
        },
        ("POST", "/v1/handbacks"): {"psap_id": PSAP, "reason": "other"},
        ("POST", "/v1/handbacks/{id}/contact"): {"contact_made": True},
        ("PUT", "/v1/admin/routing"): policy,
        ("POST", "/v1/admin/routing/rollback"): {"version": 1},
    }
    document = await (await client.get("/openapi.json")).json()
    roles = {
        (method.upper(), path): operation.get("x-roles", [])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    caplog.set_level(logging.INFO)
    caplog.clear()
    return World(client, headers, transfer_id, handback_id, bases, roles, caplog)


def assert_error_shape(text: str, status: int) -> None:
    body = json.loads(text)
    assert set(body) == {"error"}, text
    assert set(body["error"]) == {"code", "message", "details"}, text
    assert isinstance(body["error"]["code"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    assert status < 500, text


@FUZZ
@given(data=st.data())
async def test_no_json_body_is_a_server_error(world: World, data: st.DataObject) -> None:
    method, template = data.draw(
        st.sampled_from(world.routes({"POST", "PUT"}, "/v1/")), label="route"
    )
    role = world.role(data, method, template)
    path = world.fill(template, data.draw(st.booleans(), label="known id"))
    base = world.bases.get((method, template), {})
    kind = data.draw(st.sampled_from(["bytes", "json", "nested", "literal", "mutated"]))
    if kind == "bytes":
        body = data.draw(st.binary(max_size=300), label="body")
    elif kind == "json":
        body = encode(data.draw(JSON_VALUES, label="value"), data.draw(st.booleans()))
    elif kind == "nested":
        depth = data.draw(st.integers(min_value=1, max_value=3000), label="depth")
        opener, closer = data.draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        body = (opener * depth + "1" + closer * depth).encode()
    elif kind == "literal":
        name = data.draw(FIELDS, label="field")
        literal = data.draw(LITERALS, label="literal")
        body = json.dumps({**base, name: "@@"}).replace('"@@"', literal).encode()
    else:
        changes = data.draw(st.dictionaries(FIELDS | TEXT, JSON_VALUES, max_size=3), label="set")
        dropped = data.draw(st.sets(st.sampled_from(sorted(base) or ["-"])), label="drop")
        mutated = {k: v for k, v in {**base, **changes}.items() if k not in dropped}
        body = encode(mutated, data.draw(st.booleans()))
    headers = dict(world.headers[role])
    content_type = data.draw(CONTENT_TYPES, label="content type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    resp = await world.client.request(method, path, data=body, headers=headers)
    text = await resp.text()
    event(f"{kind}: {resp.status}")
    assert resp.status < 500, (method, path, text)
    assert resp.content_type == "application/json", text
    if resp.status >= 400:
        assert_error_shape(text, resp.status)
    world.assert_quiet()


@FUZZ
@given(data=st.data())
async def test_no_signed_webhook_is_a_server_error(world: World, data: st.DataObject) -> None:
    _, template = data.draw(st.sampled_from(world.routes({"POST"}, "/twilio/")), label="route")
    path = world.fill(template, data.draw(st.booleans(), label="known id"))
    if "/participant/" in path:
        path += "?attempt=" + data.draw(st.sampled_from(["1", "2", "x", ""]), label="attempt")
    pairs = data.draw(
        st.lists(st.tuples(TWILIO_FIELDS | st.text(max_size=8), TWILIO_VALUES), max_size=10),
        label="pairs",
    )
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, MultiDict(pairs))
    resp = await world.client.post(
        path,
        data=urlencode(pairs).encode(),
        headers={"Content-Type": FORM, "X-Twilio-Signature": signature},
    )
    text = await resp.text()
    event(f"{template}: {resp.status}")
    assert resp.status < 500, (path, pairs, text)
    if resp.status >= 400:
        assert resp.content_type == "application/json", text
        assert_error_shape(text, resp.status)
    elif resp.status != 204:
        assert resp.status == 200
        assert resp.content_type == "application/xml", text
        assert re.match(r"<\?xml [^>]*\?><Response>", text), text
    world.assert_quiet()


@settings(FUZZ, max_examples=100)
@given(data=st.data())
async def test_no_query_string_is_a_server_error(world: World, data: st.DataObject) -> None:
    # The event stream never ends by itself (tests/test_events.py covers its query).
    routes = [r for r in world.routes({"GET"}, "/v1/") if r[1] != "/v1/events"]
    _, template = data.draw(st.sampled_from(routes), label="route")
    role = world.role(data, "GET", template)
    names = st.sampled_from(["from", "to", "psap_id", "limit", "state", "cursor"]) | st.text(
        max_size=6
    )
    values = st.text(max_size=12) | st.sampled_from(
        ["2026-01-01", "0001-01-01", "9999-12-31", "2026-02-30", "1", "200", "201", "-1", PSAP]
    )
    pairs = data.draw(st.lists(st.tuples(names, values), max_size=4), label="query")
    path = world.fill(template, data.draw(st.booleans(), label="known id"))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    resp = await world.client.get(f"{path}?{query}", headers=world.headers[role])
    text = await resp.text()
    event(f"{template}: {resp.status}")
    assert resp.status < 500, (path, query, text)
    if resp.status >= 400:
        assert_error_shape(text, resp.status)
    world.assert_quiet()
