"""The decision engine on the shipped default policy (DESIGN.md §5), table-driven, plus a
property test over random valid policies."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import PolicyDocument, PolicyInvalid, decide, explain, validate_document
from gateway.policy.decision import Action, DecisionRequest
from gateway.policy.engine import UnknownPsap
from gateway.policy.loader import load_config_dir
from gateway.policy.models import MANDATORY_EXCLUSIONS, MANDATORY_SCREENING
from tests.telephony import SAFE

CONFIG = Path(__file__).resolve().parent.parent / "config"
DEFAULT = load_config_dir(CONFIG)
LA = ZoneInfo("America/Los_Angeles")

CC, WA, NAT, CLIN = (
    "crisis-connections-988",
    "wa-988-backup",
    "national-988-backup",
    "kc-dispatch-clinicians",
)
CHAIN_988 = [CC, WA, NAT]
NOON = datetime(2026, 6, 15, 12, 0, tzinfo=LA)  # a Monday, clinicians open
NIGHT = datetime(2026, 6, 15, 3, 0, tzinfo=LA)  # clinicians closed
CLEAR: dict[str, bool | None] = dict(SAFE)


def request(
    caller_type: str = "first_person",
    *,
    at: datetime = NOON,
    language: str = "en",
    transfers_so_far: int = 0,
    **flags: bool | None,
) -> DecisionRequest:
    return DecisionRequest.model_validate(
        {
            "psap_id": "kc-valleycom",
            "caller_type": caller_type,
            "screening": {**CLEAR, **flags},
            "language": language,
            "transfers_so_far": transfers_so_far,
            "at": at,
        }
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


STAY = "stay_with_911"
# (case id, request, expected action, expected destination ids, expected reasons)
CASES: list[tuple[str, DecisionRequest, str, list[str], list[str]]] = [
    *[
        (f"excluded-{flag}", request(**{flag: True}), STAY, [], [f"excluded:{flag}"])
        for flag in MANDATORY_EXCLUSIONS
    ],
    (
        "excluded-three",
        request(weapons=True, violence=True, imminent_risk=True),
        STAY,
        [],
        ["excluded:weapons", "excluded:violence", "excluded:imminent_risk"],
    ),
    (
        "excluded-all",
        request("third_party", **dict.fromkeys(MANDATORY_EXCLUSIONS, True)),
        STAY,
        [],
        [f"excluded:{f}" for f in MANDATORY_EXCLUSIONS],
    ),
    (
        "incomplete-weapons",
        request(weapons=None),
        STAY,
        [],
        ["screening_incomplete:weapons"],
    ),
    (
        "incomplete-all-three",
        request("unknown", weapons=None, violence=None, medical_emergency=None),
        STAY,
        [],
        [
            "screening_incomplete:weapons",
            "screening_incomplete:violence",
            "screening_incomplete:medical_emergency",
        ],
    ),
    (
        "not-required-null-is-fine",
        request(severe_intoxication=None, officer_requested=None),
        "transfer",
        CHAIN_988,
        ["rule:first-person"],
    ),
    ("consent-false", request(consent_to_transfer=False), STAY, [], ["no_consent"]),
    ("consent-null", request(consent_to_transfer=None), STAY, [], ["no_consent"]),
    ("hop-1", request(transfers_so_far=1), "transfer", CHAIN_988, ["rule:first-person"]),
    ("hop-2", request(transfers_so_far=2), STAY, [], ["hop_limit"]),
    ("hop-3", request(transfers_so_far=3), STAY, [], ["hop_limit"]),
    (
        "every-gate-at-once",
        request(weapons=True, violence=None, consent_to_transfer=False, transfers_so_far=2),
        STAY,
        [],
        ["excluded:weapons", "screening_incomplete:violence", "no_consent", "hop_limit"],
    ),
    ("first-person", request("first_person"), "transfer", CHAIN_988, ["rule:first-person"]),
    (
        "first-person-night",
        request("first_person", at=NIGHT),
        "transfer",
        CHAIN_988,
        ["rule:first-person"],
    ),
    (
        "third-party-day",
        request("third_party"),
        "transfer",
        [CLIN, CC],
        ["rule:third-party-daytime"],
    ),
    ("unknown-day", request("unknown"), "transfer", [CLIN, CC], ["rule:third-party-daytime"]),
    (
        "third-party-night",
        request("third_party", at=NIGHT),
        "transfer",
        CHAIN_988,
        ["rule:third-party-overnight", f"closed:{CLIN}"],
    ),
    (
        "unknown-night",
        request("unknown", at=NIGHT),
        "transfer",
        CHAIN_988,
        ["rule:third-party-overnight", f"closed:{CLIN}"],
    ),
    (
        "first-person-es",
        request("first_person", language="es"),
        "transfer",
        [CC, NAT, WA],
        ["rule:first-person"],
    ),
    (
        "third-party-es",
        request("third_party", language="es"),
        "transfer",
        [CC, CLIN],
        ["rule:third-party-daytime"],
    ),
    (
        "unknown-es",
        request("unknown", language="es"),
        "transfer",
        [CC, CLIN],
        ["rule:third-party-daytime"],
    ),
    (
        "third-party-es-night",
        request("third_party", language="es", at=NIGHT),
        "transfer",
        [CC, NAT, WA],
        ["rule:third-party-overnight", f"closed:{CLIN}"],
    ),
    (
        "first-person-es-MX",
        request("first_person", language="es-MX"),
        "transfer",
        [CC, NAT, WA],
        ["rule:first-person"],
    ),
]

# The clinicians' hours (07:00-23:00 local) around both 2026 US DST changes, as UTC instants.
# 2026-03-07 is PST (UTC-8); from 2026-03-08 02:00 local it is PDT (UTC-7);
# 2026-10-31 is PDT; from 2026-11-01 02:00 local it is PST again.
HOURS: list[tuple[str, str, bool]] = [
    ("2026-03-07 06:59 PST", "2026-03-07T14:59", False),
    ("2026-03-07 07:00 PST", "2026-03-07T15:00", True),
    ("2026-03-07 22:59 PST", "2026-03-08T06:59", True),
    ("2026-03-07 23:00 PST", "2026-03-08T07:00", False),
    ("2026-03-08 06:59 PDT", "2026-03-08T13:59", False),
    ("2026-03-08 07:00 PDT", "2026-03-08T14:00", True),
    ("2026-03-08 22:59 PDT", "2026-03-09T05:59", True),
    ("2026-03-08 23:00 PDT", "2026-03-09T06:00", False),
    ("2026-10-31 06:59 PDT", "2026-10-31T13:59", False),
    ("2026-10-31 07:00 PDT", "2026-10-31T14:00", True),
    ("2026-10-31 22:59 PDT", "2026-11-01T05:59", True),
    ("2026-10-31 23:00 PDT", "2026-11-01T06:00", False),
    ("2026-11-01 06:59 PST", "2026-11-01T14:59", False),
    ("2026-11-01 07:00 PST", "2026-11-01T15:00", True),
    ("2026-11-01 22:59 PST", "2026-11-02T06:59", True),
    ("2026-11-01 23:00 PST", "2026-11-02T07:00", False),
]
for label, instant, open_ in HOURS:
    at = utc(instant)
    if open_:
        CASES.append(
            (
                f"hours {label}",
                request("third_party", at=at),
                "transfer",
                [CLIN, CC],
                ["rule:third-party-daytime"],
            )
        )
    else:
        CASES.append(
            (
                f"hours {label}",
                request("third_party", at=at),
                "transfer",
                CHAIN_988,
                ["rule:third-party-overnight", f"closed:{CLIN}"],
            )
        )


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("req", "action", "destinations", "reasons"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_default_policy(
    req: DecisionRequest, action: str, destinations: list[str], reasons: list[str]
) -> None:
    decision = decide(DEFAULT, req, at=datetime.now(UTC), load={}, version=7)
    assert decision.action == action
    assert [d.id for d in decision.destinations] == destinations
    assert decision.reasons == reasons
    assert decision.ring_timeout_s == 20
    assert decision.policy_version == 7


def test_decision_json_is_the_contract() -> None:
    decision = decide(DEFAULT, request("third_party"), at=NOON, load={}, version=3)
    body = decision.model_dump(mode="json")
    assert set(body) == {"action", "destinations", "ring_timeout_s", "reasons", "policy_version"}
    assert body["destinations"][0] == {
        "id": CLIN,
        "kind": "local_clinician",
        "name": "King County dispatch-embedded clinicians",
        "number": "+12065550142",
    }
    assert body["action"] == "transfer"
    assert body["policy_version"] == 3


def test_request_at_wins_over_now_and_now_is_used_without_it() -> None:
    req = request("third_party", at=NIGHT)
    assert decide(DEFAULT, req, at=NOON, load={}).reasons[0] == "rule:third-party-overnight"
    undated = req.model_copy(update={"at": None})
    assert decide(DEFAULT, undated, at=NOON, load={}).reasons == ["rule:third-party-daytime"]


def test_unknown_psap() -> None:
    req = request().model_copy(update={"psap_id": "nowhere"})
    with pytest.raises(UnknownPsap):
        decide(DEFAULT, req, at=NOON, load={})


def _with(mutate: Any) -> PolicyDocument:
    data = copy.deepcopy(DEFAULT.model_dump(mode="json"))
    mutate(data)
    return validate_document(data)


def _dest(data: dict[str, Any], dest_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in data["destinations"] if d["id"] == dest_id)
    return found


def test_full_destination_is_skipped() -> None:
    doc = _with(lambda d: _dest(d, CLIN).update(max_concurrent=2))
    decision = decide(doc, request("third_party"), at=NOON, load={CLIN: 2})
    assert [d.id for d in decision.destinations] == [CC]
    assert decision.reasons == ["rule:third-party-daytime", f"at_capacity:{CLIN}"]
    under = decide(doc, request("third_party"), at=NOON, load={CLIN: 1})
    assert [d.id for d in under.destinations] == [CLIN, CC]


def test_whole_chain_filtered_out_stays_with_911() -> None:
    def full(data: dict[str, Any]) -> None:
        for dest_id in CHAIN_988:
            _dest(data, dest_id)["max_concurrent"] = 1

    doc = _with(full)
    decision = decide(doc, request("first_person"), at=NOON, load=dict.fromkeys(CHAIN_988, 1))
    assert decision.action is Action.STAY_WITH_911
    assert decision.destinations == []
    assert decision.reasons == ["rule:first-person", *[f"at_capacity:{d}" for d in CHAIN_988]]


def test_closed_and_full_together() -> None:
    def night_only_chain(data: dict[str, Any]) -> None:
        data["policy"]["rules"] = [{"id": "only", "chain": [CLIN, CC], "ring_timeout_s": 30}]
        _dest(data, CC)["max_concurrent"] = 1

    doc = _with(night_only_chain)
    decision = decide(doc, request("third_party", at=NIGHT), at=NIGHT, load={CC: 5})
    assert decision.action is Action.STAY_WITH_911
    assert decision.reasons == ["rule:only", f"closed:{CLIN}", f"at_capacity:{CC}"]
    assert decision.ring_timeout_s == 30


def test_rules_by_tag_and_language_and_no_rule() -> None:
    def rules(data: dict[str, Any]) -> None:
        data["policy"]["rules"] = [
            {"id": "veterans", "match": {"tags": ["veteran"]}, "chain": [NAT]},
            {"id": "spanish", "match": {"languages": ["es"]}, "chain": [CC]},
            {"id": "first", "match": {"caller_types": ["first_person"]}, "chain": [WA]},
        ]

    doc = _with(rules)
    vet = request("third_party").model_copy(update={"tags": ["veteran", "youth"]})
    assert decide(doc, vet, at=NOON, load={}).reasons == ["rule:veterans"]
    es = request("third_party", language="es-US")
    assert decide(doc, es, at=NOON, load={}).reasons == ["rule:spanish"]
    nobody = decide(doc, request("unknown"), at=NOON, load={})
    assert nobody.action is Action.STAY_WITH_911
    assert nobody.reasons == ["no_rule"]


def test_trace_names_each_step() -> None:
    result = explain(DEFAULT, request("third_party", at=NIGHT), at=NIGHT, load={})
    text = "\n".join(result.trace)
    assert "gate: passes" in text
    assert "rule third-party-daytime: skipped (kc-dispatch-clinicians closed)" in text
    assert "rule third-party-overnight: matches" in text
    assert f"destination {WA}: kept" in text
    gated = explain(DEFAULT, request(weapons=True), at=NIGHT, load={})
    assert any(
        line.startswith("gate: fails") and "excluded:weapons" in line for line in gated.trace
    )


# ---------------------------------------------------------------------------------------------
# Property: a random policy is valid exactly when it keeps the safety floor; for random valid
# policies and random requests, a call with an exclusion flag set, a mandatory screening question
# unasked, no consent, or two transfers already stays with 911, and every destination of a chain
# is open and under capacity.

DEST_IDS = ["d0", "d1", "d2", "d3", "d4"]
TIMEZONES = [
    "America/Los_Angeles",
    "America/New_York",
    "UTC",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Europe/London",
]
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
FLAGS = [*MANDATORY_EXCLUSIONS, "consent_to_transfer"]
ANSWERS: list[bool | None] = [False] * 12 + [None, True]
CONSENT: list[bool | None] = [True] * 4 + [False, None]
RULE_ANSWERS: list[bool | None] = [False, None, True]


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.integers(0, 95)) * 15
    end = draw(st.integers(start // 15 + 1, 96)) * 15
    return {
        "days": draw(st.lists(st.sampled_from(DAY_NAMES), min_size=1, max_size=7, unique=True)),
        "start": f"{start // 60:02d}:{start % 60:02d}",
        "end": f"{end // 60:02d}:{end % 60:02d}",
    }


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, len(DEST_IDS)))
    ids = DEST_IDS[:count]
    destinations = [
        {
            "id": dest_id,
            "kind": draw(st.sampled_from(["988_center", "local_clinician"])),
            "name": f"Destination {dest_id}",
            "number": f"+1206555{index:04d}",
            "org": f"org-{dest_id}",
            "languages": draw(
                st.lists(st.sampled_from(["en", "es", "vi"]), min_size=1, max_size=3, unique=True)
            ),
            "hours": draw(st.none() | st.lists(windows(), min_size=1, max_size=3)),
            "max_concurrent": draw(st.none() | st.integers(1, 3)),
        }
        for index, dest_id in enumerate(ids)
    ]
    rules = []
    for index in range(draw(st.integers(1, 4))):
        # Mostly no screening condition; now and then an attempt to route an excluded call.
        screening = draw(
            st.dictionaries(st.sampled_from(FLAGS), st.sampled_from(RULE_ANSWERS), max_size=1)
            | st.just({})
            | st.just({})
        )
        rules.append(
            {
                "id": f"r{index}",
                "match": {
                    "caller_types": draw(
                        st.lists(
                            st.sampled_from(["first_person", "third_party", "unknown"]),
                            max_size=3,
                            unique=True,
                        )
                    ),
                    "languages": draw(
                        st.lists(st.sampled_from(["en", "es"]), unique=True, max_size=1)
                    ),
                    "tags": draw(
                        st.lists(st.sampled_from(["veteran", "youth"]), unique=True, max_size=1)
                    ),
                    "screening": screening,
                    "while_open": draw(st.lists(st.sampled_from(ids), max_size=1)),
                },
                "chain": draw(st.lists(st.sampled_from(ids), min_size=1, unique=True)),
                "ring_timeout_s": draw(st.integers(5, 60)),
            }
        )
    # Usually the full exclusion list; sometimes one missing (must be rejected).
    exclusions = draw(st.permutations(MANDATORY_EXCLUSIONS))
    if draw(st.integers(0, 9)) == 0:
        exclusions = exclusions[1:]
    # Usually the safety floor, or more; sometimes looser (must be rejected).
    required = draw(st.lists(st.sampled_from(MANDATORY_EXCLUSIONS), unique=True, max_size=4))
    if draw(st.integers(0, 9)) > 0:
        required = [*MANDATORY_SCREENING, *(f for f in required if f not in MANDATORY_SCREENING)]
    return {
        "psaps": [
            {
                "id": "p",
                "name": "PSAP",
                "timezone": draw(st.sampled_from(TIMEZONES)),
                "handback_number": "+12065550100",
                "fallback_destination": ids[0],
            }
        ],
        "destinations": destinations,
        "policy": {
            "exclusions": list(exclusions),
            "required_screening": required,
            "require_consent": draw(st.sampled_from([True] * 9 + [False])),
            "hop_limit": draw(st.sampled_from([1, 2] * 4 + [0, 3])),
            "rules": rules,
        },
    }


@st.composite
def requests(draw: st.DrawFn) -> DecisionRequest:
    instant = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        minutes=draw(st.integers(0, 366 * 24 * 60))
    )
    return DecisionRequest.model_validate(
        {
            "psap_id": "p",
            "caller_type": draw(st.sampled_from(["first_person", "third_party", "unknown"])),
            # Biased towards a clear screening, so chains get exercised as well as the gate.
            "screening": {
                f: draw(st.sampled_from(ANSWERS if f != "consent_to_transfer" else CONSENT))
                for f in FLAGS
            },
            "language": draw(st.sampled_from(["en", "es", "vi", "es-MX"])),
            "transfers_so_far": draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3])),
            "tags": draw(st.lists(st.sampled_from(["veteran", "youth"]), unique=True)),
            "at": instant,
        }
    )


def _open(window_list: list[dict[str, Any]] | None, at: datetime, tz: str) -> bool:
    """Independent of the engine: is ``at`` inside one of the raw windows, in local time?"""
    if window_list is None:
        return True
    local = at.astimezone(ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    for w in window_list:
        sh, sm = map(int, w["start"].split(":"))
        eh, em = map(int, w["end"].split(":"))
        if DAY_NAMES[local.weekday()] in w["days"] and sh * 60 + sm <= minute < eh * 60 + em:
            return True
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=documents(),
    req=requests(),
    loads=st.lists(st.integers(0, 4), min_size=len(DEST_IDS), max_size=len(DEST_IDS)),
)
def test_property_exclusions_stay_and_chains_are_open_and_under_capacity(
    raw: dict[str, Any], req: DecisionRequest, loads: list[int]
) -> None:
    routes_excluded = any(
        value is True and flag in MANDATORY_EXCLUSIONS
        for rule in raw["policy"]["rules"]
        for flag, value in rule["match"]["screening"].items()
    )
    incomplete_gate = set(raw["policy"]["exclusions"]) != set(MANDATORY_EXCLUSIONS)
    loosened = (
        not set(MANDATORY_SCREENING) <= set(raw["policy"]["required_screening"])
        or raw["policy"]["require_consent"] is not True
        or raw["policy"]["hop_limit"] not in (1, 2)
    )
    try:
        doc = validate_document(raw)
    except PolicyInvalid:
        assert routes_excluded or incomplete_gate or loosened
        return
    assert not routes_excluded
    assert not incomplete_gate
    assert not loosened

    load = dict(zip(DEST_IDS, loads, strict=True))
    decision = decide(doc, req, at=datetime.now(UTC), load=load)
    true_exclusions = [f for f in MANDATORY_EXCLUSIONS if req.screening.flag(f) is True]
    if true_exclusions:
        assert decision.action is Action.STAY_WITH_911
        assert decision.destinations == []
        for flag in true_exclusions:
            assert f"excluded:{flag}" in decision.reasons
    if decision.action is Action.TRANSFER:
        assert decision.destinations
        assert not true_exclusions
        assert all(req.screening.flag(f) is not None for f in MANDATORY_SCREENING)
        assert req.screening.consent_to_transfer is True
        assert req.transfers_so_far < 2
        tz = raw["psaps"][0]["timezone"]
        for ref in decision.destinations:
            dest = next(d for d in raw["destinations"] if d["id"] == ref.id)
            assert _open(dest["hours"], req.at or datetime.now(UTC), tz)
            if dest["max_concurrent"] is not None:
                assert load[ref.id] < dest["max_concurrent"]
    else:
        assert decision.destinations == []
