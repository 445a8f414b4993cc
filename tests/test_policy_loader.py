"""Loading and validating policies: the shipped default, and every kind of bad file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.errors import Invalid
from gateway.models import DestinationKind
from gateway.policy import PolicyInvalid, load_config_dir, validate_document
from gateway.policy.models import MANDATORY_EXCLUSIONS, Window

CONFIG = Path(__file__).resolve().parent.parent / "config"


def default_data() -> dict[str, Any]:
    return copy.deepcopy(load_config_dir(CONFIG).model_dump(mode="json"))


def errors_of(data: Any) -> list[dict[str, str]]:
    with pytest.raises(PolicyInvalid) as info:
        validate_document(data)
    assert info.value.status == 422
    assert info.value.details == info.value.errors
    return info.value.errors


def paths(errors: list[dict[str, str]]) -> list[str]:
    return [e["path"] for e in errors]


def test_default_is_design_5() -> None:
    doc = load_config_dir(CONFIG)
    (psap,) = doc.psaps
    assert psap.id == "kc-valleycom"
    assert psap.timezone == "America/Los_Angeles"
    assert doc.destination(psap.fallback_destination) is not None
    kinds = {d.id: (d.kind, d.languages, d.hours) for d in doc.destinations}
    assert kinds["crisis-connections-988"] == (DestinationKind.CENTER_988, ("en", "es"), None)
    assert kinds["wa-988-backup"] == (DestinationKind.CENTER_988, ("en",), None)
    assert kinds["national-988-backup"] == (DestinationKind.CENTER_988, ("en", "es"), None)
    clinicians = kinds["kc-dispatch-clinicians"]
    assert clinicians[:2] == (DestinationKind.LOCAL_CLINICIAN, ("en",))
    every_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert clinicians[2] == (Window(days=every_day, start="07:00", end="23:00"),)
    policy = doc.policy
    assert set(policy.exclusions) == set(MANDATORY_EXCLUSIONS)
    assert policy.required_screening == ("weapons", "violence", "medical_emergency")
    assert policy.require_consent is True
    assert policy.hop_limit == 2
    assert all(rule.ring_timeout_s == 20 for rule in policy.rules)
    for number in [psap.handback_number, *(d.number for d in doc.destinations)]:
        assert "555" in number


def test_models_are_frozen() -> None:
    doc = load_config_dir(CONFIG)
    with pytest.raises(ValueError, match="frozen"):
        doc.policy.hop_limit = 5  # type: ignore[misc]


def test_policy_invalid_is_an_invalid() -> None:
    assert issubclass(PolicyInvalid, Invalid)


def test_rule_routing_an_excluded_call_to_988_is_rejected() -> None:
    data = default_data()
    data["policy"]["rules"].insert(
        0,
        {
            "id": "armed-to-988",
            "match": {"screening": {"weapons": True}},
            "chain": ["crisis-connections-988"],
        },
    )
    errors = errors_of(data)
    assert paths(errors) == ["policy.rules.0.match"]
    assert "exclusion flag being true (weapons)" in errors[0]["message"]


@pytest.mark.parametrize("flag", MANDATORY_EXCLUSIONS)
def test_exclusion_list_missing_a_mandatory_flag_is_rejected(flag: str) -> None:
    data = default_data()
    data["policy"]["exclusions"].remove(flag)
    errors = errors_of(data)
    assert paths(errors) == ["policy"]
    assert f"missing: {flag}" in errors[0]["message"]


def test_harmless_screening_condition_is_accepted() -> None:
    data = default_data()
    data["policy"]["rules"][0]["match"]["screening"] = {
        "weapons": False,
        "consent_to_transfer": True,
    }
    assert validate_document(data).policy.rules[0].match.screening == {
        "weapons": False,
        "consent_to_transfer": True,
    }


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        (
            lambda d: d["psaps"][0].update(timezone="America/Seatle"),
            "psaps.0.timezone",
            "not an IANA timezone",
        ),
        (
            lambda d: d["psaps"][0].update(handback_number="206-555-0100"),
            "psaps.0.handback_number",
            "should match pattern",
        ),
        (
            lambda d: d["destinations"][1].update(number="+0123"),
            "destinations.1.number",
            "should match pattern",
        ),
        (
            lambda d: d["destinations"][3]["hours"][0].update(start="23:00", end="07:00"),
            "destinations.3.hours.0",
            "must be after start",
        ),
        (
            lambda d: d["destinations"][3]["hours"][0].update(start="7:00"),
            "destinations.3.hours.0",
            "must be HH:MM",
        ),
        (
            lambda d: d["destinations"][3]["hours"][0].update(days=["monday"]),
            "destinations.3.hours.0.days.0",
            "Input should be",
        ),
        (
            lambda d: d["destinations"][3].update(hours=[]),
            "destinations.3.hours",
            "at least 1",
        ),
        (
            lambda d: d["destinations"][0].update(kind="hospital"),
            "destinations.0.kind",
            "Input should be",
        ),
        (
            lambda d: d["destinations"][0].update(notify_url="https://cc.example/notify"),
            "destinations.0",
            "notify_url needs notify_secret_env",
        ),
        (
            lambda d: d["destinations"][0].update(
                notify_url="http://cc.example/notify", notify_secret_env="CC_SECRET"
            ),
            "destinations.0.notify_url",
            "https://",
        ),
        (
            lambda d: d["destinations"][0].update(languages=[]),
            "destinations.0.languages",
            "at least 1",
        ),
        (
            lambda d: d["policy"]["rules"][0]["chain"].append("nowhere-988"),
            "policy.rules.0.chain.3",
            "unknown destination 'nowhere-988'",
        ),
        (
            lambda d: d["policy"]["rules"][1]["match"].update(while_open=["ghost"]),
            "policy.rules.1.match.while_open.0",
            "unknown destination 'ghost'",
        ),
        (
            lambda d: d["psaps"][0].update(fallback_destination="ghost"),
            "psaps.0.fallback_destination",
            "unknown destination 'ghost'",
        ),
        (
            lambda d: d["policy"].update(hop_limit=3),
            "policy.hop_limit",
            "less than or equal to 2",
        ),
        (
            lambda d: d["policy"]["rules"][0].update(ring_timeout_s=2),
            "policy.rules.0.ring_timeout_s",
            "greater than or equal to 5",
        ),
        (
            lambda d: d["policy"]["rules"][0].update(chain=["wa-988-backup", "wa-988-backup"]),
            "policy.rules.0",
            "must not name a destination twice",
        ),
        (
            lambda d: d["policy"]["rules"][1].update(id="first-person"),
            "policy.rules.1.id",
            "duplicate id 'first-person'",
        ),
        (
            lambda d: d["destinations"].append(dict(d["destinations"][0])),
            "destinations.4.id",
            "duplicate id 'crisis-connections-988'",
        ),
        (
            lambda d: d["policy"].update(required_screening=["consent_to_transfer"]),
            "policy.required_screening.0",
            "Input should be",
        ),
        (
            lambda d: d["policy"].update(surprise=True),
            "policy.surprise",
            "Extra inputs are not permitted",
        ),
        (lambda d: d.pop("policy"), "policy", "section missing"),
        (lambda d: d.update(extra={}), "extra", "unknown section"),
        (lambda d: d.update(psaps=[]), "psaps", "at least one psap"),
    ],
)
def test_each_kind_of_bad_document(mutate: Any, path: str, message: str) -> None:
    data = default_data()
    mutate(data)
    errors = errors_of(data)
    assert path in paths(errors), errors
    found = next(e for e in errors if e["path"] == path)
    assert message in found["message"]


def test_every_error_at_once() -> None:
    data = default_data()
    data["psaps"][0]["timezone"] = "Mars/Olympus"
    data["destinations"][2]["number"] = "not a number"
    data["policy"]["rules"][2]["chain"] = ["ghost"]
    data["policy"]["hop_limit"] = 0
    errors = errors_of(data)
    assert set(paths(errors)) == {
        "psaps.0.timezone",
        "destinations.2.number",
        "policy.hop_limit",
    }
    # The policy section itself failed, so its references could not be checked yet; fix it and
    # the dangling reference is reported.
    data["policy"]["hop_limit"] = 2
    assert "policy.rules.2.chain.0" in paths(errors_of(data))


def test_not_an_object() -> None:
    assert paths(errors_of([1, 2])) == ["$"]


# -- files -------------------------------------------------------------------------------------


def load_errors(directory: Path) -> list[dict[str, str]]:
    with pytest.raises(PolicyInvalid) as info:
        load_config_dir(directory)
    return info.value.errors


def test_file_errors_carry_the_file_name(config_dir: Path) -> None:
    dests = yaml.safe_load((config_dir / "destinations.yaml").read_text())
    dests["destinations"][1]["number"] = "12065550188"
    (config_dir / "destinations.yaml").write_text(yaml.safe_dump(dests))
    psaps = yaml.safe_load((config_dir / "psaps.yaml").read_text())
    psaps["psaps"][0]["timezone"] = "Pacific/Nowhere"
    (config_dir / "psaps.yaml").write_text(yaml.safe_dump(psaps))
    errors = load_errors(config_dir)
    assert set(paths(errors)) == {
        "destinations.yaml:destinations.1.number",
        "psaps.yaml:psaps.0.timezone",
    }


def test_missing_file(config_dir: Path) -> None:
    (config_dir / "policy.yaml").unlink()
    assert load_errors(config_dir) == [{"path": "policy.yaml", "message": "file missing"}]


def test_yaml_syntax_error_names_line(config_dir: Path) -> None:
    (config_dir / "psaps.yaml").write_text("psaps:\n  - id: [unclosed\n")
    errors = load_errors(config_dir)
    assert len(errors) == 1
    assert errors[0]["path"].startswith("psaps.yaml:")
    assert errors[0]["message"].startswith("YAML:")


def test_wrong_top_level_key(config_dir: Path) -> None:
    (config_dir / "policy.yaml").write_text("rules: []\n")
    assert load_errors(config_dir) == [
        {"path": "policy.yaml", "message": "must hold exactly one top-level key, 'policy'"}
    ]


def test_empty_file(config_dir: Path) -> None:
    (config_dir / "destinations.yaml").write_text("# nothing\n")
    errors = load_errors(config_dir)
    assert paths(errors) == ["destinations.yaml"]


def test_excluded_call_routed_in_files_is_rejected(config_dir: Path) -> None:
    policy = yaml.safe_load((config_dir / "policy.yaml").read_text())
    policy["policy"]["rules"][0]["match"]["screening"] = {"imminent_risk": True}
    (config_dir / "policy.yaml").write_text(yaml.safe_dump(policy))
    errors = load_errors(config_dir)
    assert paths(errors) == ["policy.yaml:policy.rules.0.match"]
