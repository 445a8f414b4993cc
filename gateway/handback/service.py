"""Handbacks, 988 → 911 (DESIGN.md §4).

A 988 center that finds imminent risk hands the call — or, with no live call, the information —
back to the PSAP:

- **Live**: the caller is in a gateway conference (the transfer is ``connected``). The gateway
  dials the PSAP's ``handback_number`` into that conference; the counselor stays on until a
  call-taker answers. A busy / unanswered / failed dial is retried (``handback_attempts``,
  ``handback_retry_delay_s``, each redial a durable timer); when none answers the handback is
  ``failed``, loudly: an error log, a metric and a signed notice to the center so its
  supervisor acts. The gateway never ends the caller's, the call-taker's or the counselor's leg —
  only a handback leg of its own that rings past the gateway's own ring timer, or that still
  rings when the caller's conference ends (Twilio keeps ringing a leg that had not joined; if
  answered it would start a new, empty conference of the same name), which fails the handback.
- **Data-only**: a bridge code is returned; when the center's phone system keys it in on the
  bridge line, that leg goes into a conference named by the handback id and the PSAP is dialed
  into it the same way.

Either way the incident goes to the PSAP as an EIDO (``gateway.handback.eido``), through a durable
CAD
outbox (a ``cad_delivery`` timer per EIDO, retried with backoff, on whichever instance is up);
without a ``cad_url`` the EIDO is kept for ``GET /v1/handbacks/{id}/eido`` (and
``python -m gateway handbacks eido``). The PSAP confirms contact (``POST …/contact``) and the
center is told; without a confirmation in ``handback_confirm_timeout_s`` the handback is flagged
``unconfirmed`` — once, whichever instance's timer fires, because the flag is a write-once
guarded by the contact itself.

A connected handback ends with its PSAP leg: the leg's own ``completed`` callback, or the
conference's ``participant-leave`` for that leg (the transfer's conference reports to the
transfer's webhook, which passes its events on here). Twilio retries neither, so a connected
handback is also checked every ``connected_check_s`` (``handback_liveness`` timer): once no
conference of its name is in progress, its leg has ended with it.

Every notice to the center (``failed``, ``contact``, ``unconfirmed``) is a durable
``handback_notice`` timer armed in the same script call as the change it reports, so a crash
right after the change loses nothing; its record on the handback is write-once. A transfer has
at most one live handback (a guard key set by the create script, released by the terminal
transition), so a second handback never dials the PSAP again.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from gateway.core import keys
from gateway.core.auth import Principal, Role, require_org, require_role
from gateway.core.errors import Conflict, Forbidden, Invalid
from gateway.core.legs import Dial, Dialer, conference_in_progress
from gateway.core.metrics import Metrics
from gateway.core.paging import DEFAULT_LIMIT, Position
from gateway.core.ports import (
    CadError,
    CadSink,
    Leg,
    NoticeError,
    Notifier,
    Telephony,
    TelephonyError,
)
from gateway.core.records import Tally, encode_fields
from gateway.core.settings import Settings
from gateway.core.tasks import TaskSet
from gateway.core.timers import Timer, TimerHandler, TimerQueue
from gateway.events.entries import EventType, HandbackNews
from gateway.handback.eido import Agency, EidoFacts, build, incident_id
from gateway.handback.models import (
    NOTICE_PREFIX,
    AttemptOutcome,
    Contact,
    ContactRequest,
    Flag,
    Handback,
    HandbackAttempt,
    HandbackPage,
    HandbackRequest,
    HandbackView,
    Notice,
)
from gateway.handback.notices import (
    CALL_ENDED_MESSAGE,
    FAILED_MESSAGE,
    HandbackContact,
    HandbackFailed,
    HandbackNotice,
    HandbackUnconfirmed,
)
from gateway.handback.states import HandbackEvent, HandbackState
from gateway.handback.store import (
    HandbackConflict,
    HandbackNotAllowed,
    HandbackNotFound,
    HandbackStore,
)
from gateway.policy.engine import UnknownPsap
from gateway.policy.models import Destination
from gateway.policy.service import LoadedPolicy, PolicyService
from gateway.reports import counters as reports
from gateway.reports.figures import local_day
from gateway.transfer.models import Transfer, recorded_org
from gateway.transfer.service import DIAL_BACKUP_S, code_digest
from gateway.transfer.states import TransferState
from gateway.transfer.store import TransferNotFound, TransferStore

log = logging.getLogger(__name__)

S = HandbackState
E = HandbackEvent

CAS_TRIES = 8
RING_TIMER = "handback_ring"
DIAL_TIMER = "handback_dial"
EXPIRY_TIMER = "handback_expiry"
CONFIRM_TIMER = "handback_confirm"
CAD_TIMER = "cad_delivery"
NOTICE_TIMER = "handback_notice"
LIVENESS_TIMER = "handback_liveness"
CALL_ENDED = "call_ended"
"""Why a live handback failed when the transfer's call was over before a call-taker answered
(before a dial attempt, or while the handback line rang)."""
LEG_OUTCOMES: Mapping[str, AttemptOutcome] = {
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "timeout",
}
"""An attempt's outcome from its leg's final call status as the provider reports it when
asked: the statuses its own callback would have reported, and ``canceled`` — only the gateway's
ring timer cancels a leg of the current attempt, so its transition is what was lost."""
NOTICE_RETRY_DELAYS_S = (2.0, 10.0, 30.0, 120.0, 300.0)
"""Pauses between deliveries of one notice to a center; after the last, it is flagged."""


def new_handback_id() -> str:
    return "hb_" + secrets.token_hex(12)


def is_handback_id(value: str) -> bool:
    return value.startswith("hb_")


def ring_timer_id(handback_id: str, attempt: int) -> str:
    return f"hbring:{handback_id}:{attempt}"


def dial_timer(handback_id: str, attempt: int, due: datetime) -> Timer:
    """The durable dial of ``attempt``: a redial at ``due``, or the backup of a dial made at
    once (``DIAL_BACKUP_S`` later), should its process die first."""
    return Timer(
        dial_timer_id(handback_id, attempt),
        due,
        DIAL_TIMER,
        {"handback_id": handback_id, "attempt": attempt},
    )


def dial_timer_id(handback_id: str, attempt: int) -> str:
    return f"hbdial:{handback_id}:{attempt}"


def expiry_timer_id(handback_id: str) -> str:
    return f"hbexpire:{handback_id}"


def confirm_timer_id(handback_id: str) -> str:
    return f"hbconfirm:{handback_id}"


def cad_timer_id(handback_id: str) -> str:
    return f"cad:{handback_id}"


def liveness_timer_id(handback_id: str) -> str:
    return f"hblive:{handback_id}"


def notice_timer_id(handback_id: str, kind: str) -> str:
    return f"hbnotice:{handback_id}:{kind}"


def notice_timer(handback_id: str, kind: str, due: datetime, attempt: int = 1) -> Timer:
    """The durable timer that tells the center (``kind``: ``failed``, ``contact``,
    ``unconfirmed``); armed in the same script call as the change it reports."""
    return Timer(
        notice_timer_id(handback_id, kind),
        due,
        NOTICE_TIMER,
        {"handback_id": handback_id, "notice": kind, "attempt": attempt},  # "kind": the timer's
    )


def _closed(
    attempts: list[HandbackAttempt], outcome: AttemptOutcome, now: datetime
) -> list[HandbackAttempt]:
    last = attempts[-1].model_copy(update={"outcome": outcome, "ended_at": now})
    return [*attempts[:-1], last]


def _forgiving(handler: TimerHandler) -> TimerHandler:
    """A timer whose handback has expired from Redis is done, not retried forever."""

    async def run(timer_id: str, payload: Mapping[str, Any]) -> None:
        try:
            await handler(timer_id, payload)
        except HandbackNotFound:
            log.info("timer for a handback that is gone", extra={"timer_id": timer_id})

    return run


def _eido_text(document: Mapping[str, Any]) -> str:
    """The EIDO's bytes as sent: compact JSON (what the CAD adapter posts)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Center:
    """The 988 center a handback comes from: its org, the destination involved, a name."""

    org: str
    destination_id: str
    name: str


def readable_by(principal: Principal) -> bool:
    """Whether ``principal`` sees the fields a call-taker acts on (DESIGN.md §9: the PSAP and
    admins; the center that gave them does not get them back)."""
    return principal.role is not Role.CRISIS_CENTER


class HandbackService:
    def __init__(
        self,
        *,
        store: HandbackStore,
        transfers: TransferStore,
        policy: PolicyService,
        telephony: Telephony,
        dialer: Dialer,
        notifier: Notifier,
        cad: CadSink,
        timers: TimerQueue,
        tasks: TaskSet,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.transfers = transfers
        self.policy = policy
        self.telephony = telephony
        self.dialer = dialer
        self.notifier = notifier
        self.cad = cad
        self.timers = timers
        self.tasks = tasks
        self.settings = settings
        self.metrics = metrics

    @property
    def domain(self) -> str:
        return urlsplit(str(self.settings.public_base_url)).hostname or "gateway.invalid"

    # ---- API ------------------------------------------------------------------------------

    async def open(self, request: HandbackRequest, principal: Principal) -> HandbackView:
        require_role(principal, Role.CRISIS_CENTER)
        loaded = await self.policy.current()
        transfer: Transfer | None = None
        if request.transfer_id is not None:
            transfer = await self.transfers.get(request.transfer_id)
            center = self._transfer_center(loaded, transfer, principal)
            if request.psap_id is not None and request.psap_id != transfer.psap_id:
                raise Invalid(
                    "psap_id is not the transfer's PSAP",
                    [
                        {
                            "path": "psap_id",
                            "message": "must match the transfer's PSAP, or be left out",
                        }
                    ],
                )
            psap_id = transfer.psap_id
        else:
            assert request.psap_id is not None  # the model requires one of the two
            psap_id = request.psap_id
            loaded.psap(psap_id)  # UnknownPsap: 404
            serving = self._serving_destination(loaded, psap_id, principal)
            center = Center(serving.org, serving.id, serving.name)
        psap = loaded.psap(psap_id)
        live = transfer is not None and transfer.state is TransferState.CONNECTED
        now = datetime.now(UTC)
        handback_id = new_handback_id()
        callback = request.callback_number or (transfer.callback_number if transfer else None)
        eido = build(
            EidoFacts(
                handback_id=handback_id,
                domain=self.domain,
                now=now,
                psap=Agency(psap.id, psap.name),
                center=Agency(center.org, center.name),
                reason=request.reason,
                live=live,
                location=request.location,
                callback_number=callback,
                risk=request.risk,
                counselor_ref=request.counselor_ref,
                transfer_id=transfer.id if transfer else None,
                call_started_at=transfer.created_at if transfer else None,
            )
        )
        caller_type = str(transfer.caller_type) if transfer else "unknown"
        day = local_day(now, psap.timezone)
        fields = encode_fields(
            caller_type=caller_type,
            report_day=day,
            mode="live" if live else "data",
            transfer_id=transfer.id if transfer else None,
            center_org=center.org,
            destination_id=center.destination_id,
            reason=str(request.reason),
            callback_number=callback,
            counselor_ref=request.counselor_ref,
            eido_id=incident_id(handback_id, self.domain),
            cad_mode="send" if psap.cad_url else "keep",
        )
        if request.location is not None:
            fields.update(encode_fields(location=request.location))
        fields.update(encode_fields(risk=request.risk))
        timers = [
            Timer(
                confirm_timer_id(handback_id),
                now + timedelta(seconds=self.settings.handback_confirm_timeout_s),
                CONFIRM_TIMER,
                {"handback_id": handback_id},
            )
        ]
        if psap.cad_url:
            timers.append(
                Timer(cad_timer_id(handback_id), now, CAD_TIMER, {"handback_id": handback_id})
            )
        code: str | None = None
        if live:
            state = S.DIALING
            fields.update(encode_fields(attempts=[HandbackAttempt(started_at=now)]))
            timers.append(self._ring_timer(handback_id, 1, now))
            timers.append(dial_timer(handback_id, 1, now + timedelta(seconds=DIAL_BACKUP_S)))
        else:
            state = S.AWAITING_BRIDGE
            code, digest = await self._issue_code(handback_id)
            expires = now + timedelta(seconds=self.settings.bridge_code_ttl_s)
            fields.update(encode_fields(bridge_expires_at=expires, bridge_code_digest=digest))
            timers.append(
                Timer(
                    expiry_timer_id(handback_id),
                    expires,
                    EXPIRY_TIMER,
                    {"handback_id": handback_id},
                )
            )
        await self.store.create(
            handback_id,
            psap_id=psap_id,
            state=state,
            fields=fields,
            eido=_eido_text(eido),
            transfer_id=transfer.id if transfer else None,
            center_org=center.org,
            timers=timers,
            outbox=bool(psap.cad_url),
            tally=Tally(psap_id, day, (reports.counter_field(reports.HANDBACK, caller_type),)),
            news=[]
            if request.location is not None and request.location.known
            else [(EventType.HANDBACK_FLAG, {"flag": str(Flag.LOCATION_UNKNOWN)})],
            actor=principal.actor,
            now=now,
        )
        self.metrics.handbacks.labels("created_live" if live else "created_data").inc()
        log.info(
            "handback created",
            extra={
                "handback_id": handback_id,
                "psap_id": psap_id,
                "transfer_id": transfer.id if transfer else None,
                "mode": "live" if live else "data",
                "location_known": request.location is not None and request.location.known,
            },
        )
        handback = await self.store.get(handback_id)
        if live:
            self.tasks.spawn(
                self._dial(handback_id, 1, first=True), name=f"handback-dial:{handback_id}:1"
            )
            return HandbackView.of(handback)
        return HandbackView.of(
            handback, bridge_code=code, bridge_number=self.settings.bridge_number
        )

    @staticmethod
    def _transfer_center(loaded: LoadedPolicy, transfer: Transfer, principal: Principal) -> Center:
        """The center that took the transfer — by the org recorded for its connected
        destination when the call was decided, so a later policy change neither locks that
        center out nor lets another in; 403 for any other org. The policy only names it."""
        connected = transfer.connected_destination_id
        if connected is not None:
            if recorded_org(loaded, transfer, connected) == principal.org:
                destination = loaded.document.destination(connected)
                name = destination.name if destination is not None else principal.org
                return Center(principal.org, connected, name)
            raise Forbidden("this transfer was not connected to your organization")
        chain = {recorded_org(loaded, transfer, d.id) for d in transfer.decision.destinations}
        if principal.org in chain:
            raise Conflict(
                f"transfer {transfer.id} never connected to your organization; hand back with "
                "psap_id instead",
                [{"state": str(transfer.state)}],
            )
        raise Forbidden("this transfer was not connected to your organization")

    @staticmethod
    def _serving_destination(
        loaded: LoadedPolicy, psap_id: str, principal: Principal
    ) -> Destination:
        """A center serves a PSAP when the PSAP's routing sends calls to at least one of the
        center's destinations (any rule's chain, or its fallback). The first such destination
        with a notify_url (else the first) is where the center's notices go."""
        doc = loaded.document
        psap = loaded.psap(psap_id)
        ids = [d for rule in doc.policy.rules for d in rule.chain] + [psap.fallback_destination]
        ours = [
            dest
            for dest in (doc.destination(i) for i in dict.fromkeys(ids))
            if dest is not None and dest.org == principal.org
        ]
        if not ours:
            raise Forbidden(f"your organization does not serve PSAP {psap_id}")
        return next((d for d in ours if d.notify_url is not None), ours[0])

    async def _issue_code(self, handback_id: str) -> tuple[str, str]:
        for _ in range(20):
            code = f"{secrets.randbelow(1_000_000):06d}"
            digest = code_digest(code)
            if await self.transfers.issue_code(
                digest, handback_id, self.settings.bridge_code_ttl_s
            ):
                return code, digest
        raise Conflict("no free bridge code; try again")  # pragma: no cover

    async def _authorize_read(self, handback: Handback, principal: Principal) -> None:
        if principal.role is Role.CRISIS_CENTER:
            if principal.org != handback.center_org:
                raise Forbidden("this handback belongs to another organization")
            return
        require_org(principal, handback.psap_id)  # admin: any; psap: its own

    async def read(self, handback_id: str, principal: Principal) -> HandbackView:
        """The handback as its reader may see it: the PSAP (its own) and admins with the
        fields a call-taker acts on and a summary line; the center its own, without them."""
        handback = await self.store.get(handback_id)
        await self._authorize_read(handback, principal)
        return HandbackView.of(handback, readable=readable_by(principal))

    async def find(
        self,
        principal: Principal,
        *,
        psap_id: str | None = None,
        start: date | None = None,
        end: date | None = None,
        states: frozenset[HandbackState] = frozenset(),
        since: datetime | None = None,
        before: Position | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> HandbackPage:
        """``GET /v1/handbacks`` (DESIGN.md §9): newest first, paged, each as ``read`` shows it
        to ``principal``: a PSAP its own (``psap_id`` defaults to it; another: 403), a crisis
        center its org's, an admin all. ``start`` / ``end`` are PSAP-local dates, inclusive
        (the day each handback counts on in reports); ``since`` an instant."""
        require_role(principal, Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN)
        if principal.role is Role.PSAP:
            psap_id = psap_id or principal.org
            require_org(principal, psap_id)
        if principal.role is Role.CRISIS_CENTER:
            index = keys.org_handbacks(principal.org)
        elif psap_id is not None:
            index = keys.psap_handbacks(psap_id)
        else:
            index = keys.HANDBACKS_ALL
        first = None if start is None else start.isoformat()
        last = None if end is None else end.isoformat()
        if start is not None and start > date.min:
            # No place's day starts earlier than UTC+14 makes it: older entries cannot match.
            earliest = datetime.combine(start, time(), UTC) - timedelta(hours=14)
            since = earliest if since is None else max(since, earliest)

        def keep(handback: Handback) -> bool:
            if states and handback.state not in states:
                return False
            if psap_id is not None and handback.psap_id != psap_id:
                return False
            if principal.role is Role.CRISIS_CENTER and handback.center_org != principal.org:
                return False
            day = handback.report_day or handback.created_at.date().isoformat()
            return (first is None or day >= first) and (last is None or day <= last)

        found = await self.store.page(index, keep=keep, before=before, since=since, limit=limit)
        readable = readable_by(principal)
        return HandbackPage(
            items=[HandbackView.of(h, readable=readable) for h in found.items],
            next_cursor=found.cursor,
        )

    async def eido(self, handback_id: str, principal: Principal) -> str:
        require_role(principal, Role.PSAP, Role.ADMIN)
        handback = await self.store.get(handback_id)
        require_org(principal, handback.psap_id)
        return await self.store.eido(handback_id)

    async def contact(
        self, handback_id: str, request: ContactRequest, principal: Principal
    ) -> HandbackView:
        require_role(principal, Role.PSAP)
        handback = await self.store.get(handback_id)
        require_org(principal, handback.psap_id)
        now = datetime.now(UTC)
        contact = Contact(
            contact_made=request.contact_made,
            at=request.at or now,
            recorded_at=now,
            note=request.note,
        )
        written = await self.store.annotate(
            handback_id,
            event="contact",
            fields={"contact": contact.model_dump_json()},
            guards=["contact"],
            arm=[notice_timer(handback_id, "contact", now)],
            disarm=[confirm_timer_id(handback_id)],
            news=_contact_news(request.contact_made),
            tallies=(
                _handback_tally(
                    handback,
                    reports.HANDBACK_CONFIRMED
                    if request.contact_made
                    else reports.HANDBACK_NO_CONTACT,
                ),
                # A late confirmation is no longer unconfirmed: the three figures split total.
                _handback_tally(
                    handback, reports.HANDBACK_UNCONFIRMED, amount=-1, when_set="unconfirmed_at"
                ),
            ),
            actor=principal.actor,
            audit={"contact_made": json.dumps(request.contact_made)},
            now=now,
        )
        if written.status == "exists":
            raise Conflict(f"contact is already recorded for handback {handback_id}")
        if not written.ok:
            raise Conflict(f"handback {handback_id} cannot take a contact confirmation now")
        self.metrics.handbacks.labels(
            "contact_made" if request.contact_made else "contact_not_made"
        ).inc()
        log.info(
            "handback contact recorded",
            extra={"handback_id": handback_id, "contact_made": request.contact_made},
        )
        return HandbackView.of(await self.store.get(handback_id), readable=True)

    # ---- the bridge line (data-only) --------------------------------------------------------

    async def bridge(self, handback_id: str, call_sid: str) -> Handback | None:
        """A handback's code was keyed in on the bridge line (``TransferService.redeem`` took
        it: one code space): the center's leg is in, and the handback dials (None when the
        handback is no longer waiting for it)."""
        return await self._bridge(handback_id, call_sid)

    async def _bridge(self, handback_id: str, call_sid: str) -> Handback | None:
        now = datetime.now(UTC)
        for _ in range(CAS_TRIES):
            handback = await self.store.get(handback_id)
            if handback.state is not S.AWAITING_BRIDGE:
                return None
            try:
                await self._apply(
                    handback,
                    E.BRIDGED,
                    fields=encode_fields(
                        attempts=[HandbackAttempt(started_at=now)], bridge_call_sid=call_sid
                    ),
                    arm=[self._ring_timer(handback_id, 1, now)],
                    disarm=[expiry_timer_id(handback_id)],
                    actor="twilio",
                )
            except HandbackConflict:
                continue
            return await self.store.get(handback_id)
        return None

    def start_dialing(self, handback: Handback) -> None:
        """Dial the PSAP — called once the conference TwiML has been returned."""
        self.tasks.spawn(
            self._dial(handback.id, 1, first=True), name=f"handback-dial:{handback.id}:1"
        )

    # ---- dialing the PSAP -------------------------------------------------------------------

    def conference_of(self, handback: Handback) -> str:
        """Live: the transfer's conference (named by the transfer id); data-only: its own."""
        if handback.mode == "live" and handback.transfer_id:
            return handback.transfer_id
        return handback.id

    def _ring_timer(self, handback_id: str, attempt: int, start: datetime) -> Timer:
        due = start + timedelta(
            seconds=self.settings.handback_ring_timeout_s + self.settings.ring_grace_s
        )
        return Timer(
            ring_timer_id(handback_id, attempt),
            due,
            RING_TIMER,
            {"handback_id": handback_id, "attempt": attempt},
        )

    @staticmethod
    def _is_current(handback: Handback, attempt: int) -> bool:
        current = handback.current_attempt
        return (
            handback.state is S.DIALING
            and len(handback.attempts) == attempt
            and current is not None
            and current.outcome is None
        )

    async def _dial(self, handback_id: str, attempt: int, *, first: bool = False) -> float | None:
        """Dial the PSAP's handback line for ``attempt`` (``gateway.core.legs``: a dial made
        once, whatever process dies when); ``first`` is the dial made as the handback starts,
        any other (the durable backup, a redial) asks the provider first whether an earlier
        one went through. Returns None when done, or the seconds after which to look again."""
        handback = await self.store.get(handback_id)
        if not self._is_current(handback, attempt):
            return None
        if not await self._call_still_live(handback):
            await self._call_ended(handback_id, attempt)
            return None
        try:
            psap = (await self.policy.current()).psap(handback.psap_id)
        except UnknownPsap:
            log.error("handback PSAP no longer configured", extra={"handback_id": handback_id})
            await self.attempt_over(handback_id, attempt, "failed")
            return None
        spec = Dial(
            record=keys.handback(handback_id),
            legs=keys.handback_legs(handback_id),
            attempt=attempt,
            conference=self.conference_of(handback),
            to=psap.handback_number,
            from_=self.settings.bridge_number or psap.handback_number,
            timeout_s=self.settings.handback_ring_timeout_s,
            status_callback=self.settings.public_url(
                f"/twilio/participant/handback/{handback_id}?attempt={attempt}"
            ),
            label=f"handback-{attempt}",
        )

        async def wanted() -> bool:
            return self._is_current(await self.store.get(handback_id), attempt)

        dialed = await self.dialer.dial(spec, wanted=wanted, ask_first=not first)
        if dialed.kind in ("busy", "unknown"):
            return dialed.retry_in_s
        if dialed.kind in ("failed", "given_up"):
            log.warning(
                "handback dial failed",
                extra={
                    "handback_id": handback_id,
                    "attempt": attempt,
                    "error": dialed.error or dialed.kind,
                },
            )
            await self.attempt_over(handback_id, attempt, "failed")
            return None
        if dialed.kind == "found" and dialed.leg is not None and dialed.leg.answered:
            await self.answered(handback_id, attempt)
            return None
        if dialed.kind != "placed":
            return None
        # The handback may have moved on while the dial was in flight (the gateway's ring
        # timer, the center hanging up): a leg nobody wants any more is cancelled at once.
        after = await self.store.get(handback_id)
        answered = after.state in (S.CONNECTED, S.COMPLETED) and len(after.attempts) == attempt
        if not (answered or self._is_current(after, attempt)):
            await self._cancel_ringing(handback_id, attempt)
        return None

    @staticmethod
    def _answered_late(handback: Handback, attempt: int) -> bool:
        """``attempt`` was timed out by the gateway's ring timer, and the redial after it is
        scheduled but not yet made: a call-taker answering it now is taken, not dropped."""
        return (
            handback.state is S.DIALING
            and len(handback.attempts) == attempt + 1
            and handback.attempts[attempt - 1].outcome == "timeout"
            and handback.attempts[attempt].outcome is None
        )

    async def _call_still_live(self, handback: Handback) -> bool:
        """Live: the transfer's conference still holds the caller (the transfer is still
        connected). A data-only handback's conference is its own."""
        if handback.mode != "live" or handback.transfer_id is None:
            return True
        try:
            transfer = await self.transfers.get(handback.transfer_id)
        except TransferNotFound:
            return False
        return transfer.state is TransferState.CONNECTED

    async def _call_ended(self, handback_id: str, attempt: int) -> None:
        """The caller's call ended before a call-taker answered (before the PSAP was dialed,
        or while its line rang — that leg is cancelled first): never put a call-taker into an
        empty conference — the handback fails, loudly (the center's notice is armed with the
        transition)."""
        now = datetime.now(UTC)
        for _ in range(CAS_TRIES):
            handback = await self.store.get(handback_id)
            if not self._is_current(handback, attempt):
                return
            try:
                await self._apply(
                    handback,
                    E.EXHAUSTED,
                    fields=encode_fields(
                        attempts=_closed(handback.attempts, "failed", now), failure=CALL_ENDED
                    ),
                    arm=[notice_timer(handback_id, "failed", now)],
                    disarm=[
                        ring_timer_id(handback_id, attempt),
                        dial_timer_id(handback_id, attempt),
                    ],
                    actor="gateway",
                    audit={"outcome": "failed", "failure": CALL_ENDED},
                )
            except HandbackConflict:
                continue
            await self._failed_loudly(await self.store.get(handback_id))
            return

    async def answered(self, handback_id: str, attempt: int) -> None:
        now = datetime.now(UTC)
        redial_stopped = False
        for _ in range(CAS_TRIES):
            handback = await self.store.get(handback_id)
            if self._is_current(handback, attempt):
                attempts = _closed(handback.attempts, "answered", now)
                disarm = [ring_timer_id(handback_id, attempt)]
            elif self._answered_late(handback, attempt):
                # Claiming the redial's dial first means it is never made; if it already was,
                # that newer leg is the handback's now and this answer changes nothing.
                if not redial_stopped:
                    record, legs = keys.handback(handback_id), keys.handback_legs(handback_id)
                    if not await self.dialer.forgo(record, legs, attempt + 1):
                        return
                    redial_stopped = True
                attempts = _closed(handback.attempts[:attempt], "answered", now)
                disarm = [ring_timer_id(handback_id, attempt + 1)]
                disarm.append(dial_timer_id(handback_id, attempt + 1))
                log.warning(
                    "handback line answered after the gateway's ring timer: taken",
                    extra={"handback_id": handback_id, "attempt": attempt},
                )
            else:
                return
            try:
                await self._apply(
                    handback,
                    E.ANSWERED,
                    fields=encode_fields(attempts=attempts, connected_at=now),
                    arm=[self._liveness_timer(handback_id, now)],
                    disarm=disarm,
                    actor="twilio",
                )
            except HandbackConflict:
                continue
            self.metrics.handbacks.labels("connected").inc()
            return

    async def attempt_over(self, handback_id: str, attempt: int, outcome: AttemptOutcome) -> None:
        """The handback line did not answer ``attempt``: redial later, or fail loudly. On the
        gateway's own ring timer (``timeout``) the leg is cancelled first — only while it still
        rings: a leg found answered is the call-taker on the line, and is taken as answered."""
        if outcome == "timeout":
            if not self._is_current(await self.store.get(handback_id), attempt):
                return
            if not await self._cancel_ringing(handback_id, attempt):
                await self.answered(handback_id, attempt)
                return
        now = datetime.now(UTC)
        for _ in range(CAS_TRIES):
            handback = await self.store.get(handback_id)
            if not self._is_current(handback, attempt):
                return
            attempts = _closed(handback.attempts, outcome, now)
            try:
                if attempt < self.settings.handback_attempts:
                    start = now + timedelta(seconds=self.settings.handback_retry_delay_s)
                    attempts.append(HandbackAttempt(started_at=start))
                    await self._apply(
                        handback,
                        E.RETRY,
                        fields=encode_fields(attempts=attempts),
                        arm=[
                            dial_timer(handback_id, attempt + 1, start),
                            self._ring_timer(handback_id, attempt + 1, start),
                        ],
                        disarm=[ring_timer_id(handback_id, attempt)],
                        actor="gateway",
                        audit={"outcome": outcome},
                    )
                else:
                    await self._apply(
                        handback,
                        E.EXHAUSTED,
                        fields=encode_fields(attempts=attempts),
                        arm=[notice_timer(handback_id, "failed", now)],
                        disarm=[ring_timer_id(handback_id, attempt)],
                        actor="gateway",
                        audit={"outcome": outcome},
                    )
            except HandbackConflict:
                continue
            if attempt >= self.settings.handback_attempts:
                await self._failed_loudly(await self.store.get(handback_id))
            return

    async def _failed_loudly(self, handback: Handback) -> None:
        """The error log and the metric; the center's notice was armed with the transition."""
        self.metrics.handbacks.labels("failed").inc()
        log.error(
            "handback failed: the caller's call ended before a call-taker answered"
            if handback.failure == CALL_ENDED
            else "handback failed: the PSAP's handback line did not answer",
            extra={
                "handback_id": handback.id,
                "psap_id": handback.psap_id,
                "transfer_id": handback.transfer_id,
                "attempts": len(handback.attempts),
            },
        )

    async def leg_ended(self, handback_id: str, attempt: int, *, actor: str = "twilio") -> None:
        """The call-taker's leg (``attempt``'s, answered) is over: the handback completes."""
        for _ in range(CAS_TRIES):
            handback = await self.store.get(handback_id)
            if handback.state is not S.CONNECTED or len(handback.attempts) != attempt:
                return
            try:
                await self._apply(
                    handback,
                    E.LEG_ENDED,
                    disarm=[liveness_timer_id(handback_id)],
                    actor=actor,
                )
            except HandbackConflict:
                continue
            return

    # ---- the conference the PSAP's leg is dialed into ---------------------------------------

    async def leg_left(self, handback_id: str, call_sid: str, reason: str) -> None:
        """The leg's conference reported ``participant-leave`` for ``call_sid``. For the
        handback's PSAP leg, after it had joined (not a failed add — its own callback reports
        that), the call-taker's leg is over: a Participants API leg that leaves its conference
        hangs up. Recorded here too, since the leg's ``completed`` callback may be lost."""
        if not call_sid or reason == "participant_add_failed":
            return
        attempt = await self.attempt_of_call(handback_id, call_sid)
        if attempt is None:
            return
        await self.answered(handback_id, attempt)  # it had joined, so it had answered
        await self.leg_ended(handback_id, attempt)

    async def transfer_conference_event(
        self, transfer_id: str, event: str, call_sid: str, reason: str = ""
    ) -> None:
        """An event of a transfer's conference — reported to the transfer's webhook, since the
        caller's leg started it and fixed its status callback — for the transfer's live
        handback, whose PSAP leg is dialed into that conference:

        - ``participant-leave`` of the PSAP leg: the leg is over (``leg_left``);
        - ``conference-end`` while the PSAP is being dialed (or a redial waits): the caller's
          call is over. Twilio keeps ringing a leg that had not joined, and answered it would
          start a new, empty conference of the same name: the gateway cancels it while it
          rings and the handback fails, loudly (a leg found answered is taken as answered);
        - ``conference-end`` while connected: the provider is asked at once whether the leg's
          conference is still in progress (the periodic check, now).
        """
        if event not in ("participant-leave", "conference-end"):
            return
        handback_id = await self.store.live_of_transfer(transfer_id)
        if handback_id is None:
            return
        try:
            handback = await self.store.get(handback_id)
        except HandbackNotFound:
            return
        if self.conference_of(handback) != transfer_id:
            return  # a data-only handback of the transfer: its conference is its own
        if event == "participant-leave":
            await self.leg_left(handback_id, call_sid, reason)
        elif handback.state is S.DIALING:
            self.tasks.spawn(
                self._conference_ended(handback_id), name=f"handback-call-ended:{handback_id}"
            )
        elif handback.state is S.CONNECTED:
            self.tasks.spawn(self.check_leg(handback_id), name=f"handback-check:{handback_id}")

    async def _conference_ended(self, handback_id: str) -> None:
        """The live handback's conference ended while the PSAP was being dialed."""
        handback = await self.store.get(handback_id)
        if handback.state is not S.DIALING or handback.current_attempt is None:
            return
        attempt = len(handback.attempts)
        if not await self._cancel_ringing(handback_id, attempt):
            # Answered as the conference ended: a call-taker is on that line — never hung up.
            await self.answered(handback_id, attempt)
            return
        await self._call_ended(handback_id, attempt)

    def _liveness_timer(self, handback_id: str, now: datetime) -> Timer:
        return Timer(
            liveness_timer_id(handback_id),
            now + timedelta(seconds=self.settings.connected_check_s),
            LIVENESS_TIMER,
            {"handback_id": handback_id},
        )

    async def check_leg(self, handback_id: str) -> bool:
        """A connected handback whose leg's end may not have been reported: when the provider
        has no conference of the leg's name in progress, the leg has ended with it and the
        handback completes. True while it stays connected (the conference lives, or the
        provider cannot say)."""
        handback = await self.store.get(handback_id)
        if handback.state is not S.CONNECTED:
            return False
        conference = self.conference_of(handback)
        if await conference_in_progress(self.telephony, conference, handback_id=handback_id):
            return True
        log.warning("handback leg ended unreported; completing", extra={"handback_id": handback_id})
        await self.leg_ended(handback_id, len(handback.attempts), actor="liveness-check")
        return False

    async def on_liveness_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """The periodic check of a connected handback's leg (Twilio retries no callback)."""
        handback_id = str(payload["handback_id"])
        if await self.check_leg(handback_id):
            await self.timers.arm([self._liveness_timer(handback_id, datetime.now(UTC))])

    # ---- after an outage: what the provider says ---------------------------------------------

    async def reconcile(self) -> int:
        """Ask the provider about the leg of every live handback, and apply what was missed —
        after Redis was unreachable, when status callbacks answered with an error are gone for
        good (Twilio does not retry them), and once at start. Returns the number checked.

        Live handbacks are found through the index the store keeps: each ringing or connected
        transfer's live-handback guard (``keys.xfer_handback``, read for the PSAP's active
        transfers) — no scan. Run before ``TransferService.reconcile``: a transfer it completes
        leaves that index, and its handback would be missed until its own timers.

        Dialing: the caller's conference is over (or the transfer no longer connected) → the
        leg is cancelled while it rings and the handback fails (``call_ended``), as on the
        conference's end; the attempt's leg answered → connected; it ended ``busy``,
        ``no-answer`` or ``failed`` (``canceled``: timed out) → the next attempt or ``failed``, as
        its own callback would; ``completed`` (it answered and hung up unreported) → connected,
        then completed. Connected: the leg has ended → completed. A leg still ringing, a redial
        not yet made, a leg still talking: nothing is written. Every change goes through the
        same guarded transitions as the callbacks, so a reconciliation run twice, or beside a
        late callback, changes nothing twice."""
        loaded = await self.policy.current()
        checked = 0
        for psap in loaded.document.psaps:
            for transfer_id in sorted(await self.transfers.active_for_psap(psap.id)):
                handback_id = await self.store.live_of_transfer(transfer_id)
                if handback_id is None:
                    continue
                try:
                    await self._reconcile_one(handback_id)
                except HandbackNotFound:
                    continue
                except TelephonyError as exc:
                    log.warning(
                        "handback reconcile check failed",
                        extra={"handback_id": handback_id, "error": str(exc)},
                    )
                checked += 1
        return checked

    async def _reconcile_one(self, handback_id: str) -> None:
        handback = await self.store.get(handback_id)
        attempt = len(handback.attempts)
        if handback.state is S.DIALING:
            if not self._is_current(handback, attempt):
                return  # a redial waits for its timer
            if not await self._call_still_live(handback) or (
                handback.mode == "live"
                and not await self.telephony.conference_live(self.conference_of(handback))
            ):
                await self._conference_ended(handback_id)
                return
            leg = await self._attempt_leg(handback, attempt)
            if leg is None or leg.ringing:
                return  # not dialed yet (its dial timer dials), or still ringing
            if leg.answered:
                await self.answered(handback_id, attempt)
            elif leg.status == "completed":
                await self.answered(handback_id, attempt)  # only an answered leg completes
                await self.leg_ended(handback_id, attempt, actor="reconcile")
            else:
                await self.attempt_over(
                    handback_id, attempt, LEG_OUTCOMES.get(leg.status, "failed")
                )
        elif handback.state is S.CONNECTED:
            leg = await self._attempt_leg(handback, attempt)
            if leg is None:
                await self.check_leg(handback_id)
            elif not (leg.answered or leg.ringing):
                await self.leg_ended(handback_id, attempt, actor="reconcile")

    async def _attempt_leg(self, handback: Handback, attempt: int) -> Leg | None:
        """The attempt's leg as the provider reports it now (recorded when found only there);
        None when no dial of it has reached the provider. ``TelephonyError`` when the provider
        cannot say."""
        call_sid = (await self.store.legs(handback.id)).get(f"attempt:{attempt}")
        if call_sid is not None:
            return await self.telephony.call(call_sid)
        leg = await self.telephony.find_participant(
            self.conference_of(handback), f"handback-{attempt}"
        )
        if leg is not None:
            await self.store.set_leg(handback.id, f"attempt:{attempt}", leg.call_sid)
        return leg

    async def center_left(self, handback_id: str) -> None:
        """Data-only: the center's bridge-line leg left while the PSAP rang — cancel the
        ringing handback leg (the gateway's own); nobody else's leg is touched."""
        now = datetime.now(UTC)
        for _ in range(CAS_TRIES):
            handback = await self.store.get(handback_id)
            if handback.state is not S.DIALING:
                return
            attempt = len(handback.attempts)
            current = handback.current_attempt
            attempts = (
                _closed(handback.attempts, "failed", now)
                if current is not None and current.outcome is None
                else handback.attempts
            )
            try:
                await self._apply(
                    handback,
                    E.CALLER_LEFT,
                    fields=encode_fields(attempts=attempts),
                    disarm=[
                        ring_timer_id(handback_id, attempt),
                        dial_timer_id(handback_id, attempt),
                    ],
                    actor="twilio",
                )
            except HandbackConflict:
                continue
            await self._cancel_ringing(handback_id, attempt)
            return

    async def attempt_of_call(self, handback_id: str, call_sid: str) -> int | None:
        for name, sid in (await self.store.legs(handback_id)).items():
            if sid == call_sid and name.startswith("attempt:"):
                return int(name.split(":", 1)[1])
        return None

    async def _cancel_ringing(self, handback_id: str, attempt: int) -> bool:
        """Cancel the attempt's leg while it rings — never hang up a leg that answered: a
        call-taker is on it. False when the leg was found answered (and left alone)."""
        call_sid = (await self.store.legs(handback_id)).get(f"attempt:{attempt}")
        if call_sid is None:
            return True
        try:
            return await self.telephony.cancel_ringing(call_sid)
        except TelephonyError as exc:
            log.warning(
                "handback leg cancel failed", extra={"handback_id": handback_id, "error": str(exc)}
            )
            return True

    # ---- timers -----------------------------------------------------------------------------

    def timer_handlers(self) -> dict[str, TimerHandler]:
        """The durable timers this service owns, by kind (for the app's timer worker)."""
        handlers: dict[str, TimerHandler] = {
            RING_TIMER: self.on_ring_timer,
            DIAL_TIMER: self.on_dial_timer,
            EXPIRY_TIMER: self.on_expiry_timer,
            CONFIRM_TIMER: self.on_confirm_timer,
            CAD_TIMER: self.on_cad_timer,
            NOTICE_TIMER: self.on_notice_timer,
            LIVENESS_TIMER: self.on_liveness_timer,
        }
        return {kind: _forgiving(handler) for kind, handler in handlers.items()}

    async def on_ring_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        await self.attempt_over(str(payload["handback_id"]), int(payload["attempt"]), "timeout")

    async def on_dial_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """A redial, or the durable backup of a dial; looks again later while another
        process's dial is in flight."""
        handback_id, attempt = str(payload["handback_id"]), int(payload["attempt"])
        try:
            again_in = await self._dial(handback_id, attempt)
        except HandbackNotFound:
            return
        if again_in is not None:
            due = datetime.now(UTC) + timedelta(seconds=again_in)
            await self.timers.arm([dial_timer(handback_id, attempt, due)])

    async def on_expiry_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """The bridge code ran out: expire the handback (retried past a concurrent write, such
        as a contact confirmation, that moved its version on)."""
        for _ in range(CAS_TRIES):
            handback = await self.store.get(str(payload["handback_id"]))
            if handback.state is not S.AWAITING_BRIDGE:
                return
            try:
                await self._apply(
                    handback, E.EXPIRE, void_code=handback.bridge_code_digest, actor="timer"
                )
            except HandbackConflict:
                continue
            except HandbackNotAllowed:
                return
            return
        raise HandbackConflict(handback.id, handback.state, handback.version)  # retried later

    async def on_confirm_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """No contact confirmation in time: flag it once (the write is guarded by the flag and
        by the contact), count it, tell the center — only the writer that set the flag acts."""
        handback_id = str(payload["handback_id"])
        now = datetime.now(UTC)
        try:
            before = await self.store.get(handback_id)
        except HandbackNotFound:
            return  # expired with its retention: nothing left to flag
        written = await self.store.annotate(
            handback_id,
            event="unconfirmed",
            fields=encode_fields(unconfirmed_at=now),
            guards=["unconfirmed_at", "contact"],
            arm=[notice_timer(handback_id, "unconfirmed", now)],
            news=[(EventType.HANDBACK_FLAG, {"flag": str(Flag.UNCONFIRMED)})],
            tallies=(_handback_tally(before, reports.HANDBACK_UNCONFIRMED),),
            actor="timer",
            now=now,
        )
        if not written.ok:
            return
        self.metrics.handbacks.labels("unconfirmed").inc()
        log.warning(
            "handback unconfirmed: no contact confirmation from the PSAP",
            extra={"handback_id": handback_id, "psap_id": before.psap_id},
        )

    async def on_cad_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """Deliver one EIDO from the outbox; on failure re-arm this timer with backoff."""
        handback_id = str(payload["handback_id"])
        attempt = int(payload.get("attempt", 1))
        try:
            handback = await self.store.get(handback_id)
        except HandbackNotFound:
            await self.store.leave_outbox(handback_id)
            raise
        if handback.cad_delivered_at is not None or handback.cad_failed_at is not None:
            return
        error: CadError
        try:
            url, secret = await self._cad_endpoint(handback)
            document = json.loads(await self.store.eido(handback_id))
            await self.cad.deliver(url, document, secret=secret, idempotency_key=handback.eido_id)
        except CadError as exc:
            error = exc
        else:
            now = datetime.now(UTC)
            await self.store.annotate(
                handback_id,
                event="cad_delivered",
                fields=encode_fields(cad_delivered_at=now, cad_attempts=attempt),
                guards=["cad_delivered_at"],
                leave_outbox=True,
                actor="gateway",
                now=now,
            )
            self.metrics.cad_deliveries.labels("delivered").inc()
            log.info(
                "EIDO delivered to CAD", extra={"handback_id": handback_id, "attempt": attempt}
            )
            return
        if error.retryable and attempt < self.settings.cad_max_attempts:
            delay = min(
                self.settings.cad_retry_base_s * 2 ** (attempt - 1), self.settings.cad_retry_max_s
            )
            await self.timers.arm(
                [
                    Timer(
                        timer_id,
                        datetime.now(UTC) + timedelta(seconds=delay),
                        CAD_TIMER,
                        {"handback_id": handback_id, "attempt": attempt + 1},
                    )
                ]
            )
            self.metrics.cad_deliveries.labels("retry").inc()
            log.warning(
                "EIDO not delivered to CAD; retrying",
                extra={
                    "handback_id": handback_id,
                    "attempt": attempt,
                    "retry_in_s": delay,
                    "error": str(error),
                },
            )
            return
        now = datetime.now(UTC)
        await self.store.annotate(
            handback_id,
            event="cad_failed",
            fields=encode_fields(cad_failed_at=now, cad_attempts=attempt),
            guards=["cad_delivered_at", "cad_failed_at"],
            leave_outbox=True,
            news=[(EventType.HANDBACK_FLAG, {"flag": str(Flag.CAD_UNDELIVERED)})],
            actor="gateway",
            audit={"error": str(error)},
            now=now,
        )
        self.metrics.cad_deliveries.labels("gave_up").inc()
        log.error(
            "EIDO never reached CAD; kept for GET /v1/handbacks/{id}/eido",
            extra={"handback_id": handback_id, "attempts": attempt, "error": str(error)},
        )

    async def _cad_endpoint(self, handback: Handback) -> tuple[str, str]:
        try:
            psap = (await self.policy.current()).psap(handback.psap_id)
        except UnknownPsap:
            raise CadError("the PSAP is no longer configured", retryable=False) from None
        if psap.cad_url is None:
            raise CadError("the PSAP no longer has a cad_url", retryable=False)
        secret = os.environ.get(psap.cad_secret_env or "", "")
        if not secret:
            log.error("CAD secret missing", extra={"psap_id": psap.id, "env": psap.cad_secret_env})
            raise CadError(f"the CAD secret ({psap.cad_secret_env}) is not set")
        return str(psap.cad_url), secret

    # ---- notices to the 988 center ----------------------------------------------------------

    async def _center_endpoint(self, handback: Handback) -> tuple[str, str] | str:
        """The notify URL and secret of the center's destination involved (else another of
        the org's destinations with one); a reason string when there is none."""
        doc = (await self.policy.current()).document
        involved = doc.destination(handback.destination_id or "")
        # The destination may since have moved to another org: never tell that org.
        candidates = (
            [involved] if involved is not None and involved.org == handback.center_org else []
        )
        candidates += [d for d in doc.destinations if d.org == handback.center_org]
        destination = next((d for d in candidates if d.notify_url is not None), None)
        if destination is None:
            return "the organization has no notify_url"
        secret = os.environ.get(destination.notify_secret_env or "", "")
        if not secret:
            return f"the notify secret ({destination.notify_secret_env}) is not set"
        return str(destination.notify_url), secret

    def _notice(self, handback: Handback, kind: str) -> HandbackNotice:
        """The ``handback.<kind>`` notice for the center (``gateway.handback.notices``)."""
        common: dict[str, Any] = {
            "handback_id": handback.id,
            "transfer_id": handback.transfer_id,
            "psap_id": handback.psap_id,
            "eido_id": handback.eido_id,
            "state": handback.state,
        }
        if kind == "failed":
            call_ended = handback.failure == CALL_ENDED
            return HandbackFailed(
                **common,
                attempts=[a.outcome for a in handback.attempts],
                failure="call_ended" if call_ended else None,
                message=CALL_ENDED_MESSAGE if call_ended else FAILED_MESSAGE,
            )
        if kind == "contact" and handback.contact is not None:
            return HandbackContact(
                **common,
                contact_made=handback.contact.contact_made,
                at=handback.contact.at,
                note=handback.contact.note,
            )
        return HandbackUnconfirmed(
            **common, confirm_within_s=self.settings.handback_confirm_timeout_s
        )

    async def on_notice_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """Send the center its signed ``handback.<kind>`` notice, armed with the change it
        reports so a crash in between loses nothing. Recorded once per kind (write-once); a
        failed delivery is retried with backoff, and after the last try the handback is
        flagged ``center_not_notified`` (as it is at once when the center has no endpoint)."""
        handback_id, kind = str(payload["handback_id"]), str(payload["notice"])
        attempt = int(payload.get("attempt", 1))
        handback = await self.store.get(handback_id)
        if kind in handback.notices:
            return  # already told (or given up on): a timer that ran twice
        payload_out = self._notice(handback, kind).body()
        endpoint = await self._center_endpoint(handback)
        error: str | None = None
        if isinstance(endpoint, str):
            error = endpoint  # nothing a retry changes
        else:
            url, secret = endpoint
            try:
                await self.notifier.send(
                    url, payload_out, secret=secret, idempotency_key=f"{handback.id}:{kind}"
                )
            except NoticeError as exc:
                error = str(exc)
                if attempt <= len(NOTICE_RETRY_DELAYS_S):
                    delay = NOTICE_RETRY_DELAYS_S[attempt - 1]
                    due = datetime.now(UTC) + timedelta(seconds=delay)
                    await self.timers.arm([notice_timer(handback_id, kind, due, attempt + 1)])
                    log.warning(
                        "988 center not told yet; retrying",
                        extra={
                            "handback_id": handback_id,
                            "notice": kind,
                            "attempt": attempt,
                            "retry_in_s": delay,
                            "error": error,
                        },
                    )
                    return
        now = datetime.now(UTC)
        notice = Notice(delivered=error is None, at=now, error=error)
        written = await self.store.annotate(
            handback_id,
            event=f"notice_{kind}",
            fields={f"{NOTICE_PREFIX}{kind}": notice.model_dump_json()},
            guards=[f"{NOTICE_PREFIX}{kind}"],
            news=[]
            if error is None
            else [(EventType.HANDBACK_FLAG, {"flag": str(Flag.CENTER_NOT_NOTIFIED)})],
            actor="gateway",
            audit={"delivered": json.dumps(error is None), "attempt": str(attempt)},
            now=now,
        )
        if error is not None and written.ok:
            self.metrics.notices_failed.labels(f"handback_{kind}").inc()
            # A center without a notice endpoint is the configuration, not a failure: said
            # once per notice as a warning; a delivery that failed every try is an error.
            log.log(
                logging.WARNING if isinstance(endpoint, str) else logging.ERROR,
                "988 center not told"
                + (" (no notice endpoint)" if isinstance(endpoint, str) else ""),
                extra={
                    "handback_id": handback_id,
                    "notice": kind,
                    "attempts": attempt,
                    "error": error,
                },
            )

    # ---- one transition ---------------------------------------------------------------------

    async def _apply(
        self,
        handback: Handback,
        event: HandbackEvent,
        *,
        fields: Mapping[str, str] | None = None,
        arm: list[Timer] | None = None,
        disarm: list[str] | None = None,
        void_code: str | None = None,
        actor: str,
        audit: Mapping[str, str] | None = None,
    ) -> None:
        state = await self.store.transition(
            handback.id,
            event,
            expected_state=handback.state,
            expected_version=handback.version,
            fields=fields,
            arm=arm or (),
            disarm=disarm or (),
            void_code=void_code,
            transfer_id=handback.transfer_id,
            actor=actor,
            audit=audit,
        )
        log.info(
            "handback transition",
            extra={
                "handback_id": handback.id,
                "event": str(event),
                "from_state": str(handback.state),
                "to_state": str(state),
            },
        )


def _contact_news(contact_made: bool) -> list[HandbackNews]:
    """The events a contact confirmation publishes: the contact, and the ``no_contact`` flag
    when emergency services could not make contact."""
    news: list[HandbackNews] = [
        (EventType.HANDBACK_CONTACT, {"contact_made": "true" if contact_made else "false"})
    ]
    if not contact_made:
        news.append((EventType.HANDBACK_FLAG, {"flag": str(Flag.NO_CONTACT)}))
    return news


def _handback_tally(
    handback: Handback, figure: str, *, amount: int = 1, when_set: str | None = None
) -> Tally | None:
    """``figure`` counted on the handback's report day (``None`` for records made before
    handbacks were counted)."""
    if handback.report_day is None:
        return None
    field = reports.counter_field(figure, handback.caller_type)
    return Tally(handback.psap_id, handback.report_day, (field,), amount=amount, when_set=when_set)
