"""The handback service's timer and callback handlers against real Redis (the real app's
service), where a race is made to happen rather than hoped for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.core import keys
from gateway.core.legs import Dial
from gateway.core.records import encode_fields
from gateway.core.timers import Timer
from gateway.handback.models import Contact, HandbackAttempt
from gateway.handback.service import (
    DIAL_TIMER,
    HandbackService,
    dial_timer_id,
    expiry_timer_id,
    ring_timer_id,
)
from gateway.handback.states import HandbackState
from gateway.web.appkeys import HANDBACKS

S = HandbackState


def leg_spec(handback_id: str, attempt: int) -> Dial:
    """The handback's PSAP leg of ``attempt``, as the service dials it."""
    return Dial(
        record=keys.handback(handback_id),
        legs=keys.handback_legs(handback_id),
        attempt=attempt,
        conference=handback_id,
        to="+12065550100",
        from_="+12065550199",
        timeout_s=30,
        status_callback="https://gateway.example.test/twilio/participant/handback/x",
        label=f"handback-{attempt}",
    )


async def always() -> bool:
    return True


async def record(
    service: HandbackService, state: HandbackState, **fields: Any
) -> tuple[str, datetime]:
    """A handback record as the service would have written it (the parts these tests use)."""
    handback_id = "hb_" + "d" * 24
    now = datetime.now(UTC)
    await service.store.create(
        handback_id,
        psap_id="kc-valleycom",
        state=state,
        fields=encode_fields(
            mode="data",
            center_org="crisis-connections",
            reason="other",
            eido_id="urn:emergency:uid:incidentid:x:y",
            **fields,
        ),
        eido='{"eidoVersion":"1.0"}',
        now=now,
    )
    return handback_id, now


async def warm(service: HandbackService) -> None:
    """Several pooled connections, so concurrent commands go out at once, in task order."""
    await asyncio.gather(*(service.store.redis.ping() for _ in range(4)))


async def test_an_annotate_between_read_and_transition_does_not_lose_the_expiry(
    client: TestClient[Any, Any],
) -> None:
    service = client.app[HANDBACKS]
    handback_id, now = await record(service, S.AWAITING_BRIDGE, bridge_expires_at=datetime.now(UTC))
    await warm(service)
    contact = encode_fields(contact=Contact(contact_made=True, at=now, recorded_at=now))
    # The handler reads version 1; the contact lands (version 2) before its transition does.
    await asyncio.gather(
        service.on_expiry_timer(expiry_timer_id(handback_id), {"handback_id": handback_id}),
        service.store.annotate(handback_id, event="contact", fields=contact, guards=["contact"]),
    )
    handback = await service.store.get(handback_id)
    assert handback.contact is not None
    assert handback.state is S.EXPIRED, "the expiry was lost to a version conflict"


async def test_a_late_answer_before_the_redial_is_taken(client: TestClient[Any, Any]) -> None:
    service = client.app[HANDBACKS]
    start = datetime.now(UTC)
    redial = start + timedelta(seconds=30)
    handback_id, _ = await record(
        service,
        S.DIALING,
        attempts=[
            HandbackAttempt(started_at=start, outcome="timeout", ended_at=start),
            HandbackAttempt(started_at=redial),
        ],
    )
    await service.timers.arm(
        [Timer(dial_timer_id(handback_id, 2), redial, DIAL_TIMER, {"handback_id": handback_id})]
    )
    await service.answered(handback_id, 1)
    handback = await service.store.get(handback_id)
    assert handback.state is S.CONNECTED
    assert [a.outcome for a in handback.attempts] == ["answered"]
    assert handback.connected_at is not None
    assert await service.timers.due_at(dial_timer_id(handback_id, 2)) is None
    assert await service.timers.due_at(ring_timer_id(handback_id, 2)) is None
    # The redial can never be made now, whatever runs it: a process that read the handback
    # before the answer and goes on to dial attempt 2 finds the dial forgone.
    dialed = await service.dialer.dial(leg_spec(handback_id, 2), wanted=always)
    assert (dialed.kind, dialed.call_sid) == ("dialed", None)


async def test_a_late_answer_after_the_redial_was_made_changes_nothing(
    client: TestClient[Any, Any],
) -> None:
    service = client.app[HANDBACKS]
    start = datetime.now(UTC)
    handback_id, _ = await record(
        service,
        S.DIALING,
        attempts=[
            HandbackAttempt(started_at=start, outcome="timeout", ended_at=start),
            HandbackAttempt(started_at=start),
        ],
    )
    await service.dialer.record(leg_spec(handback_id, 2), "CA" + "2" * 32)  # the redial is out
    await service.answered(handback_id, 1)
    handback = await service.store.get(handback_id)
    assert handback.state is S.DIALING
    assert [a.outcome for a in handback.attempts] == ["timeout", None]
