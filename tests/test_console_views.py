"""What each console shows for each state, as data: no browser, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.console import charts, views
from gateway.handback.models import Contact, Handback, HandbackView, Location, Risk
from gateway.handback.states import HandbackState
from gateway.policy.decision import Decision
from gateway.reports import counters
from gateway.transfer.models import Attempt, Transfer
from gateway.transfer.states import TransferState

ZONE = ZoneInfo("America/Los_Angeles")
T0 = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)  # 12:00:00 PST
NAMES = {"cc": "Crisis Connections", "wa": "WA 988 backup", "kc": "KC clinicians"}
DECISION = {
    "action": "transfer",
    "destinations": [
        {"id": "cc", "kind": "988_center", "name": "Crisis Connections", "number": "+12065550188"},
        {"id": "wa", "kind": "988_center", "name": "WA 988 backup", "number": "+13605550188"},
    ],
    "ring_timeout_s": 20,
    "reasons": ["rule:first-person"],
    "policy_version": 3,
}


def transfer(state: TransferState, attempts: list[Attempt] | None = None, **extra: Any) -> Transfer:
    return Transfer.model_validate(
        {
            "id": "tr_" + "a" * 24,
            "state": state,
            "version": 1,
            "psap_id": "kc-valleycom",
            "caller_type": "first_person",
            "decision": DECISION,
            "attempts": [a.model_dump() for a in attempts or []],
            "created_at": T0,
            "updated_at": T0 + timedelta(seconds=30),
            **extra,
        }
    )


def ringing(destination: str, at: datetime, outcome: str | None = None) -> Attempt:
    return Attempt.model_validate(
        {
            "destination_id": destination,
            "started_at": at,
            "outcome": outcome,
            "ended_at": at + timedelta(seconds=20) if outcome else None,
        }
    )


def test_times_are_in_the_psaps_zone_and_durations_in_words() -> None:
    assert views.local_time(T0, ZONE) == "12:00:00 PST"
    assert views.local_time(None, ZONE) == "—"
    assert views.duration(12.7) == "12 s"
    assert views.duration(184) == "3 min 04 s"
    assert views.duration(7500) == "2 h 05 min"
    assert views.phone("+12065550123") == "+1 206-555-0123"
    assert views.phone("+442071234567") == "+442071234567"
    assert views.phone(None) == "no callback number"
    assert views.group_code("482913") == "482 913"


def test_a_transfer_decision_names_the_chain_and_the_rule() -> None:
    view = views.decision_view(Decision.model_validate(DECISION), NAMES)
    assert view.transfer
    assert view.headline == "Transfer to Crisis Connections (then WA 988 backup)"
    assert view.reasons == ["Routing rule “first-person”"]


def test_a_kept_call_gives_every_reason_in_words() -> None:
    kept = Decision.model_validate(
        {
            "action": "stay_with_911",
            "destinations": [],
            "ring_timeout_s": 20,
            "reasons": [
                "excluded:weapons",
                "screening_incomplete:medical_emergency",
                "no_consent",
                "hop_limit",
                "closed:kc",
                "at_capacity:cc",
                "something_new",
            ],
            "policy_version": 3,
        }
    )
    view = views.decision_view(kept, NAMES)
    assert not view.transfer
    assert view.headline == "Keep the call with 911"
    assert view.reasons == [
        "Weapons involved: yes — such calls stay with 911",
        "Medical emergency: not asked — this question must be answered",
        "The caller has not consented to a transfer",
        "Already transferred the most times allowed (at most three telecommunicators)",
        "KC clinicians is closed now — skipped",
        "Crisis Connections is at capacity — skipped",
        "something_new",
    ]


def test_awaiting_the_bridge_offers_cancel_and_a_new_code() -> None:
    view = views.progress_view(
        transfer(TransferState.AWAITING_BRIDGE, bridge_expires_at=T0 + timedelta(minutes=5)),
        NAMES,
        ZONE,
    )
    assert view.headline.text.startswith("Waiting for the bridge call")
    assert view.headline.since == T0
    assert (view.can_cancel, view.can_release, view.can_new_code) == (True, False, True)
    assert view.bridge_expires == "12:05:00 PST"
    assert not view.terminal


def test_ringing_the_first_destination_counts_from_when_it_started() -> None:
    view = views.progress_view(
        transfer(TransferState.RINGING, [ringing("cc", T0 + timedelta(seconds=5))]), NAMES, ZONE
    )
    assert view.headline.text == "Ringing Crisis Connections"
    assert view.headline.tone == "live"
    assert view.headline.since == T0 + timedelta(seconds=5)
    assert view.can_cancel
    assert not view.can_new_code


def test_a_fallback_says_why_and_who_rings_now() -> None:
    attempts = [ringing("cc", T0, "no_answer"), ringing("wa", T0 + timedelta(seconds=20))]
    view = views.progress_view(transfer(TransferState.RINGING, attempts), NAMES, ZONE)
    assert view.headline.text == "No answer from Crisis Connections — trying WA 988 backup"
    assert [line.text for line in view.history] == [
        "Crisis Connections: no answer (12:00:20 PST)",
        "Ringing WA 988 backup",
    ]
    busy = [ringing("cc", T0, "busy"), ringing("wa", T0 + timedelta(seconds=1))]
    view = views.progress_view(transfer(TransferState.RINGING, busy), NAMES, ZONE)
    assert view.headline.text == "Busy from Crisis Connections — trying WA 988 backup"


def test_connected_offers_release_once() -> None:
    attempts = [ringing("cc", T0, "no_answer"), ringing("wa", T0, "answered")]
    connected = transfer(
        TransferState.CONNECTED,
        attempts,
        connected_destination_id="wa",
        connected_at=T0 + timedelta(seconds=40),
    )
    view = views.progress_view(connected, NAMES, ZONE)
    assert view.headline.text.startswith("Connected to WA 988 backup")
    assert view.headline.tone == "ok"
    assert (view.can_cancel, view.can_release) == (False, True)
    released = connected.model_copy(update={"released_at": T0 + timedelta(minutes=1)})
    view = views.progress_view(released, NAMES, ZONE)
    assert not view.can_release
    assert view.history[-1].text == "Released at 12:01:00 PST"


@pytest.mark.parametrize(
    ("state", "headline", "tone"),
    [
        (TransferState.FAILED, "No counselor could be reached — the call stays with 911", "alarm"),
        (TransferState.ABANDONED, "The caller hung up while a counselor was ringing", "warn"),
        (TransferState.CANCELLED, "Transfer cancelled — the call stays with 911", "warn"),
        (
            TransferState.EXPIRED,
            "The bridge code was never used and has expired — the call stays with 911",
            "warn",
        ),
        (TransferState.NOT_TRANSFERRED, "Not transferred — the call stays with 911", "info"),
    ],
)
def test_every_end_is_said_in_words_with_no_controls(
    state: TransferState, headline: str, tone: str
) -> None:
    view = views.progress_view(transfer(state), NAMES, ZONE)
    assert view.headline.text == headline
    assert view.headline.tone == tone
    assert view.terminal
    assert (view.can_cancel, view.can_release, view.can_new_code) == (False, False, False)
    assert view.state_words == views.TRANSFER_STATE_WORDS[state]


def handback(**extra: Any) -> HandbackView:
    return HandbackView.of(record(**extra), readable=True)


def record(**extra: Any) -> Handback:
    return Handback.model_validate(
        {
            "id": "hb_" + "b" * 24,
            "state": HandbackState.DIALING,
            "version": 1,
            "mode": "live",
            "psap_id": "kc-valleycom",
            "center_org": "crisis-connections",
            "reason": "imminent_risk",
            "eido_id": "e1",
            "created_at": T0,
            "updated_at": T0,
            **extra,
        }
    )


def test_a_handback_without_location_says_location_unknown_and_stands_out() -> None:
    alert = views.handback_alert(
        handback(callback_number="+12065550123", risk=Risk(weapons=False, summary="pills")),
        ZONE,
    )
    assert alert.reason == "Imminent risk"
    assert alert.location == "location unknown"
    assert not alert.location_known
    assert alert.callback == "+1 206-555-0123"
    assert alert.risk == ["Weapons: no", "Access to means: unknown", "pills"]
    assert not alert.confirmed
    assert alert.tone == "warn"
    assert alert.received == "12:00:00 PST"
    assert alert.state_words == "Dialing your handback line"


def test_a_handback_with_an_address_and_a_confirmation() -> None:
    confirmed = handback(
        location=Location(address="500 Example Ave, Kent", lat=47.38, lon=-122.23),
        contact=Contact(contact_made=False, at=T0, recorded_at=T0),
    )
    alert = views.handback_alert(confirmed, ZONE)
    assert alert.location == "500 Example Ave, Kent · 47.38000, -122.23000"
    assert alert.confirmed
    assert alert.contact == "Could not make contact (12:00:00 PST)"
    assert alert.tone == "ok"


def test_an_overdue_handback_is_an_alarm_on_the_inbox_and_the_board() -> None:
    overdue = handback(unconfirmed_at=T0 + timedelta(minutes=30))
    alert = views.handback_alert(overdue, ZONE)
    assert alert.overdue
    assert alert.tone == "alarm"
    row, alarms = views.handback_row(overdue, T0 + timedelta(minutes=31))
    assert row.tone == "alarm"
    assert [a.text for a in alarms] == ["Handback unconfirmed: nobody recorded contact in time"]


def test_the_board_raises_ringing_past_timeout_and_chain_exhausted() -> None:
    live = transfer(TransferState.RINGING, [ringing("cc", T0)])
    row, alarms = views.transfer_row(live, NAMES, T0 + timedelta(seconds=10))
    assert (row.tone, row.in_state, alarms) == ("live", "10 s", [])
    row, alarms = views.transfer_row(live, NAMES, T0 + timedelta(seconds=31))
    assert row.tone == "alarm"
    assert alarms[0].text == "Crisis Connections ringing 31 s, past its 20 s timeout"
    failed = transfer(TransferState.FAILED, [ringing("cc", T0, "no_answer")])
    row, alarms = views.transfer_row(failed, NAMES, T0 + timedelta(minutes=1))
    assert [a.text for a in alarms] == [
        "Chain exhausted: no counselor reached, call stays with 911"
    ]


def test_cad_not_delivered_is_an_alarm() -> None:
    undelivered = handback(cad_mode="send", cad_failed_at=T0)
    _, alarms = views.handback_row(undelivered, T0)
    assert "Handback not delivered to CAD" in [a.text for a in alarms]


def test_destination_load_against_its_limit() -> None:
    full = views.DestinationStatus("cc", "CC", True, 3, 3)
    assert (full.load_words, full.full) == ("3 of 3", True)
    free = views.DestinationStatus("wa", "WA", False, 1, None)
    assert (free.load_words, free.full) == ("1 now (no limit)", False)


def test_answer_time_histogram_and_outcomes() -> None:
    # ``answer_time_s.histogram`` of GET /v1/reports/summary, as the report builds it.
    histogram = {f"{b:g}": 0 for b in counters.ANSWER_BUCKETS_S} | {"+Inf": 0}
    histogram |= {"5": 2, "10": 1, "20": 1, "60": 1, "+Inf": 1}
    counts = dict(views.answer_histogram(histogram))
    assert list(counts)[:3] == ["up to 5 s", "5 to 10 s", "10 to 15 s"]
    assert list(counts)[-2:] == ["180 to 300 s", "over 300 s"]
    assert counts["up to 5 s"] == 2
    assert counts["15 to 20 s"] == 1
    assert counts["30 to 45 s"] == 0
    assert counts["over 300 s"] == 1
    assert sum(counts.values()) == 6
    outcomes = dict(views.outcome_counts({"connected": 4, "kept_with_911": 2, "failed": 1}))
    assert outcomes["Connected"] == 4
    assert outcomes["Code expired"] == 0


def test_charts_are_labelled_images() -> None:
    svg = str(charts.bar_chart("Where calls ended", [("Connected", 3), ("Kept <911>", 1)]))
    assert 'role="img"' in svg
    assert 'aria-label="Where calls ended: Connected: 3, Kept &lt;911&gt;: 1"' in svg
    assert "<title>Where calls ended</title>" in svg
    assert "no eligible calls yet" in str(charts.meter("Capture rate", None))
    assert ">75%<" in str(charts.meter("Capture rate", 0.75))


MINE = ["wa"]
PSAPS = {"kc-valleycom": "Valley Com"}


def test_the_counselor_sees_a_call_ringing_at_its_line_with_the_screen_pop() -> None:
    attempts = [ringing("cc", T0, "no_answer"), ringing("wa", T0 + timedelta(seconds=20))]
    ringing_here = transfer(
        TransferState.RINGING,
        attempts,
        callback_number="+12065550123",
        screening={"weapons": False, "consent_to_transfer": True},
    )
    call = views.counselor_call(ringing_here, NAMES, PSAPS, ZONE, MINE)
    assert call is not None
    assert call.headline.text == "Ringing WA 988 backup"
    assert call.headline.since == T0 + timedelta(seconds=20)
    assert call.psap == "Valley Com"
    assert call.callback == "+1 206-555-0123"
    assert call.screening == ["Weapons involved: no", "Caller consents to transfer: yes"]
    assert (call.can_dispose, call.can_hand_back) == (False, False)
    # Another center's line ringing: not shown.
    elsewhere = transfer(TransferState.RINGING, [ringing("cc", T0)])
    assert views.counselor_call(elsewhere, NAMES, PSAPS, ZONE, MINE) is None


def test_the_counselor_records_an_outcome_once_and_may_hand_back() -> None:
    connected = transfer(
        TransferState.CONNECTED,
        [ringing("wa", T0, "answered")],
        connected_destination_id="wa",
        connected_at=T0,
    )
    call = views.counselor_call(connected, NAMES, PSAPS, ZONE, MINE)
    assert call is not None
    assert call.headline.text == "Connected — WA 988 backup"
    assert (call.can_dispose, call.can_hand_back) == (True, True)
    done = Transfer.model_validate(
        {
            **connected.model_dump(),
            "state": TransferState.COMPLETED,
            "disposition": {
                "outcome": "resolved_by_phone",
                "police_involved": False,
                "destination_id": "wa",
                "recorded_at": T0,
            },
        }
    )
    call = views.counselor_call(done, NAMES, PSAPS, ZONE, MINE)
    assert call is not None
    assert call.disposition == "Resolved by phone · no police"
    assert not call.can_dispose


def test_a_center_sees_whether_911_confirmed_its_handback() -> None:
    waiting = views.center_handback(handback(), PSAPS, ZONE)
    assert (waiting.contact, waiting.tone) == ("waiting for 911 to confirm contact", "live")
    made = handback(contact=Contact(contact_made=True, at=T0, recorded_at=T0))
    assert views.center_handback(made, PSAPS, ZONE).contact == (
        "911 confirmed: contact made (12:00:00 PST)"
    )
    late = views.center_handback(handback(unconfirmed_at=T0), PSAPS, ZONE)
    assert late.tone == "alarm"
