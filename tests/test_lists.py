"""``GET /v1/transfers`` and ``GET /v1/handbacks`` (DESIGN.md §9) over real HTTP on real Redis:
paging with no repeats or gaps while transfers keep arriving, every filter, role scoping, bad
queries, index upkeep (expired records, retention), and the handback fields a PSAP reads."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.core import keys as rkeys
from gateway.core.paging import Position, decode_cursor, encode_cursor, read_page
from gateway.core.timers import to_ms
from gateway.transfer.states import TransferState
from gateway.transfer.store import TransferStore
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PSAP, SAFE

NOON = "2026-05-01T19:00:00Z"
"""12:00 in Kent: the dispatch clinicians are open, so a third-party call goes to them first."""
CLINICIANS = "kc-dispatch-clinicians"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Api:
    """One gateway with a key per role."""

    def __init__(self, client: TestClient[Any, Any], make_key: KeyMaker) -> None:
        self.client = client
        self.psap = bearer(make_key(PSAP, "psap"))
        self.other_psap = bearer(make_key("other-psap", "psap"))
        self.admin = bearer(make_key("ops", "admin"))
        self.center = {
            org: bearer(make_key(org, "crisis_center"))
            for org in ("crisis-connections", "wa-988", "kc-clinicians")
        }

    async def open(self, caller_type: str = "first_person", **extra: Any) -> dict[str, Any]:
        body = {"psap_id": PSAP, "caller_type": caller_type, "screening": SAFE, "at": NOON}
        resp = await self.client.post("/v1/transfers", json={**body, **extra}, headers=self.psap)
        data: dict[str, Any] = await resp.json()
        assert resp.status == 201, data
        return data

    async def list(
        self, headers: dict[str, str], path: str = "/v1/transfers", **query: Any
    ) -> tuple[int, dict[str, Any]]:
        params = [
            (name, str(v))
            for name, value in query.items()
            for v in (value if isinstance(value, list) else [value])
        ]
        resp = await self.client.get(path, params=params, headers=headers)
        return resp.status, await resp.json()

    async def ids(self, headers: dict[str, str], **query: Any) -> list[str]:
        status, page = await self.list(headers, **query)
        assert status == 200, page
        return [t["id"] for t in page["items"]]

    async def walk(
        self, headers: dict[str, str], path: str = "/v1/transfers", **query: Any
    ) -> list[dict[str, Any]]:
        """Every page, following next_cursor to its end."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(500):
            params = {**query, **({"cursor": cursor} if cursor else {})}
            status, page = await self.list(headers, path, **params)
            assert status == 200, page
            assert set(page) == {"items", "next_cursor"}
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("the cursor never ran out")


@pytest.fixture
async def api(client: TestClient[Any, Any], make_key: KeyMaker) -> Api:
    return Api(client, make_key)


def newest_first(items: list[dict[str, Any]]) -> bool:
    order = [(datetime.fromisoformat(t["created_at"]), t["id"]) for t in items]
    return order == sorted(order, reverse=True)


# ---- paging ------------------------------------------------------------------------------------


async def test_paging_repeats_nothing_and_skips_nothing_while_transfers_arrive(
    api: Api, make_client: AppFactory
) -> None:
    before = [(await api.open())["id"] for _ in range(25)]
    other_instance = await make_client()  # a second gateway process creates meanwhile
    arrived: list[str] = []
    paging_done = asyncio.Event()
    arrival = asyncio.Event()

    async def keep_creating() -> None:
        body = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
        while not paging_done.is_set() and len(arrived) < 60:
            resp = await other_instance.post("/v1/transfers", json=body, headers=api.psap)
            assert resp.status == 201
            arrived.append((await resp.json())["id"])
            arrival.set()
            await asyncio.sleep(0.005)

    creating = asyncio.create_task(keep_creating())
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        # Transfers arrive between pages: at least one more before each of the first pages.
        async with asyncio.timeout(10):
            while len(arrived) < min(pages, 5):
                await arrival.wait()
                arrival.clear()
        query = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        status, page = await api.list(api.psap, **query)
        assert status == 200, page
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    paging_done.set()
    await creating
    ids = [t["id"] for t in seen]
    assert len(arrived) >= 5, "too little arrived while paging"
    assert pages > 25 // 4
    assert len(ids) == len(set(ids)), "an item was repeated"
    assert set(before) <= set(ids), "an item that existed before paging began was skipped"
    assert newest_first(seen)
    assert set(ids) - set(before) <= set(arrived)
    # Nothing older than the last item seen is missing: every transfer created before it was
    # listed (arrivals after the first page are newer than any cursor, so they are not).
    everything = await api.walk(api.admin)
    first_page_end = seen[0]["created_at"]
    missing = [
        t["id"] for t in everything if t["created_at"] <= first_page_end and t["id"] not in ids
    ]
    assert missing == []


async def test_items_are_shaped_exactly_like_get_transfer(api: Api) -> None:
    opened = await api.open()
    status, page = await api.list(api.psap)
    assert status == 200
    one = await (await api.client.get(f"/v1/transfers/{opened['id']}", headers=api.psap)).json()
    assert page == {"items": [one], "next_cursor": None}
    assert "bridge_code" not in json.dumps(page)


async def test_equal_creation_times_page_by_id_without_repeats_or_gaps(
    api: Api, redis: Redis
) -> None:
    """Ten transfers created in the same millisecond, read two at a time: the cursor keys on
    (time, id), so a page boundary inside the tie loses and repeats nothing."""
    store = TransferStore(redis)
    template = await api.open()
    raw = await redis.hgetall(rkeys.transfer(template["id"]))
    fields = {
        k.decode(): v.decode()
        for k, v in raw.items()
        if k.decode() not in {"state", "version", "created_at", "updated_at", "tx", "psap_id"}
    }
    at = datetime.now(UTC) + timedelta(seconds=1)
    twins = [f"tr_{i:024x}" for i in range(10)]
    for transfer_id in twins:
        await store.create(
            transfer_id,
            psap_id=PSAP,
            state=TransferState.NOT_TRANSFERRED,
            fields=fields,
            now=at,
        )
    items = await api.walk(api.psap, limit=3)
    ids = [t["id"] for t in items]
    assert ids[:10] == sorted(twins, reverse=True)
    assert ids[10:] == [template["id"]]


async def test_a_long_run_of_equal_scores_is_read_past_in_batches(redis: Redis) -> None:
    index = rkeys.TRANSFERS_ALL
    await redis.zadd(index, {f"m{i:03d}": 1000 for i in range(25)})
    await redis.zadd(index, {"older": 999, "newer": 1001})

    async def load(ids: Any) -> list[str]:
        return list(ids)

    got: list[str] = []
    before: Position | None = None
    while True:
        found = await read_page(redis, index, load, before=before, limit=4, batch=3)
        got += found.items
        if found.next is None:
            break
        before = found.next
    assert got == ["newer", *[f"m{i:03d}" for i in reversed(range(25))], "older"]
    # A filter that keeps almost nothing stops at its budget with a cursor, and goes on.
    found = await read_page(redis, index, load, keep=lambda m: m == "older", budget=10, batch=3)
    assert found.items == []
    assert found.next is not None
    assert (await read_page(redis, index, load, keep=lambda m: m == "older")).items == ["older"]


# ---- filters and scoping ----------------------------------------------------------------------


async def test_every_filter(api: Api) -> None:
    first = await api.open()
    third = await api.open("third_party")
    kept = await api.open(screening={**SAFE, "weapons": True})
    cancelled = await api.open()
    resp = await api.client.post(f"/v1/transfers/{cancelled['id']}/cancel", headers=api.psap)
    assert resp.status == 200
    assert third["decision"]["destinations"][0]["id"] == CLINICIANS

    everything = [cancelled["id"], kept["id"], third["id"], first["id"]]
    assert await api.ids(api.psap) == everything
    assert await api.ids(api.psap, state="cancelled") == [cancelled["id"]]
    both = await api.ids(api.admin, state=["cancelled", "not_transferred"])
    assert both == [cancelled["id"], kept["id"]]
    assert await api.ids(api.admin, state="awaiting_bridge") == [third["id"], first["id"]]
    assert await api.ids(api.admin, psap_id=PSAP) == everything
    assert await api.ids(api.admin, psap_id="other-psap") == []
    assert await api.ids(api.admin, destination_id=CLINICIANS) == [third["id"]]
    assert await api.ids(api.psap, destination_id="wa-988-backup") == [
        cancelled["id"],
        first["id"],
    ]
    since = third["created_at"]
    assert await api.ids(api.psap, since=since) == [cancelled["id"], kept["id"], third["id"]]
    later = (datetime.fromisoformat(cancelled["created_at"]) + timedelta(seconds=1)).isoformat()
    assert await api.ids(api.psap, since=later) == []
    assert await api.ids(api.psap, since="0001-01-01T00:00:00+14:00") == everything
    assert await api.ids(api.psap, since="9999-12-31T23:59:59-14:00") == []
    assert await api.ids(api.psap, limit=2) == everything[:2]
    _, page = await api.list(api.psap, limit=2)
    assert page["next_cursor"] is not None
    rest = await api.ids(api.psap, limit=2, cursor=page["next_cursor"])
    assert rest == everything[2:]
    # A "+" left unencoded in a query string arrives as a space, and still reads as "+".
    plus = since.replace("Z", "+00:00")
    raw = await api.client.get("/v1/transfers?since=" + plus, headers=api.psap)
    assert [t["id"] for t in (await raw.json())["items"]] == everything[:3]


async def test_each_role_sees_only_its_own(api: Api) -> None:
    first = await api.open()  # crisis-connections-988, wa-988-backup, national-988-backup
    third = await api.open("third_party")  # kc-dispatch-clinicians, crisis-connections-988
    kept = await api.open(screening={**SAFE, "weapons": True})  # no chain

    assert await api.ids(api.admin) == [kept["id"], third["id"], first["id"]]
    assert await api.ids(api.other_psap) == [], "another PSAP's key sees none"
    status, body = await api.list(api.psap, psap_id="other-psap")
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"
    assert await api.ids(api.center["crisis-connections"]) == [third["id"], first["id"]]
    assert await api.ids(api.center["wa-988"]) == [first["id"]]
    assert await api.ids(api.center["kc-clinicians"]) == [third["id"]]
    assert await api.ids(api.center["kc-clinicians"], destination_id=CLINICIANS) == [third["id"]]
    assert await api.ids(api.center["wa-988"], destination_id=CLINICIANS) == []
    assert await api.ids(api.center["wa-988"], psap_id=PSAP) == [first["id"]]
    for org, headers in api.center.items():
        for item in (await api.list(headers))[1]["items"]:
            shown = await api.client.get(f"/v1/transfers/{item['id']}", headers=headers)
            assert shown.status == 200, (org, item["id"])
    resp = await api.client.get("/v1/transfers")
    assert resp.status == 401


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'[1, "x", 5]').decode()}, "cursor"),
        ({"cursor": "x" * 1000}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-05-01T08:00:00"}, "since"),  # no offset: not an instant
        ({"since": "2026-13-01T08:00:00Z"}, "since"),
        ({"state": "bogus"}, "state"),
        ({"psap_id": "Not A PSAP"}, "psap_id"),
        ({"destination_id": "../x"}, "destination_id"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/v1/transfers", "/v1/handbacks"])
async def test_a_bad_query_is_422_naming_the_parameter(
    api: Api, query: dict[str, str], path: str, endpoint: str
) -> None:
    if endpoint == "/v1/handbacks" and path == "destination_id":
        return  # transfers only
    status, body = await api.list(api.admin, endpoint, **query)
    assert status == 422, body
    assert body["error"]["code"] == "invalid"
    assert [d["path"] for d in body["error"]["details"]] == [path]


def test_a_cursor_reads_back_as_the_position_it_names() -> None:
    position = Position(1_777_777_777_777, "tr_" + "a" * 24)
    cursor = encode_cursor(position)
    assert cursor.isascii()
    assert "=" not in cursor
    assert "/" not in cursor
    assert decode_cursor(cursor) == position


# ---- index upkeep -----------------------------------------------------------------------------


async def test_an_expired_record_is_skipped_and_leaves_the_index(api: Api, redis: Redis) -> None:
    gone = await api.open()
    stays = await api.open()
    await redis.delete(rkeys.transfer(gone["id"]))  # as retention would
    assert await api.ids(api.psap) == [stays["id"]]
    assert await api.ids(api.admin) == [stays["id"]]
    assert await redis.zscore(rkeys.psap_transfers(PSAP), gone["id"]) is None
    assert await redis.zscore(rkeys.TRANSFERS_ALL, gone["id"]) is None


async def test_entries_older_than_the_retention_are_trimmed_on_create(
    api: Api, redis: Redis
) -> None:
    store = TransferStore(redis, retention_s=3600)
    old = datetime.now(UTC) - timedelta(hours=2)
    await store.create(
        "tr_" + "0" * 24,
        psap_id=PSAP,
        state=TransferState.NOT_TRANSFERRED,
        fields={},
        destinations=["wa-988-backup"],
        orgs=["wa-988"],
        now=old,
    )
    indexes = [
        rkeys.psap_transfers(PSAP),
        rkeys.TRANSFERS_ALL,
        rkeys.destination_transfers("wa-988-backup"),
        rkeys.org_transfers("wa-988"),
    ]
    for index in indexes:
        assert await redis.zscore(index, "tr_" + "0" * 24) == to_ms(old)
    await store.create(
        "tr_" + "1" * 24,
        psap_id=PSAP,
        state=TransferState.NOT_TRANSFERRED,
        fields={},
        destinations=["wa-988-backup"],
        orgs=["wa-988"],
    )
    for index in indexes:
        assert await redis.zrange(index, 0, -1) == [b"tr_" + b"1" * 24], index


async def test_records_made_before_the_indexes_existed_are_entered_at_start(
    api: Api, redis: Redis, make_client: AppFactory
) -> None:
    first = await api.open()
    third = await api.open("third_party")
    status, created = await api.list(api.admin)  # made with every index
    assert status == 200
    resp = await api.client.post(
        "/v1/handbacks",
        json={"psap_id": PSAP, "reason": "other"},
        headers=api.center["wa-988"],
    )
    handback = await resp.json()
    assert resp.status == 201, handback
    # As an older gateway left them: only each PSAP's own index, and no mark.
    newer = [
        rkeys.TRANSFERS_ALL,
        rkeys.HANDBACKS_ALL,
        rkeys.org_handbacks("wa-988"),
        rkeys.LISTS_INDEXED,
        *[rkeys.destination_transfers(d["id"]) for d in first["decision"]["destinations"]],
        *[rkeys.destination_transfers(d["id"]) for d in third["decision"]["destinations"]],
        *[rkeys.org_transfers(o) for o in ("crisis-connections", "wa-988", "national-988")],
        rkeys.org_transfers("kc-clinicians"),
    ]
    await redis.delete(*newer)
    assert await api.ids(api.admin) == []

    restarted = await make_client()
    assert await redis.get(rkeys.LISTS_INDEXED) == b"1"
    listed = await restarted.get("/v1/transfers", headers=api.admin)
    assert (await listed.json()) == created
    api.client = restarted
    assert await api.ids(api.center["kc-clinicians"]) == [third["id"]]
    assert await api.ids(api.admin, destination_id="wa-988-backup") == [first["id"]]
    assert [h["id"] for h in await api.walk(api.center["wa-988"], "/v1/handbacks")] == [
        handback["id"]
    ]
    assert [h["id"] for h in await api.walk(api.admin, "/v1/handbacks")] == [handback["id"]]


async def test_listing_uses_no_scan(api: Api, redis: Redis) -> None:
    for _ in range(3):
        await api.open()
    await redis.config_resetstat()
    await api.walk(api.admin, limit=1)
    await api.walk(api.center["wa-988"], limit=2)
    stats = await redis.info("commandstats")
    assert not [name for name in stats if name in ("cmdstat_scan", "cmdstat_keys")]
    assert "cmdstat_zrevrangebyscore" in stats


# ---- handbacks --------------------------------------------------------------------------------

FULL = {
    "reason": "imminent_risk",
    "location": {"address": "500 Example Ave, Kent", "lat": 47.38, "lon": -122.23},
    "callback_number": "+12065550123",
    "risk": {"weapons": False, "summary": "pills at hand"},
    "counselor_ref": "c-7",
}


async def hand_back(api: Api, org: str = "crisis-connections", **body: Any) -> dict[str, Any]:
    resp = await api.client.post(
        "/v1/handbacks", json={"psap_id": PSAP, **body}, headers=api.center[org]
    )
    data: dict[str, Any] = await resp.json()
    assert resp.status == 201, data
    return data


async def test_handbacks_page_in_the_same_shape(api: Api) -> None:
    made = [(await hand_back(api, reason="other"))["id"] for _ in range(5)]
    theirs = await hand_back(api, "wa-988", reason="medical")
    items = await api.walk(api.psap, "/v1/handbacks", limit=2)
    assert [h["id"] for h in items] == [theirs["id"], *reversed(made)]
    assert newest_first(items)
    status, page = await api.list(api.psap, "/v1/handbacks", limit=2)
    assert status == 200
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    centers = await api.walk(api.center["crisis-connections"], "/v1/handbacks", limit=4)
    assert [h["id"] for h in centers] == list(reversed(made))
    assert [h["id"] for h in await api.walk(api.admin, "/v1/handbacks")] == [
        theirs["id"],
        *reversed(made),
    ]
    assert await api.walk(api.other_psap, "/v1/handbacks") == []
    since = (await api.list(api.admin, "/v1/handbacks", since=theirs["created_at"]))[1]
    assert [h["id"] for h in since["items"]] == [theirs["id"]]
    one = await api.client.get(f"/v1/handbacks/{made[0]}", headers=api.psap)
    assert items[-1] == await one.json(), "the same view as GET /v1/handbacks/{id}"


async def test_a_psap_reads_what_it_needs_without_cad(api: Api) -> None:
    created = await hand_back(api, **FULL)
    assert "summary" not in created, "the center gave these; it does not get them back"
    for headers in (api.psap, api.admin):
        shown = await (
            await api.client.get(f"/v1/handbacks/{created['id']}", headers=headers)
        ).json()
        assert shown["reason"] == "imminent_risk"
        assert shown["location"]["address"] == "500 Example Ave, Kent"
        assert shown["callback_number"] == "+12065550123"
        assert shown["risk"] == {"weapons": False, "means_access": None, "summary": "pills at hand"}
        assert shown["counselor_ref"] == "c-7"
        assert shown["summary"] == (
            "imminent risk · 500 Example Ave, Kent · +1 206-555-0123 · weapons: no"
        )
    center = await (
        await api.client.get(
            f"/v1/handbacks/{created['id']}", headers=api.center["crisis-connections"]
        )
    ).json()
    assert center["id"] == created["id"]
    for hidden in ("location", "callback_number", "risk", "counselor_ref", "summary"):
        assert hidden not in center
    eido = await api.client.get(
        f"/v1/handbacks/{created['id']}/eido", headers=api.center["crisis-connections"]
    )
    assert eido.status == 403, "a center sees its handback without the EIDO"


async def test_the_summary_says_what_is_unknown(api: Api) -> None:
    created = await hand_back(
        api,
        reason="attempt_in_progress",
        location={"description": "somewhere near the river"},
        risk={"weapons": True, "means_access": True},
    )
    shown = await (await api.client.get(f"/v1/handbacks/{created['id']}", headers=api.psap)).json()
    assert shown["flags"] == ["location_unknown"]
    assert shown["callback_number"] is None
    assert shown["summary"] == (
        "attempt in progress · location unknown · no callback number · weapons: yes · "
        "lethal means: yes"
    )
    coordinates = await hand_back(
        api, reason="medical", location={"lat": 47.3812, "lon": -122.2345}, risk=None
    )
    shown = await (
        await api.client.get(f"/v1/handbacks/{coordinates['id']}", headers=api.psap)
    ).json()
    assert (
        shown["summary"] == "medical · 47.38120, -122.23450 · no callback number · weapons: unknown"
    )


async def test_the_document_describes_the_lists_and_the_readable_fields(
    client: TestClient[Any, Any],
) -> None:
    document = await (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert "get" in paths["/v1/transfers"]
    assert "post" in paths["/v1/transfers/{id}/code"]
    names = {p["name"] for p in paths["/v1/transfers"]["get"].get("parameters", [])}
    assert {"state", "psap_id", "destination_id", "since", "limit", "cursor"} <= names
    text = json.dumps(document["components"])
    for name in ("next_cursor", "summary", "callback_number", "counselor_ref"):
        assert name in text
