"""``GET /v1/events``: the live event stream (DESIGN.md §9), on the real app and a real Redis.

Changes are made through the API (and, for the ringing states, through the transfer store the
webhooks use); the stream is read as a browser's EventSource would read it, line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.auth import KEYS_FILE, KeyFile, Principal, Role, digest, load_key_file
from gateway.core.records import encode_fields
from gateway.core.redis_client import connect
from gateway.events.hub import EventHub
from gateway.transfer.models import Attempt
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import TransferStore
from gateway.web.events import HUB
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import SAFE

PSAP = "kc-valleycom"
CALLBACK = "+12065550123"
PHONE_DIGITS = re.compile(r"\+?1?206\D?555\D?0123|2065550123")


@dataclass
class Message:
    """One SSE message (``data`` parsed as JSON), or a comment line (``comment``)."""

    id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    event: str | None = None
    comment: str | None = None
    raw: str = ""


class Sse:
    """Reads a ``text/event-stream`` response as EventSource does."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.raw = ""

    async def next(self, *, within_s: float = 10.0, comments: bool = False) -> Message:
        """The next message (comments skipped unless ``comments``); fails after ``within_s``."""
        async with asyncio.timeout(within_s):
            while True:
                message = await self._read_one()
                if message.comment is None or comments:
                    return message

    async def _read_one(self) -> Message:
        message = Message()
        data: list[str] = []
        while True:
            line = (await self.response.content.readline()).decode()
            if not line:
                raise EOFError("the stream ended")
            self.raw += line
            message.raw += line
            line = line.rstrip("\r\n")
            if line == "":
                if data or message.id is not None:
                    message.data = json.loads("\n".join(data))
                    return message
                continue
            if line.startswith(":"):
                return Message(comment=line[1:].strip(), raw=line)
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "id":
                message.id = value
            elif name == "event":
                message.event = value

    async def messages(self, count: int, *, within_s: float = 10.0) -> list[Message]:
        return [await self.next(within_s=within_s) for _ in range(count)]

    async def ended(self, *, within_s: float = 10.0) -> bool:
        """True once the server ended the stream (only comments until then)."""
        try:
            async with asyncio.timeout(within_s):
                while True:
                    await self._read_one()
        except EOFError:
            return True


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def stream(
    session: Any, url: str, key: str, *, last_event_id: str | None = None
) -> AsyncIterator[Sse]:
    """An open event stream (``session`` is a TestClient or an aiohttp session)."""
    headers = bearer(key)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        yield Sse(resp)


def ids_increase(messages: list[Message]) -> bool:
    parsed = [tuple(int(p) for p in (m.id or "").split("-")) for m in messages]
    return all(a < b for a, b in itertools.pairwise(parsed))


async def open_transfer(client: Any, psap_key: str, url: str = "") -> dict[str, Any]:
    body = {
        "psap_id": PSAP,
        "caller_type": "first_person",
        "screening": SAFE,
        "callback_number": CALLBACK,
    }
    async with client.post(url + "/v1/transfers", json=body, headers=bearer(psap_key)) as resp:
        opened: dict[str, Any] = await resp.json()
        assert resp.status == 201, opened
        return opened


async def cancel(client: Any, psap_key: str, transfer_id: str, url: str = "") -> None:
    async with client.post(
        f"{url}/v1/transfers/{transfer_id}/cancel", headers=bearer(psap_key)
    ) as resp:
        assert resp.status == 200, await resp.text()


async def change_policy(client: Any, admin_key: str, url: str = "") -> None:
    """A new policy version (a destination renamed), as an administrator saves it."""
    async with client.get(url + "/v1/admin/routing", headers=bearer(admin_key)) as resp:
        policy = await resp.json()
    policy["destinations"][0]["name"] += " (renamed)"
    async with client.put(
        url + "/v1/admin/routing", headers=bearer(admin_key), json=policy
    ) as resp:
        assert resp.status == 200, await resp.text()


async def wait_for_streams(client: TestClient[Any, Any], count: int) -> None:
    """Until the app holds ``count`` open streams (a closed one is noticed on its next write)."""
    deadline = asyncio.get_running_loop().time() + 10
    while client.app[HUB].open_streams != count:
        assert asyncio.get_running_loop().time() < deadline, client.app[HUB].open_streams
        await asyncio.sleep(0.02)


@pytest.fixture
async def app(make_client: AppFactory) -> TestClient[Any, Any]:
    return await make_client(events_heartbeat_s=0.2)


@pytest.fixture
def psap_key(make_key: KeyMaker) -> str:
    return make_key(PSAP, "psap")


async def test_a_psap_follows_its_transfer_without_personal_data(
    app: TestClient[Any, Any], psap_key: str, store: TransferStore
) -> None:
    async with stream(app, "/v1/events", psap_key) as events:
        opened = await open_transfer(app, psap_key)
        created = await events.next()
        assert created.data == {
            "type": "transfer.created",
            "at": created.data["at"],
            "transfer_id": opened["id"],
            "psap_id": PSAP,
            "state": "awaiting_bridge",
            "version": 1,
            "attempt": None,
            "destination_id": None,
            "actor": created.data["actor"],
        }
        assert created.data["actor"].startswith("psap:kc-valleycom:")
        assert created.event is None  # one message type: dispatch on data.type

        # Bridged and ringing the first destination, as the voice webhook records it.
        ringing = Attempt(destination_id="crisis-connections-988", started_at=datetime.now(UTC))
        await store.transition(
            opened["id"],
            TransferEvent.BRIDGED,
            psap_id=PSAP,
            expected_state=TransferState.AWAITING_BRIDGE,
            fields=encode_fields(attempts=[ringing], psap_call_sid="CA" + "1" * 32),
        )
        state = await events.next()
        assert state.data["type"] == "transfer.state"
        assert state.data["state"] == "ringing"
        assert state.data["attempt"] == 1
        assert state.data["destination_id"] == "crisis-connections-988"
        assert state.data["version"] == 2

        await cancel(app, psap_key, opened["id"])
        cancelled = await events.next()
        assert (cancelled.data["type"], cancelled.data["state"]) == ("transfer.state", "cancelled")
        assert ids_increase([created, state, cancelled])
        assert not PHONE_DIGITS.search(events.raw), events.raw
        assert "CA111" not in events.raw  # provider call ids stay inside


async def test_a_heartbeat_comment_keeps_the_stream_open(
    app: TestClient[Any, Any], psap_key: str
) -> None:
    async with stream(app, "/v1/events", psap_key) as events:
        message = await events.next(comments=True, within_s=5)
        assert message.comment == "ping"


async def test_each_key_sees_only_its_own_and_everyone_the_policy(
    app: TestClient[Any, Any], make_key: KeyMaker, psap_key: str
) -> None:
    other_psap = make_key("other-psap", "psap")
    center = make_key("crisis-connections", "crisis_center")  # first in a first_person chain
    clinicians = make_key("kc-clinicians", "crisis_center")  # not in a first_person chain
    admin = make_key("ops", "admin")
    url = "/v1/events"
    async with (
        stream(app, url, other_psap) as theirs,
        stream(app, url, center) as centers,
        stream(app, url, clinicians) as clinicians_,
        stream(app, url, admin) as admins,
    ):
        opened = await open_transfer(app, psap_key)
        # A new policy version: every key sees it. A stream keeps the order of the changes,
        # so a key that saw the transfer would have seen it first.
        await change_policy(app, admin)

        for reader in (theirs, clinicians_):
            changed = await reader.next()
            assert changed.data["type"] == "policy.changed", changed.data
            assert changed.data["version"] == 2
        for reader in (centers, admins):
            first = await reader.next()
            assert first.data["transfer_id"] == opened["id"]
            assert (await reader.next()).data["type"] == "policy.changed"


async def test_reconnecting_with_last_event_id_replays_exactly_what_was_missed(
    app: TestClient[Any, Any], psap_key: str
) -> None:
    async with stream(app, "/v1/events", psap_key) as events:
        first = await open_transfer(app, psap_key)
        seen = await events.next()
        assert seen.data["transfer_id"] == first["id"]
    # Gone for a while: three changes happen.
    second = await open_transfer(app, psap_key)
    await cancel(app, psap_key, second["id"])
    await cancel(app, psap_key, first["id"])

    async with stream(app, "/v1/events", psap_key, last_event_id=seen.id) as events:
        missed = await events.messages(3)
        assert [(m.data["transfer_id"], m.data["state"]) for m in missed] == [
            (second["id"], "awaiting_bridge"),
            (second["id"], "cancelled"),
            (first["id"], "cancelled"),
        ]
        assert ids_increase([seen, *missed])
        third = await open_transfer(app, psap_key)  # then live, nothing twice
        live = await events.next()
        assert live.data["transfer_id"] == third["id"]

    # The query parameter does the same for clients that cannot set headers.
    resp = await app.get(
        "/v1/events", params={"last_event_id": missed[1].id}, headers=bearer(psap_key)
    )
    async with resp:
        events = Sse(resp)
        replayed = await events.messages(2)
        assert [m.id for m in replayed] == [missed[2].id, live.id]


async def test_an_id_older_than_what_is_kept_starts_with_a_reset(
    app: TestClient[Any, Any], psap_key: str, redis: Redis
) -> None:
    async with stream(app, "/v1/events", psap_key) as events:
        opened = await open_transfer(app, psap_key)
        old = await events.next()
    await cancel(app, psap_key, opened["id"])
    await redis.xtrim(keys.EVENTS, maxlen=0, approximate=False)  # what two hours would do

    async with stream(app, "/v1/events", psap_key, last_event_id=old.id) as events:
        reset = await events.next()
        assert reset.id is None
        assert reset.data["type"] == "stream.reset"
        assert reset.data["last_event_id"] == old.id
        later = await open_transfer(app, psap_key)
        assert (await events.next()).data["transfer_id"] == later["id"]


async def test_handback_events_reach_the_psap_and_the_center_only(
    app: TestClient[Any, Any], make_key: KeyMaker, psap_key: str
) -> None:
    center = make_key("crisis-connections", "crisis_center")
    other_center = make_key("wa-988", "crisis_center")
    async with (
        stream(app, "/v1/events", psap_key) as psaps,
        stream(app, "/v1/events", center) as centers,
        stream(app, "/v1/events", other_center) as others,
    ):
        body = {
            "psap_id": PSAP,
            "reason": "imminent_risk",
            "location": {"address": "1200 Main St, Kent", "lat": 47.381234, "lon": -122.234567},
            "callback_number": CALLBACK,
            "risk": {"weapons": False, "means_access": True, "summary": "plan tonight"},
            "counselor_ref": "c-104",
        }
        resp = await app.post("/v1/handbacks", json=body, headers=bearer(center))
        assert resp.status == 201, await resp.text()
        handback = await resp.json()
        resp = await app.post(
            f"/v1/handbacks/{handback['id']}/contact",
            json={"contact_made": False},
            headers=bearer(psap_key),
        )
        assert resp.status == 200, await resp.text()
        for reader in (psaps, centers):
            created, contact, flag = await reader.messages(3)
            assert created.data["type"] == "handback.created"
            assert created.data["handback_id"] == handback["id"]
            assert created.data["psap_id"] == PSAP
            assert created.data["state"] == handback["state"]
            assert contact.data["type"] == "handback.contact"
            assert contact.data["contact_made"] is False
            assert (flag.data["type"], flag.data["flag"]) == ("handback.flag", "no_contact")
            for private in ("Main St", "plan tonight", "c-104", "47.38"):
                assert private not in reader.raw
            assert not PHONE_DIGITS.search(reader.raw)
        # Without a location it is flagged as it is made.
        resp = await app.post(
            "/v1/handbacks",
            json={"psap_id": PSAP, "reason": "other", "location": None},
            headers=bearer(center),
        )
        assert resp.status == 201, await resp.text()
        unlocated = (await resp.json())["id"]
        created, flag = await psaps.messages(2)
        assert (created.data["type"], created.data["handback_id"]) == (
            "handback.created",
            unlocated,
        )
        assert flag.data == {
            **flag.data,
            "type": "handback.flag",
            "flag": "location_unknown",
            "handback_id": unlocated,
        }
        # The other center sees nothing of them: its next message is the next policy change.
        await change_policy(app, make_key("ops", "admin"))
        assert (await others.next()).data["type"] == "policy.changed"


async def test_open_streams_are_bounded_per_key_and_per_process(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    app = await make_client(
        events_heartbeat_s=0.1, events_max_streams=3, events_max_streams_per_key=2
    )
    one, two = make_key(PSAP, "psap"), make_key("ops", "admin")
    async with stream(app, "/v1/events", one), stream(app, "/v1/events", one):
        resp = await app.get("/v1/events", headers=bearer(one))
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "5"
        error = (await resp.json())["error"]
        assert error["code"] == "rate_limited"
        assert error["details"] == [{"scope": "key", "limit": 2}]
        async with stream(app, "/v1/events", two):
            resp = await app.get("/v1/events", headers=bearer(two))
            assert resp.status == 429
            assert (await resp.json())["error"]["details"] == [{"scope": "process", "limit": 3}]
    # Closed streams give their places back (noticed on their next heartbeat).
    await wait_for_streams(app, 0)
    async with stream(app, "/v1/events", one) as events:
        assert (await events.next(comments=True)).comment == "ping"


async def test_bad_requests_get_json_errors(app: TestClient[Any, Any], psap_key: str) -> None:
    resp = await app.get("/v1/events")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    for bad in ("yesterday", "12-x", "-1-0", "1" * 30 + "-0"):
        resp = await app.get("/v1/events", headers={**bearer(psap_key), "Last-Event-ID": bad})
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "bad_request"
    document = await (await app.get("/openapi.json")).json()
    operation = document["paths"]["/v1/events"]["get"]
    assert "Server-Sent Events" in operation["summary"]
    assert operation["x-roles"] == ["psap", "crisis_center", "admin"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]


async def test_shutdown_ends_open_streams_cleanly(make_client: AppFactory, psap_key: str) -> None:
    app = await make_client()
    async with stream(app, "/v1/events", psap_key) as events:
        await wait_for_streams(app, 1)
        closing = asyncio.create_task(app.server.close())
        assert await events.ended()
        await closing


async def test_a_stream_that_falls_behind_is_closed_and_catches_up_from_redis(
    redis: Redis, redis_url: str, store: TransferStore
) -> None:
    reader = connect(redis_url, socket_timeout_s=3)
    hub = EventHub(reader, redis, block_ms=200, queue_size=3)
    task = asyncio.create_task(hub.run())
    try:
        async with asyncio.timeout(10):
            await hub.ready.wait()
        admin = Principal("ops", Role.ADMIN, "key-1")
        slow = hub.subscribe(admin)
        for i in range(5):
            await store.create(
                f"tr_{i:024x}", psap_id=PSAP, state=TransferState.AWAITING_BRIDGE, fields={}
            )
        deadline = asyncio.get_running_loop().time() + 10
        while not slow.closed:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        assert slow.overflowed
        assert slow.queue.get_nowait() is None  # what it held is dropped: the stream ends
        hub.unsubscribe(slow)

        # Reconnecting with the id it had (none here: from the start) it gets all five.
        again = hub.subscribe(admin)
        missed = await hub.replay(again, "0-0")
        assert missed is not None
        while len(missed) < 5:  # what the reader had not handed out yet comes live
            async with asyncio.timeout(10):
                live = await again.queue.get()
            assert live is not None
            missed.append(live)
        assert [e.data["transfer_id"] for e in missed] == [f"tr_{i:024x}" for i in range(5)]
        assert again.queue.empty()
        assert hub.open_streams == 1
    finally:
        hub.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await reader.aclose()


async def test_an_unreadable_entry_is_skipped_and_the_stream_goes_on(
    app: TestClient[Any, Any], make_key: KeyMaker, psap_key: str, redis: Redis
) -> None:
    async with stream(app, "/v1/events", make_key("ops", "admin")) as events:
        await redis.xadd(keys.EVENTS, {"type": "transfer.state", "version": "not a number"})
        opened = await open_transfer(app, psap_key)
        assert (await events.next()).data["transfer_id"] == opened["id"]


async def test_a_revoked_keys_stream_ends(
    app: TestClient[Any, Any], make_key: KeyMaker, config_dir: Path
) -> None:
    kept = make_key(PSAP, "psap")
    revoked = make_key(PSAP, "psap")
    async with stream(app, "/v1/events", revoked) as events:
        path = config_dir / KEYS_FILE
        remaining = [r for r in load_key_file(path).keys if r.digest != digest(revoked)]
        path.write_text(yaml.safe_dump(KeyFile(keys=remaining).model_dump(mode="json")))
        assert await events.ended(within_s=10)
    resp = await app.get("/v1/events", headers=bearer(revoked))
    assert resp.status == 401
    async with stream(app, "/v1/events", kept) as events:
        assert (await events.next(comments=True)).comment == "ping"
