"""What each console shows, as plain data: pure functions from the API's objects (a decision, a
transfer, a handback, the day's figures) to the words, times and tones a page renders.

No I/O and no HTML here, so every state's wording is tested without a browser
(``tests/test_console_views.py``). Times are shown in the PSAP's timezone; states are in words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.handback.models import HandbackReason, HandbackView, Location, Risk
from gateway.handback.states import HandbackState
from gateway.policy.decision import Action, Decision
from gateway.transfer.models import Attempt, Transfer
from gateway.transfer.states import TransferState

Tone = Literal["info", "live", "ok", "warn", "alarm"]
"""How a line looks: ``alarm`` and ``warn`` stand out; ``live`` is in progress."""

FLAG_LABELS: Mapping[str, str] = {
    "weapons": "Weapons involved",
    "violence": "Violence or threats",
    "medical_emergency": "Medical emergency",
    "attempt_in_progress": "Suicide attempt in progress",
    "severe_intoxication": "Severe intoxication",
    "officer_requested": "Officer requested",
    "imminent_risk": "Imminent risk to life",
    "consent_to_transfer": "Caller consents to transfer",
}
"""The screening questions as the form asks them (DESIGN.md §5 flags)."""

CALLER_TYPES: Mapping[str, str] = {
    "first_person": "First person (the caller is in crisis)",
    "third_party": "Third party (calling about someone)",
    "unknown": "Unknown",
}

OUTCOME_WORDS: Mapping[str, str] = {
    "answered": "answered",
    "busy": "busy",
    "no_answer": "no answer",
    "failed": "call failed",
    "timeout": "no answer in time",
    "cancelled": "cancelled",
    "caller_left": "caller hung up",
}

REASON_WORDS: Mapping[str, str] = {
    HandbackReason.IMMINENT_RISK: "Imminent risk",
    HandbackReason.ATTEMPT_IN_PROGRESS: "Suicide attempt in progress",
    HandbackReason.MEDICAL: "Medical emergency",
    HandbackReason.CALLER_REQUEST: "Caller asked for 911",
    HandbackReason.OTHER: "Other",
}

DISPOSITION_WORDS: Mapping[str, str] = {
    "resolved_by_phone": "Resolved by phone",
    "mobile_crisis_dispatched": "Mobile crisis dispatched",
    "handed_back_to_911": "Handed back to 911",
    "referred": "Referred",
    "caller_disconnected": "Caller disconnected",
    "other": "Other",
}

TRANSFER_STATE_WORDS: Mapping[TransferState, str] = {
    TransferState.NOT_TRANSFERRED: "Stays with 911",
    TransferState.AWAITING_BRIDGE: "Waiting for the bridge call",
    TransferState.RINGING: "Ringing",
    TransferState.CONNECTED: "Connected",
    TransferState.COMPLETED: "Completed",
    TransferState.FAILED: "No counselor reached",
    TransferState.ABANDONED: "Caller hung up",
    TransferState.CANCELLED: "Cancelled",
    TransferState.EXPIRED: "Bridge code expired",
}

HANDBACK_STATE_WORDS: Mapping[HandbackState, str] = {
    HandbackState.AWAITING_BRIDGE: "Waiting for the 988 center's call",
    HandbackState.DIALING: "Dialing your handback line",
    HandbackState.CONNECTED: "Connected to a call-taker",
    HandbackState.COMPLETED: "Call ended",
    HandbackState.FAILED: "Handback line never answered",
    HandbackState.EXPIRED: "988 center never called in",
    HandbackState.ABANDONED: "988 center hung up before an answer",
}


def local_time(at: datetime | None, zone: ZoneInfo) -> str:
    """``14:05:09 PST``: a time in the PSAP's timezone; ``—`` for none."""
    if at is None:
        return "—"
    return at.astimezone(zone).strftime("%H:%M:%S %Z")


def duration(seconds: float) -> str:
    """``12 s``, ``3 min 04 s``, ``2 h 05 min``."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def phone(number: str | None) -> str:
    """An E.164 number as people read it: ``+1 206-555-0123`` for North America, else as is;
    ``no callback number`` for none."""
    if not number:
        return "no callback number"
    if number.startswith("+1") and len(number) == 12:
        digits = number[2:]
        return f"+1 {digits[:3]}-{digits[3:6]}-{digits[6:]}"
    return number


def group_code(code: str) -> str:
    """A bridge code grouped for reading aloud: ``482 913``."""
    return f"{code[:3]} {code[3:]}" if len(code) == 6 else code


# ---- the decision -----------------------------------------------------------------------------


LANGUAGE_NAMES: Mapping[str, str] = {
    "en": "English",
    "es": "Spanish",
    "vi": "Vietnamese",
    "zh": "Chinese",
    "ko": "Korean",
    "ru": "Russian",
    "so": "Somali",
    "uk": "Ukrainian",
    "tl": "Tagalog",
    "am": "Amharic",
    "ar": "Arabic",
}
"""The languages the call-taker picks from, by BCP 47 primary tag, in the order offered."""


def language_words(tag: str) -> str:
    """``es-MX`` → "Spanish (es-MX)", ``en`` → "English"; a tag not listed is shown as is."""
    name = LANGUAGE_NAMES.get(tag.split("-")[0].lower())
    if name is None:
        return tag
    return name if "-" not in tag else f"{name} ({tag})"


@dataclass(frozen=True, slots=True)
class DecisionView:
    """The live decision as the call-taker reads it while filling in the form."""

    transfer: bool
    headline: str
    reasons: list[str]
    chain: list[str]
    """Destination names in the order they will be tried."""
    policy_version: int


def reason_words(code: str, names: Mapping[str, str]) -> str:
    """One reason code of DESIGN.md §5 in words; ``names``: destination id → name."""
    kind, _, arg = code.partition(":")
    label = FLAG_LABELS.get(arg, arg.replace("_", " "))
    if kind == "excluded":
        return f"{label}: yes — such calls stay with 911"
    if kind == "screening_incomplete":
        return f"{label}: not asked — this question must be answered"
    if code == "no_consent":
        return "The caller has not consented to a transfer"
    if code == "hop_limit":
        return "Already transferred the most times allowed (at most three telecommunicators)"
    if kind == "rule":
        return f"Routing rule “{arg}”"
    if kind == "closed":
        return f"{names.get(arg, arg)} is closed now — skipped"
    if kind == "at_capacity":
        return f"{names.get(arg, arg)} is at capacity — skipped"
    return code


def decision_view(decision: Decision, names: Mapping[str, str]) -> DecisionView:
    chain = [d.name for d in decision.destinations]
    transfer = decision.action is Action.TRANSFER
    if transfer:
        headline = (
            "Transfer to " + chain[0] + (f" (then {', '.join(chain[1:])})" if chain[1:] else "")
        )
    else:
        headline = "Keep the call with 911"
    return DecisionView(
        transfer=transfer,
        headline=headline,
        reasons=[reason_words(r, names) for r in decision.reasons],
        chain=chain,
        policy_version=decision.policy_version,
    )


# ---- a transfer's progress ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgressLine:
    text: str
    tone: Tone
    since: datetime | None = None
    """When set, the page counts the seconds since (``— 12 s``) without asking the server."""


@dataclass(frozen=True, slots=True)
class ProgressView:
    """The call-taker's live view of one transfer: the headline, what happened so far, and the
    controls the state allows."""

    id: str
    state: TransferState
    state_words: str
    headline: ProgressLine
    history: list[ProgressLine]
    can_cancel: bool
    can_release: bool
    can_new_code: bool
    terminal: bool
    updated: str
    bridge_expires: str | None = None


def _name(names: Mapping[str, str], destination_id: str) -> str:
    return names.get(destination_id, destination_id)


def _attempt_line(attempt: Attempt, names: Mapping[str, str], zone: ZoneInfo) -> ProgressLine:
    name = _name(names, attempt.destination_id)
    if attempt.outcome is None:
        return ProgressLine(f"Ringing {name}", "live", attempt.started_at)
    words = OUTCOME_WORDS.get(attempt.outcome, attempt.outcome)
    tone: Tone = "ok" if attempt.outcome == "answered" else "warn"
    when = local_time(attempt.ended_at or attempt.started_at, zone)
    return ProgressLine(f"{name}: {words} ({when})", tone)


def progress_view(transfer: Transfer, names: Mapping[str, str], zone: ZoneInfo) -> ProgressView:
    """What the call-taker sees for ``transfer`` in each state (DESIGN.md §3, §10)."""
    state = transfer.state
    attempts = transfer.attempts
    current = attempts[-1] if attempts else None
    previous = [a for a in attempts[:-1]] if current is not None else []
    history = [_attempt_line(a, names, zone) for a in attempts]
    headline: ProgressLine
    if state is TransferState.AWAITING_BRIDGE:
        headline = ProgressLine(
            "Waiting for the bridge call: conference the caller to the bridge number and key in "
            "the code",
            "live",
            transfer.created_at,
        )
    elif state is TransferState.RINGING and current is not None:
        name = _name(names, current.destination_id)
        text = f"Ringing {name}"
        if previous and previous[-1].outcome not in (None, "answered"):
            last = previous[-1]
            words = OUTCOME_WORDS.get(last.outcome or "", "no answer").capitalize()
            text = f"{words} from {_name(names, last.destination_id)} — trying {name}"
        headline = ProgressLine(text, "live", current.started_at)
    elif state is TransferState.CONNECTED:
        name = _name(names, transfer.connected_destination_id or "")
        if transfer.released_at is None:
            headline = ProgressLine(
                f"Connected to {name} — introduce the caller, then release",
                "ok",
                transfer.connected_at,
            )
        else:
            headline = ProgressLine(
                f"Released — the caller is with {name}; you are off this call",
                "ok",
                transfer.connected_at,
            )
    elif state is TransferState.COMPLETED:
        name = _name(names, transfer.connected_destination_id or "")
        headline = ProgressLine(f"Completed — the caller was with {name}", "ok")
    elif state is TransferState.FAILED:
        headline = ProgressLine("No counselor could be reached — the call stays with 911", "alarm")
    elif state is TransferState.ABANDONED:
        headline = ProgressLine("The caller hung up while a counselor was ringing", "warn")
    elif state is TransferState.CANCELLED:
        headline = ProgressLine("Transfer cancelled — the call stays with 911", "warn")
    elif state is TransferState.EXPIRED:
        headline = ProgressLine(
            "The bridge code was never used and has expired — the call stays with 911", "warn"
        )
    else:  # not_transferred
        headline = ProgressLine("Not transferred — the call stays with 911", "info")
    if transfer.released_at is not None:
        history.append(ProgressLine(f"Released at {local_time(transfer.released_at, zone)}", "ok"))
    return ProgressView(
        id=transfer.id,
        state=state,
        state_words=TRANSFER_STATE_WORDS[state],
        headline=headline,
        history=history,
        can_cancel=state in (TransferState.AWAITING_BRIDGE, TransferState.RINGING),
        can_release=state is TransferState.CONNECTED and transfer.released_at is None,
        can_new_code=state is TransferState.AWAITING_BRIDGE,
        terminal=state.terminal,
        updated=local_time(transfer.updated_at, zone),
        bridge_expires=(
            local_time(transfer.bridge_expires_at, zone)
            if state is TransferState.AWAITING_BRIDGE
            else None
        ),
    )


# ---- handbacks -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandbackAlert:
    """One handback as the call-taker's inbox shows it."""

    id: str
    reason: str
    location: str
    location_known: bool
    callback: str
    risk: list[str]
    state_words: str
    received: str
    contact: str | None
    """``None`` until the PSAP answered "contact made" / "could not make contact"."""
    contact_made: bool | None
    confirmed: bool
    overdue: bool
    """No confirmation within the configured time (flag ``unconfirmed``)."""
    cad: str
    tone: Tone
    flags: list[str] = field(default_factory=list)


def location_words(location: Location | None) -> str | None:
    if location is None:
        return None
    parts = [p for p in (location.address, location.description) if p]
    if location.lat is not None and location.lon is not None:
        parts.append(f"{location.lat:.5f}, {location.lon:.5f}")
    return " · ".join(parts) or None


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


CAD_WORDS: Mapping[str, str] = {
    "kept": "kept for you (no CAD link)",
    "pending": "on its way to CAD",
    "delivered": "delivered to CAD",
    "failed": "NOT delivered to CAD",
}


def handback_alert(handback: HandbackView, zone: ZoneInfo) -> HandbackAlert:
    """A handback as ``GET /v1/handbacks/{id}`` shows it to its PSAP, as the inbox shows it."""
    where = location_words(handback.location)
    flags = [str(f) for f in handback.flags]
    confirmed = handback.contact is not None
    overdue = "unconfirmed" in flags and not confirmed
    cad_status = str(handback.cad.status)
    risk = handback.risk or Risk()
    risks = [f"Weapons: {_yes_no(risk.weapons)}", f"Access to means: {_yes_no(risk.means_access)}"]
    if risk.summary:
        risks.append(risk.summary)
    contact: str | None = None
    if handback.contact is not None:
        made = "Contact made" if handback.contact.contact_made else "Could not make contact"
        contact = f"{made} ({local_time(handback.contact.at, zone)})"
    tone: Tone = "ok" if confirmed else ("alarm" if overdue else "warn")
    return HandbackAlert(
        id=handback.id,
        reason=REASON_WORDS.get(handback.reason, str(handback.reason)),
        location=where or "location unknown",
        location_known=where is not None,
        callback=phone(handback.callback_number),
        risk=risks,
        state_words=HANDBACK_STATE_WORDS[handback.state],
        received=local_time(handback.created_at, zone),
        contact=contact,
        contact_made=None if handback.contact is None else handback.contact.contact_made,
        confirmed=confirmed,
        overdue=overdue,
        cad=CAD_WORDS.get(cad_status, cad_status),
        tone=tone,
        flags=flags,
    )


# ---- the supervisor board ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardRow:
    kind: Literal["transfer", "handback"]
    id: str
    psap_id: str
    state_words: str
    detail: str
    since: datetime
    in_state: str
    tone: Tone


@dataclass(frozen=True, slots=True)
class Alarm:
    text: str
    ref: str
    action: str = ""
    """What the supervisor should do about it, in words."""


ACT_STUCK_RINGING = (
    "Have the call-taker cancel the transfer and keep the caller; tell the gateway's "
    "operators (its ring timer should have moved on)."
)
ACT_CHAIN_EXHAUSTED = (
    "Make sure the call-taker is still with the caller; check why the 988 lines did not answer."
)
ACT_UNCONFIRMED = (
    "Find who took the handback and have them record contact in the Handback inbox; if nobody "
    "did, call the caller back now."
)
ACT_NO_CAD = "Enter the incident in CAD by hand from the Handback inbox."
ACT_LINE_UNANSWERED = (
    "The 988 center could not reach your handback line: call the center back now for the "
    "caller's location and callback number."
)


def transfer_row(
    transfer: Transfer, names: Mapping[str, str], now: datetime
) -> tuple[BoardRow, list[Alarm]]:
    """A transfer on the board, and its alarms: ringing past the ring timeout (the gateway's
    own timer should have moved on), a chain exhausted."""
    alarms: list[Alarm] = []
    current = transfer.current_attempt
    detail = ""
    since = transfer.updated_at
    tone: Tone = "live"
    if transfer.state is TransferState.RINGING and current is not None:
        since = current.started_at
        detail = f"{_name(names, current.destination_id)}, attempt {len(transfer.attempts)}"
        ringing_s = (now - current.started_at).total_seconds()
        if ringing_s > transfer.decision.ring_timeout_s:
            tone = "alarm"
            alarms.append(
                Alarm(
                    f"{_name(names, current.destination_id)} ringing {duration(ringing_s)}, past "
                    f"its {transfer.decision.ring_timeout_s} s timeout",
                    transfer.id,
                    ACT_STUCK_RINGING,
                )
            )
    elif transfer.state is TransferState.CONNECTED:
        detail = _name(names, transfer.connected_destination_id or "")
        since = transfer.connected_at or transfer.updated_at
        tone = "ok"
    elif transfer.state is TransferState.FAILED:
        tone = "alarm"
        detail = f"{len(transfer.attempts)} destinations tried"
        alarms.append(
            Alarm(
                "Chain exhausted: no counselor reached, call stays with 911",
                transfer.id,
                ACT_CHAIN_EXHAUSTED,
            )
        )
    elif transfer.state.terminal:
        tone = "info"
    row = BoardRow(
        kind="transfer",
        id=transfer.id,
        psap_id=transfer.psap_id,
        state_words=TRANSFER_STATE_WORDS[transfer.state],
        detail=detail,
        since=since,
        in_state=duration((now - since).total_seconds()),
        tone=tone,
    )
    return row, alarms


def handback_row(handback: HandbackView, now: datetime) -> tuple[BoardRow, list[Alarm]]:
    """A handback on the board, and its alarms: unconfirmed past the configured time, not
    delivered to CAD, the handback line never answered."""
    alarms: list[Alarm] = []
    flags = {str(f) for f in handback.flags}
    tone: Tone = "live" if not handback.state.terminal else "info"
    if "unconfirmed" in flags and handback.contact is None:
        alarms.append(
            Alarm(
                "Handback unconfirmed: nobody recorded contact in time",
                handback.id,
                ACT_UNCONFIRMED,
            )
        )
        tone = "alarm"
    if str(handback.cad.status) == "failed":
        alarms.append(Alarm("Handback not delivered to CAD", handback.id, ACT_NO_CAD))
        tone = "alarm"
    if handback.state is HandbackState.FAILED:
        alarms.append(Alarm("Handback line never answered", handback.id, ACT_LINE_UNANSWERED))
        tone = "alarm"
    row = BoardRow(
        kind="handback",
        id=handback.id,
        psap_id=handback.psap_id,
        state_words=HANDBACK_STATE_WORDS[handback.state],
        detail=REASON_WORDS.get(handback.reason, str(handback.reason)),
        since=handback.updated_at,
        in_state=duration((now - handback.updated_at).total_seconds()),
        tone=tone,
    )
    return row, alarms


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    id: str
    name: str
    open_now: bool
    load: int
    max_concurrent: int | None

    @property
    def load_words(self) -> str:
        if self.max_concurrent is None:
            return f"{self.load} now (no limit)"
        return f"{self.load} of {self.max_concurrent}"

    @property
    def full(self) -> bool:
        return self.max_concurrent is not None and self.load >= self.max_concurrent


def seconds_words(value: float | None) -> str:
    """A figure in seconds as a person reads it: ``15.6023395`` → "16 s"; None → "—"."""
    return "—" if value is None else f"{round(value)} s"


def answer_histogram(histogram: Mapping[str, int]) -> list[tuple[str, int]]:
    """The caller's wait per bucket, in words, from ``GET /v1/reports/summary``'s
    ``answer_time_s.histogram`` (bucket upper bound in seconds → calls, each call once, not
    cumulative; ``gateway.reports.counters.ANSWER_BUCKETS_S``): ``[("up to 5 s", 2),
    ("5 to 10 s", 1), …, ("over 300 s", 0)]``."""
    pairs: list[tuple[str, int]] = []
    low = ""
    for bound, count in histogram.items():
        if bound == "+Inf":
            label = f"over {low} s"
        else:
            label = f"{low} to {bound} s" if low else f"up to {bound} s"
            low = bound
        pairs.append((label, int(count)))
    return pairs


def outcome_counts(summary: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The day's outcomes from ``GET /v1/reports/summary``: where calls ended, in words."""
    pairs = [
        ("Connected", summary.get("connected", 0)),
        ("Kept with 911", summary.get("kept_with_911", 0)),
        ("No counselor reached", summary.get("failed", 0)),
        ("Caller hung up", summary.get("abandoned", 0)),
        ("Cancelled", summary.get("cancelled", 0)),
        ("Code expired", summary.get("expired", 0)),
    ]
    return [(label, int(value or 0)) for label, value in pairs]


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.0f}%"


# ---- the counselor -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounselorCall:
    """A transfer as a 988 center's counselor sees it: the screen-pop context while it rings,
    the connected call with its disposition form, and what a handback form is prefilled with."""

    id: str
    psap_id: str
    psap: str
    destination: str
    headline: ProgressLine
    state_words: str
    caller: str
    language: str
    screening: list[str]
    callback: str
    callback_number: str | None
    received: str
    disposition: str | None
    can_dispose: bool
    can_hand_back: bool


def counselor_call(
    transfer: Transfer,
    names: Mapping[str, str],
    psaps: Mapping[str, str],
    zone: ZoneInfo,
    mine: Iterable[str],
) -> CounselorCall | None:
    """What the counselor console shows for ``transfer``; ``mine``: the ids of the org's
    destinations. None when no destination of the org rings or took the call."""
    ours = set(mine)
    state = transfer.state
    current = transfer.current_attempt
    destination_id: str | None = None
    if state is TransferState.RINGING and current is not None and current.outcome is None:
        if current.destination_id in ours:
            destination_id = current.destination_id
            headline = ProgressLine(
                f"Ringing {_name(names, destination_id)}", "live", current.started_at
            )
    elif transfer.connected_destination_id in ours:
        destination_id = transfer.connected_destination_id
        name = _name(names, destination_id or "")
        if state is TransferState.CONNECTED:
            headline = ProgressLine(f"Connected — {name}", "ok", transfer.connected_at)
        else:
            headline = ProgressLine(f"Call ended — {name}", "info")
    if destination_id is None:
        return None
    screening = [
        f"{FLAG_LABELS[flag]}: {_yes_no(transfer.screening.flag(flag))}"
        for flag in FLAG_LABELS
        if transfer.screening.flag(flag) is not None
    ]
    disposition = None
    if transfer.disposition is not None:
        police = "police involved" if transfer.disposition.police_involved else "no police"
        outcome = DISPOSITION_WORDS.get(transfer.disposition.outcome, "other")
        disposition = f"{outcome} · {police}"
    taken = state in (TransferState.CONNECTED, TransferState.COMPLETED)
    return CounselorCall(
        id=transfer.id,
        psap_id=transfer.psap_id,
        psap=psaps.get(transfer.psap_id, transfer.psap_id),
        destination=_name(names, destination_id),
        headline=headline,
        state_words=TRANSFER_STATE_WORDS[state],
        caller=CALLER_TYPES.get(str(transfer.caller_type), str(transfer.caller_type)),
        language=language_words(transfer.language),
        screening=screening,
        callback=phone(transfer.callback_number),
        callback_number=transfer.callback_number,
        received=local_time(transfer.created_at, zone),
        disposition=disposition,
        can_dispose=taken and transfer.disposition is None,
        can_hand_back=taken,
    )


@dataclass(frozen=True, slots=True)
class CenterHandback:
    """A 988 center's own handback: where it stands and whether the PSAP confirmed contact."""

    id: str
    reason: str
    psap: str
    state_words: str
    contact: str
    received: str
    tone: Tone


def center_handback(view: HandbackView, psaps: Mapping[str, str], zone: ZoneInfo) -> CenterHandback:
    flags = {str(f) for f in view.flags}
    tone: Tone
    if view.contact is not None:
        made = "contact made" if view.contact.contact_made else "could not make contact"
        contact = f"911 confirmed: {made} ({local_time(view.contact.at, zone)})"
        tone = "ok" if view.contact.contact_made else "warn"
    elif "unconfirmed" in flags:
        contact, tone = "911 has not confirmed contact in time", "alarm"
    else:
        contact, tone = "waiting for 911 to confirm contact", "live"
    if view.state is HandbackState.FAILED:
        tone = "alarm"
    return CenterHandback(
        id=view.id,
        reason=REASON_WORDS.get(view.reason, str(view.reason)),
        psap=psaps.get(view.psap_id, view.psap_id),
        state_words=HANDBACK_STATE_WORDS[view.state],
        contact=contact,
        received=local_time(view.created_at, zone),
        tone=tone,
    )
