"""The live policy service on a real Redis: seeding, versions, reload, rollback, live load."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.errors import NotFound, Unavailable
from gateway.policy import PolicyChange, PolicyInvalid, PolicyService, VersionMismatch
from gateway.policy.decision import Action, DecisionRequest
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import TransferStore

NOON = datetime(2026, 6, 15, 12, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
CLEAR = {
    "weapons": False,
    "violence": False,
    "medical_emergency": False,
    "consent_to_transfer": True,
}


def req(caller_type: str = "first_person", **extra: Any) -> DecisionRequest:
    return DecisionRequest.model_validate(
        {
            "psap_id": "kc-valleycom",
            "caller_type": caller_type,
            "screening": CLEAR,
            "at": NOON.isoformat(),
            **extra,
        }
    )


@pytest.fixture
def make_service(redis: Redis, store: TransferStore, config_dir: Path) -> Any:
    def make() -> PolicyService:
        return PolicyService(redis, config_dir, store.destination_load)

    return make


async def test_seed_once_even_when_two_processes_start_together(make_service: Any) -> None:
    a, b = make_service(), make_service()
    assert a.last_known() is None
    loaded = await asyncio.gather(a.current(), b.current(), a.current(), b.current())
    assert {x.version for x in loaded} == {1}
    versions = await a.versions()
    assert [(v.version, v.actor, v.summary) for v in versions] == [
        (1, "system:config-files", "seeded from config/")
    ]
    assert versions[0].at.tzinfo is not None
    last = a.last_known()
    assert last is not None
    assert last.version == 1


async def test_put_is_seen_by_another_process_on_its_next_decision(make_service: Any) -> None:
    a, b = make_service(), make_service()
    assert (await b.decide(req())).policy_version == 1  # b has version 1 cached
    data = copy.deepcopy((await a.current()).as_json())
    data["policy"]["rules"][0]["chain"] = ["national-988-backup"]
    data["policy"]["rules"][0]["ring_timeout_s"] = 30
    change = await a.put(data, "admin:ops:abc")
    assert (change.version, change.previous_version, change.changed) == (2, 1, True)
    decision = await b.decide(req())
    assert decision.policy_version == 2
    assert [d.id for d in decision.destinations] == ["national-988-backup"]
    assert decision.ring_timeout_s == 30
    versions = await b.versions()
    assert versions[-1].version == 2
    assert versions[-1].actor == "admin:ops:abc"
    assert versions[-1].summary == (
        "policy.rules.first-person.chain: "
        "[crisis-connections-988, wa-988-backup, national-988-backup] → [national-988-backup]; "
        "policy.rules.first-person.ring_timeout_s: 20 → 30"
    )


async def test_rollback_makes_a_new_version_with_old_content(make_service: Any) -> None:
    a, b = make_service(), make_service()
    original = (await a.current()).document
    data = original.model_dump(mode="json")
    data["policy"]["hop_limit"] = 1
    await a.put(data, "admin:ops:abc")
    assert (await b.decide(req(transfers_so_far=1))).reasons == ["hop_limit"]
    assert (await a.rollback(1, "admin:ops:def")).version == 3
    loaded = await b.current()
    assert loaded.version == 3
    assert loaded.document == original
    decision = await b.decide(req(transfers_so_far=1))
    assert decision.action is Action.TRANSFER
    assert decision.policy_version == 3
    last = (await a.versions())[-1]
    assert last.summary == "rollback to version 1: policy.hop_limit: 1 → 2"
    assert last.actor == "admin:ops:def"


async def test_rollback_to_unknown_version(make_service: Any) -> None:
    a = make_service()
    await a.current()
    with pytest.raises(NotFound):
        await a.rollback(9, "admin:ops:abc")
    assert (await a.current()).version == 1


async def test_invalid_put_changes_nothing(make_service: Any, redis: Redis) -> None:
    a, b = make_service(), make_service()
    await a.current()
    before = await redis.hgetall(keys.POLICY_DOCS)
    data = (await a.current()).as_json()
    data["policy"]["exclusions"] = ["weapons"]
    data["destinations"][0]["number"] = "555"
    with pytest.raises(PolicyInvalid) as info:
        await a.put(data, "admin:ops:abc")
    assert {e["path"] for e in info.value.errors} == {"policy.exclusions", "destinations.0.number"}
    assert await redis.get(keys.POLICY_CURRENT) == b"1"
    assert await redis.hgetall(keys.POLICY_DOCS) == before
    assert len(await b.versions()) == 1
    assert (await b.decide(req())).policy_version == 1


async def test_every_change_is_audited(make_service: Any) -> None:
    a = make_service()
    data = (await a.current()).as_json()
    data["policy"]["hop_limit"] = 1
    await a.put(data, "admin:ops:abc")
    await a.rollback(1, "admin:ops:def")
    audit = await a.audit()
    assert [(e["version"], e["action"], e["actor"]) for e in audit] == [
        ("1", "seed", "system:config-files"),
        ("2", "put", "admin:ops:abc"),
        ("3", "rollback", "admin:ops:def"),
    ]
    assert all(datetime.fromisoformat(e["at"]).tzinfo is not None for e in audit)
    assert audit[1]["summary"] == "policy.hop_limit: 2 → 1"


async def test_live_load_from_transfers_in_redis(
    make_service: Any, store: TransferStore, config_dir: Path
) -> None:
    policy = (config_dir / "destinations.yaml").read_text()
    (config_dir / "destinations.yaml").write_text(
        policy.replace(
            "    languages: [en]\n    # Staffed",
            "    languages: [en]\n    max_concurrent: 1\n    # Staffed",
        )
    )
    service = make_service()
    clinicians = (await service.current()).destination("kc-dispatch-clinicians")
    assert clinicians.max_concurrent == 1
    first = await service.decide(req("third_party"))
    assert first.destinations[0].id == "kc-dispatch-clinicians"

    await store.create("t1", psap_id="kc-valleycom", state=TransferState.AWAITING_BRIDGE, fields={})
    await store.transition(
        "t1", TransferEvent.BRIDGED, psap_id="kc-valleycom", occupy="kc-dispatch-clinicians"
    )
    full = await service.decide(req("third_party"))
    assert [d.id for d in full.destinations] == ["crisis-connections-988"]
    assert full.reasons == ["rule:third-party-daytime", "at_capacity:kc-dispatch-clinicians"]


async def test_now_is_used_when_the_request_has_no_instant(make_service: Any) -> None:
    service = make_service()
    undated = req("third_party").model_copy(update={"at": None})
    night = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)  # 03:00 in Seattle
    decision = await service.decide(undated, now=night)
    assert decision.reasons == ["rule:third-party-overnight", "closed:kc-dispatch-clinicians"]


async def test_offline_and_fallback(make_service: Any) -> None:
    service = make_service()
    offline = service.offline()
    assert offline.version == 0
    assert offline.fallback("kc-valleycom").id == "crisis-connections-988"
    await service.current()
    assert service.offline().version == 1
    with pytest.raises(NotFound):
        service.offline().psap("nowhere")


async def test_invalid_files_and_no_version_is_unavailable(
    make_service: Any, config_dir: Path
) -> None:
    (config_dir / "policy.yaml").write_text("policy: {}\n")
    with pytest.raises(Unavailable):
        await make_service().current()


async def test_of_many_edits_from_one_version_exactly_one_commits(
    make_service: Any, redis: Redis
) -> None:
    """Ten edits from version 1 on two processes at once, each with ``if_match=1``, every one
    past the early check (the pool is warm, so all read version 1 before any writes): the check
    and the write are one script, so one commits and nine get ``VersionMismatch``."""
    a, b = make_service(), make_service()
    base = (await a.current()).as_json()
    await b.current()
    await asyncio.gather(*(redis.ping() for _ in range(20)))  # a connection for each edit
    edits = []
    for timeout in range(21, 31):
        data = copy.deepcopy(base)
        data["policy"]["rules"][0]["ring_timeout_s"] = timeout
        edits.append(data)
    results = await asyncio.gather(
        *(
            (a if i % 2 else b).put(data, "admin:ops:abc", if_match=1)
            for i, data in enumerate(edits)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, PolicyChange)]
    lost = [r for r in results if isinstance(r, VersionMismatch)]
    assert (len(won), len(lost)) == (1, 9), results
    assert {e.live_version for e in lost} <= {1, 2}
    assert won[0].version == 2
    assert [v.version for v in await b.versions()] == [1, 2]
    assert (await b.current()).document == won[0].live.document


async def test_versions_written_by_an_older_release_still_list(
    make_service: Any, redis: Redis
) -> None:
    service = make_service()
    await service.current()
    old = {"who": "admin:ops:old", "when": "2026-01-02T03:04:05+00:00", "summary": "x"}
    await redis.hset(keys.POLICY_VERSIONS, "1", json.dumps({**old, "action": "seed"}))
    [listed] = await service.versions()
    assert (listed.actor, listed.at.isoformat(), listed.summary) == (
        "admin:ops:old",
        "2026-01-02T03:04:05+00:00",
        "x",
    )
