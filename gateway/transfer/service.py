"""Warm transfers, 911 → 988 center or local clinicians (DESIGN.md §3).

The service turns facts — an API call, a bridge code keyed in, a Twilio callback, a timer — into
transitions of the transfer state machine, and only the writer that wins a transition acts on it
(dials the next destination, cancels a ringing leg, announces failure). Duplicated, retried and
out-of-order callbacks therefore change nothing twice: a fact that no longer matches the stored
state (another attempt, another state) is ignored.

The gateway never ends the PSAP/caller leg. It only ever cancels legs it dialed itself, and it
hangs up a counselor's answered leg only when nobody is left to talk to (the caller left) or the
call-taker cancelled the transfer — never because one of its own timers ran out.

What survives what:

- **A process dying.** A dial is recorded as made only once the provider has answered the
  Participants create (the leg's call id). Until then the dialing process holds a short lease;
  the durable dial timer, armed in the same script call as the transition, dials when the lease
  lapses without a call id — after asking the provider whether the earlier create went through,
  so a destination is never dialed twice.
- **Lost callbacks.** Before a ring timer moves an attempt on, the provider is asked for the
  leg's status (an answered leg is ``connected``, not timed out); after Redis was unreachable,
  ``reconcile`` asks it about every ringing and connected transfer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.core import keys
from gateway.core.auth import Principal, Role, require_org, require_role
from gateway.core.errors import Forbidden, Unavailable
from gateway.core.legs import Dial, Dialer, conference_in_progress
from gateway.core.metrics import Metrics
from gateway.core.paging import DEFAULT_LIMIT, Found, Position
from gateway.core.phone import PhoneNumber
from gateway.core.ports import Leg, NoticeError, Notifier, Telephony, TelephonyError
from gateway.core.records import Ops, Tally, encode_fields, write_token
from gateway.core.settings import Settings
from gateway.core.tasks import TaskSet
from gateway.core.timers import Timer, TimerQueue
from gateway.policy.decision import Action, DecisionRequest
from gateway.policy.service import PolicyService
from gateway.reports import counters as reports
from gateway.reports.figures import local_day
from gateway.transfer.models import Attempt, AttemptOutcome, Transfer
from gateway.transfer.notices import ScreenPop
from gateway.transfer.states import TransferEvent, TransferState
from gateway.transfer.store import (
    CodeTaken,
    TransferNotFound,
    TransferStore,
    TransitionConflict,
    TransitionNotAllowed,
)

log = logging.getLogger(__name__)

S = TransferState
E = TransferEvent

CAS_TRIES = 8
RING_TIMER = "ring_timeout"
DIAL_TIMER = "transfer_dial"
DIAL_BACKUP_S = 2.0
"""Every dial is also armed as a durable timer this long after its transition, in case the
process that won the transition dies before its own (immediate) dial. A dial is made under a
lease, and recorded once the provider answered it, so the backup never dials twice."""
RECHECK_S = 2.0
"""When the provider could not say (a leg's status, the caller's presence), ask again this late."""
RING_UNKNOWN_TRIES = 3
"""Times a ring timer asks again when the provider cannot say what the leg is doing, before it
moves on blind: an answered leg whose callbacks were lost must not be timed out for a blip."""
JOIN_GRACE_S = 5.0
"""How long after an attempt starts its conference may still be missing (the caller's TwiML on
its way): past it, a conference that is not live means the caller is not there."""
LIVENESS_TIMER = "conference_liveness"
EXPIRY_TIMER = "bridge_expiry"
ANNOUNCE_TIMER = "transfer_announce"


class TransferRequest(DecisionRequest):
    """``POST /v1/transfers``: the decision's inputs plus the call facts the destination needs."""

    callback_number: PhoneNumber | None = None
    """E.164, or a national number of the PSAP's country; kept and answered in E.164."""


class TransferView(Transfer):
    """What the API answers: the transfer, plus the bridge code while it awaits the bridge."""

    bridge_number: str | None = None
    bridge_code: str | None = None


class ReleaseRequest(BaseModel):
    """``POST /v1/transfers/{id}/release``: no body, or an optional note. Unknown fields are
    422 naming each, as in every other request body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    note: str | None = Field(default=None, max_length=200)


KNOWN_LEGS = 20_000
"""Legs one process remembers (transfer, attempt → call id), so a callback about a leg it
dialed costs no Redis call."""
CODE_DRAWS = 20
"""Codes drawn for a new transfer before giving up (a live code is drawn again)."""
CODE_RE = re.compile(r"[0-9]{6}")


def is_code(digits: str) -> bool:
    """Six ASCII digits: the shape of every bridge code (``str.isdigit`` would also take ``²``
    and Arabic-Indic digits)."""
    return CODE_RE.fullmatch(digits) is not None


NO_CODE = "-"
"""The digest looked up for digits that are no code at all: it opens nothing, and counts a try."""


def code_digest(code: str) -> str:
    return hashlib.sha256(f"bridge-code:{code}".encode()).hexdigest()


def ring_timer_id(transfer_id: str, attempt: int) -> str:
    return f"ring:{transfer_id}:{attempt}"


def expiry_timer_id(transfer_id: str) -> str:
    return f"expire:{transfer_id}"


def dial_timer_id(transfer_id: str, attempt: int) -> str:
    return f"dial:{transfer_id}:{attempt}"


def dial_timer(
    transfer_id: str, attempt: int, now: datetime, *, after_s: float = DIAL_BACKUP_S
) -> Timer:
    return Timer(
        dial_timer_id(transfer_id, attempt),
        now + timedelta(seconds=after_s),
        DIAL_TIMER,
        {"transfer_id": transfer_id, "attempt": attempt},
    )


def liveness_timer_id(transfer_id: str) -> str:
    return f"live:{transfer_id}"


def announce_timer(transfer_id: str, message: str, now: datetime) -> Timer:
    return Timer(
        f"announce:{transfer_id}:{message}",
        now,
        ANNOUNCE_TIMER,
        {"transfer_id": transfer_id, "message": message},
    )


def attempt_label(attempt: int) -> str:
    """The participant label of an attempt's leg: how the provider is asked about a dial whose
    call id was never recorded."""
    return f"attempt-{attempt}"


_LABEL = re.compile(r"attempt-([1-9][0-9]?)")


def attempt_of_label(label: str) -> int | None:
    """The attempt a participant label names (``attempt_label``), or None."""
    found = _LABEL.fullmatch(label)
    return int(found.group(1)) if found else None


def is_transfer_id(value: str) -> bool:
    return value.startswith("tr_")


CALL_OUTCOMES: Mapping[str, AttemptOutcome] = {
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "cancelled",
    "completed": "failed",
}
"""An attempt's outcome from a leg's final call status as the provider reports it when asked
(``completed`` there means the leg answered and hung up before any callback said so: the
caller still needs a counselor)."""


@dataclass(frozen=True, slots=True)
class CodeResult:
    """The outcome of a bridge code keyed in on an inbound call: the transfer it bridged (now
    ringing); or the handback it opens (``handback_id``: the handback service bridges that);
    or nothing, with ``tries`` wrong codes so far on the call."""

    transfer: Transfer | None
    tries: int
    handback_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.transfer is not None


class TransferService:
    def __init__(
        self,
        *,
        store: TransferStore,
        policy: PolicyService,
        telephony: Telephony,
        notifier: Notifier,
        tasks: TaskSet,
        settings: Settings,
        metrics: Metrics,
        timers: TimerQueue,
        dialer: Dialer,
    ) -> None:
        self.store = store
        self.timers = timers
        self.dialer = dialer
        self._legs: OrderedDict[str, str] = OrderedDict()
        """``<transfer>:<attempt>`` → the leg's call id, as this process recorded or learned
        it (string keys: one object to the garbage collector, however many)."""
        self._leg_of: dict[str, str] = {}
        """A known leg's call id → ``<transfer>:<attempt>``."""
        self._leases: dict[str, str] = {}
        """``<transfer>:<attempt>`` → the dial lease its bridge took, for the dial that
        follows."""
        """(transfer, attempt) → the leg's call id, as this process recorded or learned it."""
        self.policy = policy
        self.telephony = telephony
        self.notifier = notifier
        self.tasks = tasks
        self.settings = settings
        self.metrics = metrics

    # ---- API ------------------------------------------------------------------------------

    async def open(self, request: TransferRequest, principal: Principal) -> TransferView:
        require_role(principal, Role.PSAP)
        require_org(principal, request.psap_id)
        now = datetime.now(UTC)
        loaded = await self.policy.current()
        decision = await self.policy.decide(request, now=request.at or now, loaded=loaded)
        transfer_id = "tr_" + secrets.token_hex(12)
        day = local_day(now, loaded.psap(request.psap_id).timezone)
        orgs = {ref.id: loaded.destination(ref.id).org for ref in decision.destinations}
        fields = encode_fields(
            report_day=day,
            destination_orgs=orgs,
            caller_type=request.caller_type,
            language=request.language,
            screening=request.screening,
            tags=request.tags,
            transfers_so_far=request.transfers_so_far,
            decision=decision,
            callback_number=request.callback_number,
        )
        ct = str(request.caller_type)
        if decision.action is Action.STAY_WITH_911:
            kept = [reports.CONSIDERED, reports.KEPT]
            kept += [reports.KEPT_REASON + reason for reason in decision.reasons]
            await self.store.create(
                transfer_id,
                psap_id=request.psap_id,
                state=S.NOT_TRANSFERRED,
                fields=fields,
                tally=Tally(
                    request.psap_id, day, tuple(reports.counter_field(f, ct) for f in kept)
                ),
                destinations=orgs,  # the list indexes it enters (DESIGN.md §9)
                orgs=orgs.values(),
                actor=principal.actor,
                now=now,
            )
            self.metrics.transitions.labels("created", S.NOT_TRANSFERRED).inc()
            kept_with_911 = await self.store.get(transfer_id, fresh=False)  # as just written
            return TransferView.model_validate(kept_with_911.model_dump())

        ttl_s = self.settings.bridge_code_ttl_s
        expires = now + timedelta(seconds=ttl_s)
        for _ in range(CODE_DRAWS):
            # The code is taken in the same call as the record: a live one is drawn again.
            code = f"{secrets.randbelow(1_000_000):06d}"
            digest = code_digest(code)
            try:
                await self.store.create(
                    transfer_id,
                    psap_id=request.psap_id,
                    state=S.AWAITING_BRIDGE,
                    fields={
                        **fields,
                        **encode_fields(bridge_expires_at=expires, bridge_code_digest=digest),
                    },
                    timers=[
                        Timer(
                            expiry_timer_id(transfer_id),
                            expires,
                            EXPIRY_TIMER,
                            {"transfer_id": transfer_id},
                        )
                    ],
                    tally=Tally(
                        request.psap_id,
                        day,
                        tuple(
                            reports.counter_field(f, ct)
                            for f in (reports.CONSIDERED, reports.ELIGIBLE)
                        ),
                    ),
                    code=(digest, ttl_s),
                    destinations=orgs,
                    orgs=orgs.values(),
                    actor=principal.actor,
                    now=now,
                )
            except CodeTaken:
                continue
            self.metrics.transitions.labels("created", S.AWAITING_BRIDGE).inc()
            transfer = await self.store.get(transfer_id, fresh=False)  # as just written
            return TransferView.model_validate(
                {
                    **transfer.model_dump(),
                    "bridge_number": self.settings.bridge_number,
                    "bridge_code": code,
                }
            )
        raise Unavailable("no free bridge code; try again")  # pragma: no cover - 1e6 codes

    async def read(self, transfer_id: str, principal: Principal) -> Transfer:
        transfer = await self.store.get(transfer_id)
        await self.authorize_read(transfer, principal)
        return await self._with_legs(transfer)

    async def find(
        self,
        principal: Principal,
        *,
        states: frozenset[TransferState] = frozenset(),
        psap_id: str | None = None,
        destination_id: str | None = None,
        since: datetime | None = None,
        before: Position | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Found[Transfer]:
        """``GET /v1/transfers`` (DESIGN.md §9): newest first, each as ``GET
        /v1/transfers/{id}`` shows it. A PSAP sees its own (``psap_id`` defaults to its org;
        another: 403), a crisis center the transfers whose chain names one of its org's
        destinations (as recorded when the call was decided), an admin all. Served from the
        most specific index that holds every match; the other filters are applied to the
        records read."""
        require_role(principal, Role.PSAP, Role.CRISIS_CENTER, Role.ADMIN)
        if principal.role is Role.PSAP:
            psap_id = psap_id or principal.org
            require_org(principal, psap_id)
            index = keys.psap_transfers(psap_id)
        elif destination_id is not None:
            index = keys.destination_transfers(destination_id)
        elif principal.role is Role.CRISIS_CENTER:
            index = keys.org_transfers(principal.org)
        elif psap_id is not None:
            index = keys.psap_transfers(psap_id)
        else:
            index = keys.TRANSFERS_ALL
        center = principal.org if principal.role is Role.CRISIS_CENTER else None

        def keep(transfer: Transfer) -> bool:
            if states and transfer.state not in states:
                return False
            if psap_id is not None and transfer.psap_id != psap_id:
                return False
            if destination_id is not None and destination_id not in transfer.destination_orgs:
                return False
            if center is None:
                return True
            if destination_id is not None:
                return transfer.destination_orgs.get(destination_id) == center
            return center in transfer.destination_orgs.values()

        return await self.store.page(index, keep=keep, before=before, since=since, limit=limit)

    async def new_code(self, transfer_id: str, principal: Principal) -> TransferView:
        """``POST /v1/transfers/{id}/code`` (DESIGN.md §9): a new bridge code for the PSAP's
        own transfer while it awaits the bridge, valid ``bridge_code_ttl_s`` from now; the old
        code opens nothing from the answer on (404 unknown, 403 another PSAP's, 409 in any
        other state)."""
        require_role(principal, Role.PSAP)
        ttl_s = self.settings.bridge_code_ttl_s
        for _ in range(CAS_TRIES):
            transfer = await self.store.get(transfer_id)
            require_org(principal, transfer.psap_id)
            if transfer.state is not S.AWAITING_BRIDGE:
                raise TransitionNotAllowed(transfer_id, transfer.state, E.NEW_CODE)
            now = datetime.now(UTC)
            expires = now + timedelta(seconds=ttl_s)
            code = f"{secrets.randbelow(1_000_000):06d}"
            digest = code_digest(code)
            try:
                await self.store.new_code(
                    transfer,
                    (digest, ttl_s),
                    fields=encode_fields(bridge_expires_at=expires, bridge_code_digest=digest),
                    arm=[
                        Timer(
                            expiry_timer_id(transfer_id),
                            expires,
                            EXPIRY_TIMER,
                            {"transfer_id": transfer_id},
                        )
                    ],
                    actor=principal.actor,
                    now=now,
                )
            except (CodeTaken, TransitionConflict):
                continue  # a live code drawn, or the transfer moved meanwhile: look again
            self.metrics.transitions.labels(str(E.NEW_CODE), str(S.AWAITING_BRIDGE)).inc()
            log.info("transfer bridge code reissued", extra={"transfer_id": transfer_id})
            renewed = await self.store.get(transfer_id)
            return TransferView.model_validate(
                {
                    **renewed.model_dump(),
                    "bridge_number": self.settings.bridge_number,
                    "bridge_code": code,
                }
            )
        raise Unavailable("no new bridge code could be issued; try again")

    async def authorize_read(self, transfer: Transfer, principal: Principal) -> None:
        """Admins read everything; a PSAP its own transfers; a crisis center the transfers whose
        chain names one of its destinations (by the orgs recorded when the call was decided, so
        a later policy change neither grants nor removes access)."""
        if principal.role is Role.ADMIN:
            return
        if principal.role is Role.PSAP:
            require_org(principal, transfer.psap_id)
            return
        if principal.org not in transfer.destination_orgs.values():
            raise Forbidden("this transfer was not routed to your organization")

    async def _with_legs(self, transfer: Transfer) -> Transfer:
        legs = await self.store.legs(transfer.id)
        if not legs:
            return transfer
        attempts = [
            a if a.call_sid else a.model_copy(update={"call_sid": legs.get(f"attempt:{i}")})
            for i, a in enumerate(transfer.attempts, start=1)
        ]
        return transfer.model_copy(update={"attempts": attempts})

    async def cancel(self, transfer_id: str, principal: Principal) -> Transfer:
        require_role(principal, Role.PSAP)
        for _ in range(CAS_TRIES):
            transfer = await self.store.get(transfer_id)
            require_org(principal, transfer.psap_id)
            try:
                if transfer.state is S.AWAITING_BRIDGE:
                    await self._apply(
                        transfer,
                        E.CANCEL,
                        disarm=[expiry_timer_id(transfer_id)],
                        void_code=transfer.bridge_code_digest,
                        actor=principal.actor,
                    )
                elif transfer.state is S.RINGING:
                    await self._end_ringing(transfer, E.CANCEL, "cancelled", actor=principal.actor)
                else:
                    raise TransitionNotAllowed(transfer_id, transfer.state, E.CANCEL)
            except TransitionConflict:
                continue
            return await self.store.get(transfer_id)
        raise TransitionConflict(transfer_id, transfer.state, transfer.version)

    async def release(self, transfer_id: str, principal: Principal) -> Transfer:
        """The call-taker left the conference; recorded once, the transfer stays connected."""
        require_role(principal, Role.PSAP)
        for _ in range(CAS_TRIES):
            transfer = await self.store.get(transfer_id)
            require_org(principal, transfer.psap_id)
            if transfer.state is not S.CONNECTED:
                raise TransitionNotAllowed(transfer_id, transfer.state, E.RELEASED)
            if transfer.released_at is not None:
                return transfer
            try:
                await self._apply(
                    transfer,
                    E.RELEASED,
                    fields=encode_fields(released_at=datetime.now(UTC)),
                    actor=principal.actor,
                )
            except TransitionConflict:
                continue
            return await self.store.get(transfer_id)
        raise TransitionConflict(transfer_id, transfer.state, transfer.version)

    # ---- bridge line ------------------------------------------------------------------------

    async def redeem(self, call_sid: str, digits: str) -> CodeResult:
        """A code keyed in on the bridge line (one Redis call: the code, or a wrong try
        counted): the transfer it opens, bridged now (a second call), or the handback it opens,
        or nothing."""
        digest = code_digest(digits) if is_code(digits) else NO_CODE
        redeemed = await self.store.redeem_code(digest, call_sid)
        if redeemed.owner is None:
            return CodeResult(None, redeemed.tries)
        if redeemed.transfer is None:
            return CodeResult(None, 0, handback_id=redeemed.owner)
        transfer = await self._bridge(redeemed.transfer, call_sid)
        return CodeResult(transfer, 0)

    async def _bridge(self, transfer: Transfer, call_sid: str) -> Transfer | None:
        """Put ``transfer`` (as its code was issued, or as this process last saw it) in
        ``ringing`` for the caller on ``call_sid``. What a bridge needs of a transfer never
        changes once it is created, so the write is guarded by its state alone — no read."""
        now = datetime.now(UTC)
        for _ in range(CAS_TRIES):
            if transfer.state is S.RINGING and transfer.psap_call_sid == call_sid:
                return transfer  # this call bridged it already: a repeated request
            if transfer.state is not S.AWAITING_BRIDGE:
                return None
            first = transfer.decision.destinations[0]
            token = write_token()
            try:
                await self._apply(
                    transfer,
                    E.BRIDGED,
                    fields=encode_fields(
                        attempts=[Attempt(destination_id=first.id, started_at=now)],
                        psap_call_sid=call_sid,
                    ),
                    occupy=first.id,
                    arm=[self._ring_timer(transfer, 1, now), dial_timer(transfer.id, 1, now)],
                    disarm=[expiry_timer_id(transfer.id)],
                    actor="twilio",
                    any_version=True,
                    lease=(1, token),
                )
            except TransitionConflict:
                # The answer told this process how the transfer stands now.
                transfer = await self.store.get(transfer.id, fresh=False)
                continue
            self._leases[f"{transfer.id}:1"] = token
            while len(self._leases) > KNOWN_LEGS:  # a bridge whose TwiML never went out
                del self._leases[next(iter(self._leases))]
            return await self.store.get(transfer.id, fresh=False)
        return None

    def start_dialing(self, transfer: Transfer) -> None:
        """Dial the first destination — called once the conference TwiML has been returned."""
        self.tasks.spawn(self._dial(transfer.id, 1, first=True), name=f"dial:{transfer.id}:1")

    def _ring_timer(
        self, transfer: Transfer, attempt: int, now: datetime, *, unknown: int = 0
    ) -> Timer:
        due = now + timedelta(seconds=transfer.decision.ring_timeout_s + self.settings.ring_grace_s)
        return Timer(
            ring_timer_id(transfer.id, attempt),
            due,
            RING_TIMER,
            {"transfer_id": transfer.id, "attempt": attempt, "unknown": unknown},
        )

    def _leg_spec(self, transfer: Transfer, attempt: int) -> Dial:
        ref = transfer.decision.destinations[attempt - 1]
        return Dial(
            record=keys.transfer(transfer.id),
            legs=keys.transfer_legs(transfer.id),
            attempt=attempt,
            conference=transfer.id,
            to=ref.number,
            from_=self.settings.bridge_number or ref.number,
            timeout_s=transfer.decision.ring_timeout_s,
            status_callback=self.settings.public_url(
                f"/twilio/participant/{transfer.id}?attempt={attempt}"
            ),
            label=attempt_label(attempt),
            conference_status_callback=self.settings.public_url(
                f"/twilio/conference/{transfer.id}"
            ),
            backup_timer=dial_timer_id(transfer.id, attempt),
        )

    async def _dial(
        self, transfer_id: str, attempt: int, *, first: bool = False, leased: str | None = None
    ) -> float | None:
        """Dial ``attempt``'s destination into the transfer's conference, unless it needs none
        (``gateway.core.legs``). ``first``: the dial made as the caller's conference TwiML goes
        out; any other (the durable backup, a ring timer, the next destination) first makes
        sure the caller is still in the conference, and asks the provider whether an earlier
        dial went through.

        Returns None when nothing is left to do, or the seconds after which to look again (a
        dial in flight elsewhere, a provider that could not say). The screen pop goes out once
        the provider has answered the dial, never before it.
        """
        if first:
            transfer = await self.view(transfer_id, attempt)
        else:
            transfer = await self.store.get(transfer_id)
        if not self._is_current(transfer, attempt):
            return None
        spec = self._leg_spec(transfer, attempt)
        if not first:
            present = await self._caller_present(transfer)
            if not present and leased is not None:
                await self.dialer.release(spec, leased)  # the durable backup need not wait
            if present is None:
                return RECHECK_S
            if not present:
                log.warning("caller gone before the dial", extra={"transfer_id": transfer_id})
                await self.caller_left(transfer_id, actor="gateway")
                return None

        async def wanted() -> bool:
            return self._is_current(await self.store.get(transfer_id), attempt)

        if first:
            leased = self._leases.pop(f"{transfer_id}:{attempt}", None)
        dialed = await self.dialer.dial(
            spec, wanted=wanted, ask_first=not first and leased is None, leased=leased
        )
        context = {"transfer_id": transfer_id, "attempt": attempt}
        if dialed.kind in ("busy", "unknown"):
            return dialed.retry_in_s
        if dialed.kind in ("failed", "given_up"):
            log.warning("dial failed", extra={**context, "error": dialed.error or dialed.kind})
            await self.attempt_over(transfer_id, attempt, "failed")
            return None
        if dialed.call_sid is not None:
            self._known_leg(transfer_id, attempt, dialed.call_sid)
        if dialed.first:
            self._pop(transfer, attempt)
        if dialed.kind == "found" and dialed.leg is not None:
            log.info("dial found at the provider", extra={**context, "status": dialed.leg.status})
            await self._follow(transfer_id, attempt, dialed.leg, timed_out=False)
            return None
        if dialed.kind != "placed" or dialed.call_sid is None:
            return None  # dialed before, forgone, or no longer wanted
        now = datetime.now(UTC)
        current = transfer.current_attempt
        if current is not None and (now - current.started_at).total_seconds() > DIAL_BACKUP_S:
            # Dialed late (by the backup): the destination gets its whole ring time.
            await self.timers.arm([self._ring_timer(transfer, attempt, now)])
        # The world may have moved while the dial was in flight (a cancel, the caller
        # leaving, the ring timer): a leg that is no longer wanted is cancelled while it rings.
        # (How the transfer stood was read with the leg's record, in the same call.) A leg whose
        # answer was taken already — its callback beat the create's reply — is the counselor
        # talking: never touched.
        still_wanted = dialed.state == S.RINGING and dialed.attempts == attempt and dialed.current
        if not (still_wanted or dialed.answered):
            self._cancel_ringing_leg(transfer_id, dialed.call_sid)
        return None

    async def _caller_present(self, transfer: Transfer) -> bool | None:
        """Whether the caller is still in the transfer's conference: it is live. Not live within
        ``JOIN_GRACE_S`` of the attempt's start may still be the caller joining (None: look
        again); past it, the caller is not there (the TwiML never reached the provider, or the
        caller left with the callbacks lost). None too when the provider cannot say."""
        try:
            if await self.telephony.conference_live(transfer.id):
                return True
        except TelephonyError as exc:
            log.warning(
                "conference check failed", extra={"transfer_id": transfer.id, "error": str(exc)}
            )
            return None
        current = transfer.current_attempt
        since = current.started_at if current is not None else transfer.updated_at
        if (datetime.now(UTC) - since).total_seconds() < JOIN_GRACE_S:
            return None
        return False

    def _pop(self, transfer: Transfer, attempt: int) -> None:
        self.tasks.spawn(self._screen_pop(transfer, attempt), name=f"screen-pop:{transfer.id}")

    async def _follow(self, transfer_id: str, attempt: int, leg: Leg, *, timed_out: bool) -> None:
        """Bring the attempt in line with what the provider says of its leg: answered is
        connected; a final status ends the attempt; still ringing ends it only when the ring
        time is up (``timed_out``)."""
        if leg.answered:
            await self.answered(transfer_id, attempt)
        elif leg.status in CALL_OUTCOMES:
            await self.attempt_over(transfer_id, attempt, CALL_OUTCOMES[leg.status])
        elif timed_out:
            await self.attempt_over(transfer_id, attempt, "timeout")

    async def _screen_pop(self, transfer: Transfer, attempt: int) -> None:
        """The signed transfer context to ``attempt``'s destination (its ``notify_url``), sent
        once its leg exists; the idempotency key is the transfer and attempt, so a receiver
        told twice (two processes learned of the leg) shows it once."""
        destination_id = transfer.decision.destinations[attempt - 1].id
        # The policy this process last loaded (a notice URL changed a moment ago may be missed
        # once; a Redis call on every dial is not worth it).
        loaded = self.policy.last_known() or await self.policy.current()
        destination = loaded.document.destination(destination_id)
        if destination is None or destination.notify_url is None:
            return
        secret = os.environ.get(destination.notify_secret_env or "", "")
        if not secret:
            self.metrics.notices_failed.labels("screen_pop").inc()
            log.error(
                "screen pop secret missing",
                extra={"destination_id": destination_id, "env": destination.notify_secret_env},
            )
            return
        pop = ScreenPop(
            transfer_id=transfer.id,
            psap_id=transfer.psap_id,
            destination_id=destination_id,
            caller_type=transfer.caller_type,
            language=transfer.language,
            screening=transfer.screening,
            callback_number=transfer.callback_number,
            attempt=attempt,
        )
        try:
            await self.notifier.send(
                str(destination.notify_url),
                pop.model_dump(mode="json"),
                secret=secret,
                idempotency_key=f"{transfer.id}:{attempt}",
            )
        except NoticeError as exc:
            self.metrics.notices_failed.labels("screen_pop").inc()
            log.warning(
                "screen pop failed",
                extra={
                    "transfer_id": transfer.id,
                    "destination_id": destination_id,
                    "error": str(exc),
                },
            )

    # ---- callbacks and timers ---------------------------------------------------------------

    async def view(self, transfer_id: str, attempt: int | None = None) -> Transfer:
        """The transfer as this process last saw it — enough to act on a callback, since a
        record only moves forward and every write made from it is guarded by its version —
        read again only when that view is behind what the callback speaks of: still awaiting
        the bridge, or ringing an earlier attempt than ``attempt``. ``TransferNotFound`` when
        Redis has no such transfer."""
        seen = self.store.seen(transfer_id)
        if seen is None:
            return await self.store.get(transfer_id)
        behind = seen.state is S.AWAITING_BRIDGE or (
            attempt is not None and seen.state is S.RINGING and len(seen.attempts) < attempt
        )
        return await self.store.get(transfer_id) if behind else seen

    def _known_leg(self, transfer_id: str, attempt: int, call_sid: str) -> None:
        self._legs[f"{transfer_id}:{attempt}"] = call_sid
        self._legs.move_to_end(f"{transfer_id}:{attempt}")
        self._leg_of[call_sid] = f"{transfer_id}:{attempt}"
        while len(self._legs) > KNOWN_LEGS:
            _, forgotten = self._legs.popitem(last=False)
            self._leg_of.pop(forgotten, None)

    @staticmethod
    def _is_current(transfer: Transfer, attempt: int) -> bool:
        current = transfer.current_attempt
        return (
            transfer.state is S.RINGING
            and len(transfer.attempts) == attempt
            and current is not None
            and current.outcome is None
        )

    @staticmethod
    def _answered_late(transfer: Transfer, attempt: int) -> bool:
        """``attempt`` was moved on from by the gateway's own ring timer (the provider never
        said no), and the transfer still rings for a later one: its answer is taken."""
        return (
            transfer.state is S.RINGING
            and 1 <= attempt < len(transfer.attempts)
            and transfer.attempts[attempt - 1].outcome == "timeout"
        )

    async def answered(self, transfer_id: str, attempt: int) -> None:
        """The leg of ``attempt`` answered: the transfer is connected to its destination —
        also when a ring timer had already moved on to a later destination that still rings
        (that later leg is then cancelled while it rings)."""
        now = datetime.now(UTC)
        for _ in range(CAS_TRIES):
            transfer = await self.view(transfer_id, attempt)
            current = len(transfer.attempts)
            if self._is_current(transfer, attempt):
                attempts = _closed(transfer.attempts, "answered", now)
                superseded = None
            elif self._answered_late(transfer, attempt):
                attempts = _closed(transfer.attempts, "cancelled", now)
                attempts[attempt - 1] = attempts[attempt - 1].model_copy(
                    update={"outcome": "answered", "ended_at": now}
                )
                superseded = current
            else:
                return
            answering = attempts[attempt - 1]
            try:
                await self._apply(
                    transfer,
                    E.ANSWERED,
                    fields=encode_fields(
                        attempts=attempts,
                        connected_destination_id=answering.destination_id,
                        connected_at=now,
                    ),
                    vacate=transfer.attempts[-1].destination_id if superseded else None,
                    occupy=answering.destination_id if superseded else None,
                    arm=[self._liveness_timer(transfer_id, now)],
                    disarm=[ring_timer_id(transfer_id, current)],
                    actor="twilio",
                    answering=transfer.attempts[attempt - 1],
                    now=now,
                )
            except TransitionConflict:
                continue
            if superseded is not None:
                log.info(
                    "late answer taken",
                    extra={"transfer_id": transfer_id, "attempt": attempt, "ringing": current},
                )
                await self._cancel_leg(transfer_id, superseded, hang_up=False)
            return

    async def attempt_over(self, transfer_id: str, attempt: int, outcome: AttemptOutcome) -> None:
        """The destination of ``attempt`` will not answer: dial the next one, or give up."""
        now = datetime.now(UTC)
        for _ in range(CAS_TRIES):
            transfer = await self.view(transfer_id, attempt)
            if not self._is_current(transfer, attempt):
                return
            attempts = _closed(transfer.attempts, outcome, now)
            chain = transfer.decision.destinations
            current = attempts[-1].destination_id
            try:
                if attempt < len(chain):
                    following = chain[attempt]
                    attempts.append(Attempt(destination_id=following.id, started_at=now))
                    token = write_token()
                    await self._apply(
                        transfer,
                        E.NEXT_DESTINATION,
                        fields=encode_fields(attempts=attempts),
                        vacate=current,
                        occupy=following.id,
                        arm=[
                            self._ring_timer(transfer, attempt + 1, now),
                            dial_timer(transfer_id, attempt + 1, now),
                        ],
                        disarm=[ring_timer_id(transfer_id, attempt)],
                        actor="gateway",
                        audit={"outcome": outcome},
                        lease=(attempt + 1, token),
                    )
                    self.tasks.spawn(
                        self._dial(transfer_id, attempt + 1, leased=token),
                        name=f"dial:{transfer_id}:{attempt + 1}",
                    )
                else:
                    # The call-taker is told in audio, by a timer armed with the transition:
                    # the announcement survives the process that decided it.
                    await self._apply(
                        transfer,
                        E.EXHAUSTED,
                        fields=encode_fields(attempts=attempts),
                        vacate=current,
                        arm=[announce_timer(transfer_id, "exhausted", now)],
                        disarm=[ring_timer_id(transfer_id, attempt)],
                        actor="gateway",
                        audit={"outcome": outcome},
                    )
            except TransitionConflict:
                continue
            if outcome == "timeout":
                # The gateway's own timer: cancel the leg while it rings, never hang it up.
                await self._cancel_leg(transfer_id, attempt, hang_up=False)
            return

    async def caller_left(self, transfer_id: str, *, actor: str = "twilio") -> None:
        """The PSAP leg left or the conference ended: a ringing transfer is abandoned and its
        ringing leg cancelled; a connected one completes."""
        for _ in range(CAS_TRIES):
            transfer = await self.view(transfer_id)
            try:
                if transfer.state is S.RINGING:
                    await self._end_ringing(transfer, E.CALLER_LEFT, "caller_left", actor=actor)
                elif transfer.state is S.CONNECTED:
                    await self._apply(
                        transfer,
                        E.CONFERENCE_ENDED,
                        vacate=transfer.connected_destination_id,
                        disarm=[liveness_timer_id(transfer_id)],
                        actor=actor,
                    )
            except TransitionConflict:
                continue
            return

    async def _end_ringing(
        self, transfer: Transfer, event: TransferEvent, outcome: AttemptOutcome, *, actor: str
    ) -> None:
        """Leave ``ringing`` by ``event`` and cancel the leg that was ringing."""
        attempt = len(transfer.attempts)
        now = datetime.now(UTC)
        current = transfer.current_attempt
        attempts = (
            _closed(transfer.attempts, outcome, now)
            if current is not None and current.outcome is None
            else transfer.attempts
        )
        await self._apply(
            transfer,
            event,
            fields=encode_fields(attempts=attempts),
            vacate=current.destination_id if current else None,
            disarm=[ring_timer_id(transfer.id, attempt)],
            actor=actor,
        )
        # The caller left, or the call-taker cancelled: a leg that answered meanwhile would talk
        # to nobody (or to a call-taker who said no), so it is ended too.
        await self._cancel_leg(transfer.id, attempt, hang_up=True)

    async def _cancel_leg(self, transfer_id: str, attempt: int, *, hang_up: bool) -> None:
        """End the leg dialed for ``attempt``: cancel it while it rings; ``hang_up`` also ends
        it once answered. A dial not made yet is forgone, so it never will be."""
        record, legs = keys.transfer(transfer_id), keys.transfer_legs(transfer_id)
        if await self.dialer.forgo(record, legs, attempt):
            return
        call_sid = (await self.store.legs(transfer_id)).get(f"attempt:{attempt}")
        if call_sid is None:
            return  # in flight: its dial cancels it once answered (no longer current)
        if hang_up:
            self.tasks.spawn(
                self.dialer.end(call_sid, transfer_id=transfer_id), name=f"cancel:{transfer_id}"
            )
        else:
            self._cancel_ringing_leg(transfer_id, call_sid)

    def _cancel_ringing_leg(self, transfer_id: str, call_sid: str) -> None:
        self.tasks.spawn(
            self.dialer.cancel_ringing(call_sid, transfer_id=transfer_id),
            name=f"cancel:{transfer_id}",
        )

    async def on_announce_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """Play an announcement to the transfer's conference (the call-taker and the caller)."""
        transfer_id, message = str(payload["transfer_id"]), str(payload["message"])
        url = self.settings.public_url(f"/twilio/conference/{transfer_id}/announce/{message}")
        try:
            await self.telephony.announce(transfer_id, url)
        except TelephonyError as exc:
            log.warning("announce failed", extra={"transfer_id": transfer_id, "error": str(exc)})

    async def on_dial_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """The durable backup of a dial: dials when no process did (see ``_dial``), and looks
        again later while another's dial is in flight."""
        transfer_id, attempt = str(payload["transfer_id"]), int(payload["attempt"])
        try:
            again_in = await self._dial(transfer_id, attempt)
        except TransferNotFound:
            return
        if again_in is not None:
            await self.timers.arm(
                [dial_timer(transfer_id, attempt, datetime.now(UTC), after_s=again_in)]
            )

    async def on_ring_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """The destination's ring time is up. Twilio's word comes first: a leg in progress is
        connected, a leg that ended ends the attempt with its own outcome, and an attempt whose
        dial never reached the provider is dialed now with its whole ring time. When the
        provider cannot say, it is asked again (``RING_UNKNOWN_TRIES`` times) before the attempt
        is moved on blind — never ending a chain on a blip."""
        transfer_id, attempt = str(payload["transfer_id"]), int(payload["attempt"])
        unknown = int(payload.get("unknown", 0))
        try:
            transfer = await self.store.get(transfer_id)
        except TransferNotFound:
            return
        if not self._is_current(transfer, attempt):
            return
        try:
            leg = await self._leg(transfer_id, attempt)
        except TelephonyError as exc:
            log.warning(
                "leg status unknown at ring timeout",
                extra={"transfer_id": transfer_id, "attempt": attempt, "error": str(exc)},
            )
            if unknown < RING_UNKNOWN_TRIES:
                soon = datetime.now(UTC) - timedelta(
                    seconds=transfer.decision.ring_timeout_s
                    + self.settings.ring_grace_s
                    - RECHECK_S
                )
                await self.timers.arm(
                    [self._ring_timer(transfer, attempt, soon, unknown=unknown + 1)]
                )
            else:
                await self.attempt_over(transfer_id, attempt, "timeout")
            return
        if leg is None:
            again_in = await self._dial(transfer_id, attempt)
            due = datetime.now(UTC) + timedelta(seconds=again_in or 0)
            await self.timers.arm([self._ring_timer(transfer, attempt, due)])
            return
        await self._follow(transfer_id, attempt, leg, timed_out=True)

    async def _leg(self, transfer_id: str, attempt: int) -> Leg | None:
        """The attempt's leg as the provider reports it now (recorded when found only there);
        None when no dial of it has reached the provider (or one is in flight).
        ``TelephonyError`` when the provider cannot say."""
        call_sid = (await self.store.legs(transfer_id)).get(f"attempt:{attempt}")
        if call_sid is not None:
            return await self.telephony.call(call_sid)
        leg = await self.telephony.find_participant(transfer_id, attempt_label(attempt))
        if leg is not None:
            await self.store.set_leg(transfer_id, f"attempt:{attempt}", leg.call_sid)
        return leg

    async def reconcile(self) -> int:
        """Ask the provider about every ringing and connected transfer, and apply what was
        missed — after Redis was unreachable, when status callbacks answered with an error are
        gone for good (Twilio does not retry them). Returns the number of transfers checked.

        Ringing: the caller's leg ended → abandoned; the attempt's leg answered → connected,
        ended → the next destination. Connected: the caller's leg or the conference is over →
        completed.
        """
        loaded = await self.policy.current()
        checked = 0
        for psap in loaded.document.psaps:
            for transfer_id in sorted(await self.store.active_for_psap(psap.id)):
                try:
                    await self._reconcile_one(transfer_id)
                except TransferNotFound:
                    continue
                except TelephonyError as exc:
                    log.warning(
                        "reconcile check failed",
                        extra={"transfer_id": transfer_id, "error": str(exc)},
                    )
                checked += 1
        return checked

    async def _reconcile_one(self, transfer_id: str) -> None:
        transfer = await self.store.get(transfer_id)
        if transfer.state not in (S.RINGING, S.CONNECTED):
            return
        if transfer.psap_call_sid:
            caller = await self.telephony.call(transfer.psap_call_sid)
            if not (caller.answered or caller.ringing):
                await self.caller_left(transfer_id, actor="reconcile")
                return
        if transfer.state is S.CONNECTED:
            if not await self.telephony.conference_live(transfer_id):
                await self.caller_left(transfer_id, actor="reconcile")
            return
        attempt = len(transfer.attempts)
        leg = await self._leg(transfer_id, attempt)
        if leg is not None:
            await self._follow(transfer_id, attempt, leg, timed_out=False)

    def _liveness_timer(self, transfer_id: str, now: datetime) -> Timer:
        return Timer(
            liveness_timer_id(transfer_id),
            now + timedelta(seconds=self.settings.connected_check_s),
            LIVENESS_TIMER,
            {"transfer_id": transfer_id},
        )

    async def on_liveness_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        """A connected transfer whose conference the provider no longer has in progress missed
        its conference-end callback: complete it, so the destination's capacity is freed. While
        the conference lives (or the provider cannot say), look again later."""
        transfer_id = str(payload["transfer_id"])
        try:
            transfer = await self.store.get(transfer_id)
        except TransferNotFound:
            return
        if transfer.state is not S.CONNECTED:
            return
        if await conference_in_progress(self.telephony, transfer_id, transfer_id=transfer_id):
            await self.timers.arm([self._liveness_timer(transfer_id, datetime.now(UTC))])
            return
        log.warning("conference ended unreported; completing", extra={"transfer_id": transfer_id})
        await self.caller_left(transfer_id, actor="liveness-check")

    async def on_expiry_timer(self, timer_id: str, payload: Mapping[str, Any]) -> None:
        transfer_id = str(payload["transfer_id"])
        transfer = await self.store.get(transfer_id)
        if transfer.state is not S.AWAITING_BRIDGE:
            return
        try:
            await self._apply(
                transfer, E.EXPIRE, void_code=transfer.bridge_code_digest, actor="timer"
            )
        except (TransitionConflict, TransitionNotAllowed):
            return  # it moved on meanwhile

    async def stray_leg(self, transfer_id: str, attempt: int, call_sid: str) -> None:
        """A leg reported alive that no attempt wants (its attempt ended, or the transfer moved
        on while its dial was in flight): cancel it while it rings, so no counselor picks up a
        dead line. An answered one is hung up only when the caller left or the call-taker
        cancelled; otherwise (a ring timer moved on, another counselor answered first) the
        counselor who picked up stays: the gateway never ends a leg that is talking because of
        its own timers."""
        transfer = await self.view(transfer_id, attempt)
        if self._is_current(transfer, attempt):
            return
        if 1 <= attempt <= len(transfer.attempts) and (
            transfer.attempts[attempt - 1].outcome == "answered"
        ):
            return  # the connected counselor
        if transfer.state in (S.ABANDONED, S.CANCELLED):
            await self.dialer.end(call_sid, transfer_id=transfer_id)
        else:
            await self.dialer.cancel_ringing(call_sid, transfer_id=transfer_id)

    async def note_leg(self, transfer_id: str, name: str, sid: str) -> None:
        await self.store.set_leg(transfer_id, name, sid)

    async def leg_seen(self, transfer_id: str, attempt: int, call_sid: str) -> None:
        """The provider reported ``attempt``'s leg: recorded if no process had (its dialer died
        before the create answered), and then its screen pop goes out — whoever learns of a
        leg first sends it, so a counselor is never rung without one. A leg this process
        already knows costs nothing."""
        if self._legs.get(f"{transfer_id}:{attempt}") == call_sid:
            return
        if await self.store.set_leg(transfer_id, f"attempt:{attempt}", call_sid):
            transfer = await self.view(transfer_id)
            if 1 <= attempt <= len(transfer.decision.destinations):
                self._pop(transfer, attempt)
        self._known_leg(transfer_id, attempt, call_sid)

    async def attempt_of_call(self, transfer_id: str, call_sid: str, label: str = "") -> int | None:
        """Which attempt's leg ``call_sid`` is: from the participant's ``label`` when the
        provider gives it (``attempt-<n>``, as the gateway labels its dials), else from what
        this process knows, else from the recorded legs. None when it is none of them."""
        if (attempt := attempt_of_label(label)) is not None:
            return attempt
        known_transfer, _, attempt_text = self._leg_of.get(call_sid, "").rpartition(":")
        if known_transfer == transfer_id:
            return int(attempt_text)
        for name, sid in (await self.store.legs(transfer_id)).items():
            if sid == call_sid and name.startswith("attempt:"):
                return int(name.split(":", 1)[1])
        return None

    # ---- one transition ---------------------------------------------------------------------

    async def _apply(
        self,
        transfer: Transfer,
        event: TransferEvent,
        *,
        fields: Mapping[str, str] | None = None,
        vacate: str | None = None,
        occupy: str | None = None,
        arm: list[Timer] | None = None,
        disarm: list[str] | None = None,
        void_code: str | None = None,
        actor: str,
        audit: Mapping[str, str] | None = None,
        answering: Attempt | None = None,
        any_version: bool = False,
        lease: tuple[int, str] | None = None,
        now: datetime | None = None,
    ) -> None:
        """One transition of ``transfer`` by ``event`` (see ``TransferStore.transition``), with
        the report counters it bumps; ``answering`` is the attempt that answered (an ``answered``
        event; the current one by default)."""
        now = now or datetime.now(UTC)
        answering = answering or transfer.current_attempt
        also = None
        if lease is not None:
            spec, token = self._leg_spec(transfer, lease[0]), lease[1]

            def also(ops: Ops) -> None:
                self.dialer.lease_ops(ops, spec, token)

        result = await self.store.transition(
            transfer.id,
            event,
            psap_id=transfer.psap_id,
            expected_state=transfer.state,
            expected_version=None if any_version else transfer.version,
            fields=fields,
            vacate=vacate,
            occupy=occupy,
            arm=arm or (),
            disarm=disarm or (),
            void_code=void_code,
            tally=_tally(
                transfer, event, occupy=occupy, vacate=vacate, answering=answering, now=now
            ),
            also=also,
            actor=actor,
            audit=audit,
            now=now,
        )
        self.metrics.transitions.labels(str(event), str(result.state)).inc()
        if event is E.ANSWERED and transfer.attempts:
            waited = (now - transfer.attempts[0].started_at).total_seconds()
            self.metrics.answer_time.observe(waited)
        log.info(
            "transfer transition",
            extra={
                "transfer_id": transfer.id,
                "event": str(event),
                "from_state": str(transfer.state),
                "to_state": str(result.state),
            },
        )


# The report figure each event counts (gateway.reports.counters), and whose destination it concerns.
_FIGURES: Mapping[TransferEvent, tuple[str, Literal["occupy", "current", "vacate", "none"]]] = {
    E.BRIDGED: (reports.OFFERED, "occupy"),
    E.NEXT_DESTINATION: (reports.OFFERED, "occupy"),
    E.ANSWERED: (reports.CONNECTED, "current"),
    E.EXHAUSTED: (reports.FAILED, "none"),
    E.CALLER_LEFT: (reports.ABANDONED, "vacate"),
    E.CANCEL: (reports.CANCELLED, "vacate"),
    E.EXPIRE: (reports.EXPIRED, "none"),
    E.CONFERENCE_ENDED: (reports.COMPLETED, "vacate"),
}


def _tally(
    transfer: Transfer,
    event: TransferEvent,
    *,
    occupy: str | None,
    vacate: str | None,
    answering: Attempt | None,
    now: datetime,
) -> Tally | None:
    """The counters ``event`` bumps, in the same script call as the transition itself."""
    if event not in _FIGURES or transfer.report_day is None:
        return None
    figure, whose = _FIGURES[event]
    current = answering if event is E.ANSWERED else transfer.current_attempt
    destination = {
        "occupy": occupy,
        "vacate": vacate,
        "current": current.destination_id if current else None,
        "none": None,
    }[whose]
    ct = str(transfer.caller_type)
    fields = [reports.counter_field(figure, ct, destination)]
    answers: tuple[tuple[str, float], ...] = ()
    if event is E.ANSWERED and current is not None:
        if transfer.attempts.index(current) > 0:
            fields.append(reports.counter_field(reports.VIA_BACKUP, ct, destination))
        dest = current.destination_id
        waited = (now - transfer.attempts[0].started_at).total_seconds()
        fields.append(reports.counter_field(reports.answer_bucket(waited), ct, destination))
        answers = (
            (reports.answer_member(ct, dest, transfer.id), waited),
            (
                reports.attempt_member(ct, dest, transfer.id),
                (now - current.started_at).total_seconds(),
            ),
        )
    return Tally(transfer.psap_id, transfer.report_day, tuple(fields), answers)


def _closed(attempts: list[Attempt], outcome: AttemptOutcome, now: datetime) -> list[Attempt]:
    """``attempts`` with the last one closed with ``outcome``."""
    last = attempts[-1].model_copy(update={"outcome": outcome, "ended_at": now})
    return [*attempts[:-1], last]
