"""What changed between two policies, as the version list shows it (``gateway.policy.changes``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import PolicyDocument, load_config_dir, validate_document
from gateway.policy.changes import MAX_SUMMARY, diff, join, render, summarize


@pytest.fixture
def shipped(config_dir: Path) -> PolicyDocument:
    return load_config_dir(config_dir)


def changed(doc: PolicyDocument, edit: Any) -> PolicyDocument:
    data = copy.deepcopy(doc.model_dump(mode="json"))
    edit(data)
    return validate_document(data)


def dest(data: dict[str, Any], destination_id: str) -> dict[str, Any]:
    return next(d for d in data["destinations"] if d["id"] == destination_id)


def test_values_in_flow_form() -> None:
    assert render(["en", "zh"]) == "[en, zh]"
    assert render(None) == "none"
    assert render(True) == "true"
    assert render([{"days": ["mon"], "start": "07:00"}]) == "[{days: [mon], start: 07:00}]"
    assert render("x" * 500).endswith("…")
    assert len(render("x" * 500)) == 120


def test_a_path_per_change_with_old_and_new(shipped: PolicyDocument) -> None:
    def edit(data: dict[str, Any]) -> None:
        dest(data, "wa-988-backup")["languages"] = ["en", "zh"]
        dest(data, "kc-dispatch-clinicians")["max_concurrent"] = 3
        data["psaps"][0]["name"] = "Valley Com"
        data["policy"]["required_screening"] = [
            *data["policy"]["required_screening"],
            "imminent_risk",
        ]

    summary = summarize(shipped, changed(shipped, edit))
    assert summary.split("; ") == [
        f"psaps.kc-valleycom.name: {shipped.psaps[0].name} → Valley Com",
        "destinations.wa-988-backup.languages: [en] → [en, zh]",
        "destinations.kc-dispatch-clinicians.max_concurrent: none → 3",
        "policy.required_screening: [weapons, violence, medical_emergency]"
        " → [weapons, violence, medical_emergency, imminent_risk]",
    ]


def test_items_added_removed_and_reordered(shipped: PolicyDocument) -> None:
    def edit(data: dict[str, Any]) -> None:
        rules = data["policy"]["rules"]
        rules.reverse()
        rules.append({"id": "youth", "match": {"tags": ["youth"]}, "chain": ["wa-988-backup"]})

    new = changed(shipped, edit)
    assert summarize(shipped, new) == (
        "policy.rules.youth: added; policy.rules: order "
        "[first-person, third-party-daytime, third-party-overnight] → "
        "[third-party-overnight, third-party-daytime, first-person]"
    )
    assert summarize(new, shipped).startswith("policy.rules.youth: removed; policy.rules: order")


def test_identical_and_initial(shipped: PolicyDocument) -> None:
    assert summarize(shipped, shipped) == "no change"
    assert summarize(None, shipped) == "initial policy"
    assert diff({"a": [1, 2]}, {"a": [1, 2]}) == []


def test_a_long_summary_is_cut_and_counts_the_rest() -> None:
    old = {"rules": [{"id": f"r{i}", "description": "a" * 100} for i in range(60)]}
    new = {"rules": [{"id": f"r{i}", "description": "b" * 100} for i in range(60)]}
    lines = diff(old, new)
    assert len(lines) == 60
    assert lines[0] == f"rules.r0.description: {'a' * 100} → {'b' * 100}"
    text = join(lines)
    assert len(text) <= MAX_SUMMARY
    shown = text.split("; ")
    more = shown.pop()
    assert shown == lines[: len(shown)]
    assert more == f"… {60 - len(shown)} more"
    assert join([]) == "no change"
    assert join(lines[:2]) == f"{lines[0]}; {lines[1]}"
