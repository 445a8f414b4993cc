"""What the policy editor shows, without a browser or Redis: the draft's errors at their paths
and lines, its changes from the live policy, the structure in words, the versions and the words
of a save refused because someone else saved first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from gateway.console import policy_views
from gateway.policy.loader import load_config_dir
from gateway.policy.models import PolicyDocument
from gateway.policy.service import VersionInfo

CONFIG = Path(__file__).resolve().parent.parent / "config"
PACIFIC = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def live() -> PolicyDocument:
    return load_config_dir(CONFIG)


def test_the_draft_text_is_the_live_policy_and_reads_back_unchanged(live: PolicyDocument) -> None:
    text = policy_views.draft_text(live)
    assert "version" not in yaml.safe_load(text)
    check = policy_views.check_draft(text, live)
    assert check.valid
    assert check.document == live
    assert check.changes == []


def test_errors_are_reported_at_the_apis_paths_with_the_drafts_line(live: PolicyDocument) -> None:
    data = yaml.safe_load(policy_views.draft_text(live))
    data["policy"]["hop_limit"] = 9
    data["policy"]["rules"][0]["chain"] = ["nowhere"]
    text = yaml.safe_dump(data, sort_keys=False)
    check = policy_views.check_draft(text, live)
    assert not check.valid
    assert check.changes == []
    by_path = {e.path: e for e in check.errors}
    assert set(by_path) == {"policy.hop_limit", "policy.rules.0.chain.0"}
    lines = text.splitlines()
    hop = by_path["policy.hop_limit"]
    assert hop.line is not None
    assert lines[hop.line - 1].strip() == "hop_limit: 9"
    assert "less than or equal to 2" in hop.message
    chain = by_path["policy.rules.0.chain.0"]
    assert chain.line is not None
    assert lines[chain.line - 1].strip() == "- nowhere"
    assert "nowhere" in chain.message


def test_unreadable_yaml_and_a_missing_section_are_errors(live: PolicyDocument) -> None:
    check = policy_views.check_draft("policy: [unclosed\n", live)
    assert check.errors[0].path == "$"
    assert check.errors[0].message.startswith("not valid YAML")
    assert check.errors[0].line is not None
    check = policy_views.check_draft("policy: {}\n", live)
    assert {"psaps", "destinations"} <= {e.path for e in check.errors}
    check = policy_views.check_draft("a: &x [1, 2]\nb: [*x, *x]\n", live)
    assert check.errors[0].message == "YAML aliases (*name) are not accepted"
    assert check.errors[0].line == 2
    check = policy_views.check_draft("x" * (policy_views.MAX_DRAFT + 1), live)
    assert "longer than" in check.errors[0].message


def test_a_valid_draft_lists_each_change_by_path(live: PolicyDocument) -> None:
    data = yaml.safe_load(policy_views.draft_text(live))
    data["policy"]["hop_limit"] = 1
    data["destinations"][1]["languages"] = ["en", "zh"]
    check = policy_views.check_draft(yaml.safe_dump(data), live)
    assert check.valid
    assert [(c.path, c.change) for c in check.changes] == [
        ("destinations.wa-988-backup.languages", "[en] → [en, zh]"),
        ("policy.hop_limit", "2 → 1"),
    ]


def test_the_structure_says_the_gate_rules_and_destinations_in_words(
    live: PolicyDocument,
) -> None:
    shown = policy_views.structure(live)
    assert shown.gate[0].startswith("Stays with 911 when any is yes: weapons involved")
    assert shown.gate[2] == "Caller's consent required"
    assert shown.gate[3] == "Stays with 911 after 2 transfers"
    first = shown.rules[0]
    assert first.id == "first-person"
    assert first.when == "caller is first person"
    assert first.chain.startswith("Crisis Connections")
    assert " → " in first.chain
    assert first.ring == "20 s each"
    daytime = next(r for r in shown.rules if r.id == "third-party-daytime")
    assert "while " in daytime.when
    assert " open" in daytime.when
    by_id = {d.id: d for d in shown.destinations}
    assert by_id["crisis-connections-988"].hours == "always open"
    assert " to " in by_id["kc-dispatch-clinicians"].hours
    assert shown.psaps[0].id == "kc-valleycom"


def info(version: int, actor: str, summary: str, minute: int) -> VersionInfo:
    return VersionInfo(
        version=version,
        at=datetime(2026, 11, 30, 20, minute, tzinfo=UTC),
        actor=actor,
        summary=summary,
    )


VERSIONS = [
    info(1, "system:config-files", "seeded from config/", 0),
    info(
        2, "admin:ops:sam", "policy.hop_limit: 2 → 1; destinations.x.languages: [en] → [en, zh]", 5
    ),
    info(3, "admin:ops:lee", "rollback to version 1: policy.hop_limit: 1 → 2", 9),
]


def test_versions_are_newest_first_with_who_when_and_each_change() -> None:
    rows = policy_views.version_rows(VERSIONS, 3, PACIFIC)
    assert [r.version for r in rows] == [3, 2, 1]
    assert rows[0].live
    assert not rows[1].live
    assert rows[1].actor == "admin:ops:sam"
    assert rows[1].at == "2026-11-30 12:05 PST"
    assert rows[1].changes == [
        "policy.hop_limit: 2 → 1",
        "destinations.x.languages: [en] → [en, zh]",
    ]
    assert policy_views.summary_lines("no change") == ["no change"]


def test_a_conflict_names_who_saved_which_version_and_when() -> None:
    found = policy_views.conflict(1, 3, VERSIONS, PACIFIC)
    assert found.message.startswith(
        "Someone else saved version 3 at 2026-11-30 12:09 PST (admin:ops:lee) — "
        "review their change."
    )
    assert "nothing was overwritten" in found.message
    assert [v.version for v in found.theirs] == [3, 2]
    assert found.live == 3
    assert found.base == 1


NAMES = {"crisis-connections-988": "Crisis Connections 988", "wa-988-backup": "WA backup"}


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (
            "decision: transfer to crisis-connections-988, wa-988-backup, ringing each 20 s",
            "Decision: transfer to Crisis Connections 988, then WA backup, ringing each 20 s",
        ),
        (
            "decision: stay_with_911 (excluded:weapons, no_consent)",
            "Decision: keep the call with 911 — Weapons involved: yes — such calls stay with "
            "911; The caller has not consented to a transfer",
        ),
        (
            "decision: stay_with_911 (closed:wa-988-backup, no_rule)",
            "Decision: keep the call with 911 — WA backup is closed now — skipped; "
            "no rule matches the call",
        ),
        (
            "gate: fails — screening_incomplete:violence",
            "Safety gate: the call stays with 911 — Violence or threats: not asked — this "
            "question must be answered",
        ),
        ("rule first-person: matches", "Rule first-person: matches — its chain is used"),
        (
            "rule youth: skipped (caller type unknown not in first_person)",
            "Rule youth: does not match (caller type unknown not in first_person)",
        ),
        (
            "destination wa-988-backup: skipped, at capacity (3/3)",
            "WA backup: skipped, at capacity (3/3)",
        ),
        ("no rule matches", "No rule matches the call"),
        ("psap kc: local time 2026-11-30 12:00", "At Valley: local time 2026-11-30 12:00"),
        (
            "request: caller_type=third_party language=es transfers_so_far=1 tags=['youth']",
            "The call: third party caller, language Spanish, 1 transfer so far, tagged youth",
        ),
        ("psap: odd line", "psap: odd line"),
    ],
)
def test_the_trace_is_said_in_words(line: str, words: str) -> None:
    assert policy_views.trace_words(line, NAMES, {"kc": "Valley"}) == words


def test_the_draft_text_leaves_out_unset_fields(live: PolicyDocument) -> None:
    text = policy_views.draft_text(live)
    assert "tags: []" not in text
    assert "screening: {}" not in text
    assert "null" not in text


def test_the_time_of_a_tried_call_is_the_psaps_local_time() -> None:
    at = policy_views.local_instant("2026-07-01T21:30", PACIFIC)
    assert at == datetime(2026, 7, 2, 4, 30, tzinfo=UTC)
    assert policy_views.local_instant("  ", PACIFIC) is None
    with pytest.raises(ValueError, match="Invalid isoformat"):
        policy_views.local_instant("soon", PACIFIC)
