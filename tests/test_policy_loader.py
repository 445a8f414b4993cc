"""Loading and validating policies: the shipped default, and every kind of bad file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.types import Strict

from gateway.core.errors import Invalid
from gateway.policy import PolicyInvalid, load_config_dir, validate_document
from gateway.policy.decision import DestinationKind
from gateway.policy.models import MANDATORY_EXCLUSIONS, Policy, PolicyDocument, Window

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
    assert paths(errors) == ["policy.rules.0.match.screening.weapons"]
    assert "exclusion flag being true (weapons)" in errors[0]["message"]


@pytest.mark.parametrize("flag", MANDATORY_EXCLUSIONS)
def test_exclusion_list_missing_a_mandatory_flag_is_rejected(flag: str) -> None:
    data = default_data()
    data["policy"]["exclusions"].remove(flag)
    errors = errors_of(data)
    assert paths(errors) == ["policy.exclusions"]
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
            lambda d: d["psaps"][0].update(handback_number="555-0100"),
            "psaps.0.handback_number",
            "not a valid, dialable phone number",
        ),
        (
            lambda d: d["destinations"][1].update(number="+0123"),
            "destinations.1.number",
            "not a valid, dialable phone number",
        ),
        (
            lambda d: d["destinations"][3]["hours"][0].update(start="23:00", end="07:00"),
            "destinations.3.hours.0.end",
            "must be after start",
        ),
        (
            lambda d: d["destinations"][3]["hours"][0].update(start="7:00"),
            "destinations.3.hours.0.start",
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
            "destinations.0.notify_secret_env",
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
            "policy.rules.0.chain.1",
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
        # Checked on the raw document: a failing policy section does not hide it.
        "policy.rules.2.chain.0",
    }


# -- every error at once, each at its own path ---------------------------------------------------


def test_bad_field_in_one_rule_does_not_hide_a_dangling_chain_in_another() -> None:
    data = default_data()
    data["policy"]["rules"][0]["ring_timeout_s"] = 2
    data["policy"]["rules"][1]["chain"] = ["nope"]
    errors = errors_of(data)
    assert paths(errors) == ["policy.rules.0.ring_timeout_s", "policy.rules.1.chain.0"]
    assert errors[1]["message"] == "unknown destination 'nope'"


def test_references_are_checked_inside_items_that_fail() -> None:
    data = default_data()
    data["psaps"][0].update(timezone="Mars/Olympus", fallback_destination="ghost")
    data["policy"]["rules"][1].update(
        ring_timeout_s=9999, chain=["kc-dispatch-clinicians", "nope"], surprise=1
    )
    data["policy"]["rules"][1]["match"]["while_open"] = ["closed-ghost"]
    errors = errors_of(data)
    assert set(paths(errors)) == {
        "psaps.0.timezone",
        "psaps.0.fallback_destination",
        "policy.rules.1.ring_timeout_s",
        "policy.rules.1.surprise",
        "policy.rules.1.chain.1",
        "policy.rules.1.match.while_open.0",
    }
    assert len(errors) == 6


def test_duplicate_ids_are_reported_whatever_else_fails() -> None:
    data = default_data()
    data["policy"]["hop_limit"] = 0
    data["policy"]["rules"][2]["id"] = "first-person"
    data["destinations"].append({**data["destinations"][0], "number": "bad"})
    errors = errors_of(data)
    assert set(paths(errors)) == {
        "policy.hop_limit",
        "policy.rules.2.id",
        "destinations.4.number",
        "destinations.4.id",
    }


def test_duplicate_paths_count_every_item() -> None:
    data = default_data()
    data["destinations"].insert(0, "not an object")
    data["destinations"].append(dict(data["destinations"][1]))
    errors = errors_of(data)
    assert "destinations.0" in paths(errors)
    assert {"path": "destinations.5.id", "message": "duplicate id 'crisis-connections-988'"} in (
        errors
    )


def test_a_malformed_reference_is_reported_once() -> None:
    data = default_data()
    data["policy"]["rules"][0]["chain"] = ["Not An Id!", 7]
    errors = errors_of(data)
    assert paths(errors) == ["policy.rules.0.chain.0", "policy.rules.0.chain.1"]
    assert "should match pattern" in errors[0]["message"]


def test_no_spurious_too_short_beside_bad_items() -> None:
    data = default_data()
    data["destinations"][3]["hours"][0]["start"] = "7am"
    data["policy"]["rules"][0]["chain"] = ["Bad!"]
    assert paths(errors_of(data)) == ["destinations.3.hours.0.start", "policy.rules.0.chain.0"]
    data = default_data()
    data["destinations"][3]["hours"] = []
    data["policy"]["rules"][0]["chain"] = []
    assert paths(errors_of(data)) == ["destinations.3.hours", "policy.rules.0.chain"]


def test_unreadable_destinations_do_not_make_every_reference_unknown() -> None:
    data = default_data()
    data["destinations"] = {"not": "a list"}
    assert paths(errors_of(data)) == ["destinations"]


def test_the_safety_invariant_is_checked_whatever_else_fails() -> None:
    data = default_data()
    data["policy"]["hop_limit"] = 7
    data["policy"]["exclusions"] = ["weapons", "violence", "weapon"]
    data["policy"]["rules"][0].update(ring_timeout_s=1, chain=["nope"])
    data["policy"]["rules"][0]["match"]["screening"] = {
        "attempt_in_progress": True,
        "imminent_risk": "true",  # not a boolean: an error of its own, never read as true
        "weapons": False,
        "not_a_flag": True,
    }
    errors = errors_of(data)
    by_path = {e["path"]: e["message"] for e in errors}
    assert set(by_path) == {
        "policy.hop_limit",
        "policy.exclusions.2",
        "policy.exclusions",
        "policy.rules.0.ring_timeout_s",
        "policy.rules.0.chain.0",
        "policy.rules.0.match.screening.not_a_flag.[key]",
        "policy.rules.0.match.screening.attempt_in_progress",
        "policy.rules.0.match.screening.imminent_risk",
    }
    assert by_path["policy.exclusions"] == (
        "exclusions must list every mandatory exclusion flag; missing: medical_emergency, "
        "attempt_in_progress, severe_intoxication, officer_requested, imminent_risk"
    )
    message = by_path["policy.rules.0.match.screening.attempt_in_progress"]
    assert "exclusion flag being true (attempt_in_progress)" in message
    assert "stays with 911" in message
    assert by_path["policy.rules.0.match.screening.imminent_risk"] == (
        "Input should be a valid boolean"
    )


def test_the_models_enforce_the_safety_invariant_on_their_own() -> None:
    from pydantic import ValidationError

    from gateway.policy.models import Match, Policy

    with pytest.raises(ValidationError) as info:
        Match(screening={"violence": True})
    assert [e["loc"] for e in info.value.errors()] == [("screening", "violence")]
    policy = load_config_dir(CONFIG).policy.model_dump()
    policy["exclusions"] = ("weapons",)
    with pytest.raises(ValidationError) as info:
        Policy.model_validate(policy)
    assert [e["loc"] for e in info.value.errors()] == [("exclusions",)]


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        (
            lambda d: d["policy"]["exclusions"].append("violence"),
            "policy.exclusions.7",
            "exclusions must not repeat a flag ('violence' again)",
        ),
        (
            lambda d: d["policy"]["required_screening"].append("weapons"),
            "policy.required_screening.3",
            "required_screening must not repeat a flag ('weapons' again)",
        ),
        (
            lambda d: d["policy"]["rules"][1].update(
                chain=["kc-dispatch-clinicians", "wa-988-backup", "kc-dispatch-clinicians"]
            ),
            "policy.rules.1.chain.2",
            "chain must not name a destination twice ('kc-dispatch-clinicians' again)",
        ),
        (
            lambda d: d["destinations"][3]["hours"][0].update(days=["mon", "tue", "mon"]),
            "destinations.3.hours.0.days.2",
            "days must not repeat ('mon' again)",
        ),
        (
            lambda d: d["destinations"][3]["hours"][0].update(end="25:00"),
            "destinations.3.hours.0.end",
            "'25:00' must be HH:MM (00:00 to 24:00)",
        ),
        (
            lambda d: d["psaps"][0].update(cad_url="https://cad.example/eido"),
            "psaps.0.cad_secret_env",
            "cad_url needs cad_secret_env (EIDOs to CAD are always signed)",
        ),
        (
            lambda d: d["destinations"][1].update(notify_url="https://cc.example/n"),
            "destinations.1.notify_secret_env",
            "notify_url needs notify_secret_env (notices are always signed)",
        ),
    ],
)
def test_semantic_errors_carry_the_precise_path(mutate: Any, path: str, message: str) -> None:
    data = default_data()
    mutate(data)
    assert errors_of(data) == [{"path": path, "message": message}]


def test_semantic_errors_beside_field_errors_of_the_same_object() -> None:
    data = default_data()
    data["psaps"][0].update(cad_url="http://cad.example/eido", handback_number="911")
    data["destinations"][3]["hours"][0].update(start="23:00", end="07:00", days=["mon", "mon"])
    data["destinations"][3]["max_concurrent"] = 0
    errors = errors_of(data)
    assert set(paths(errors)) == {
        "psaps.0.handback_number",
        "psaps.0.cad_url",
        "psaps.0.cad_secret_env",
        "destinations.3.max_concurrent",
        "destinations.3.hours.0.days.1",
        "destinations.3.hours.0.end",
    }


def test_file_paths_of_every_error_at_once(config_dir: Path) -> None:
    policy = yaml.safe_load((config_dir / "policy.yaml").read_text())
    policy["policy"]["rules"][0]["ring_timeout_s"] = 2
    policy["policy"]["rules"][2]["chain"] = ["nope"]
    policy["policy"]["exclusions"].remove("imminent_risk")
    (config_dir / "policy.yaml").write_text(yaml.safe_dump(policy))
    assert set(paths(load_errors(config_dir))) == {
        "policy.yaml:policy.exclusions",
        "policy.yaml:policy.rules.0.ring_timeout_s",
        "policy.yaml:policy.rules.2.chain.0",
    }


def test_not_an_object() -> None:
    assert paths(errors_of([1, 2])) == ["$"]


# -- files -------------------------------------------------------------------------------------


def load_errors(directory: Path) -> list[dict[str, str]]:
    with pytest.raises(PolicyInvalid) as info:
        load_config_dir(directory)
    return info.value.errors


def test_file_errors_carry_the_file_name(config_dir: Path) -> None:
    dests = yaml.safe_load((config_dir / "destinations.yaml").read_text())
    dests["destinations"][1]["number"] = "555-0188"
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
    assert paths(errors) == ["policy.yaml:policy.rules.0.match.screening.imminent_risk"]


# -- the safety floor (DESIGN.md §5): no policy may loosen it -----------------------------------

NOT_A_BOOLEAN = "Input should be a valid boolean"
CONSENT_OFF = (
    "require_consent must be true: a caller is transferred only with consent_to_transfer true, "
    "under every policy"
)
SCREENING_FLOOR = (
    "required_screening must list every mandatory screening flag (weapons, violence, "
    "medical_emergency; a policy may require more); missing: "
)


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        (False, CONSENT_OFF),
        ("no", NOT_A_BOOLEAN),
        ("false", NOT_A_BOOLEAN),
        (0, NOT_A_BOOLEAN),
        # Not false, but not booleans either: never coerced.
        (1, NOT_A_BOOLEAN),
        ("true", NOT_A_BOOLEAN),
        ("yes", NOT_A_BOOLEAN),
        (None, NOT_A_BOOLEAN),
    ],
)
def test_consent_is_always_required(spelling: Any, message: str) -> None:
    data = default_data()
    data["policy"]["require_consent"] = spelling
    assert errors_of(data) == [{"path": "policy.require_consent", "message": message}]


@pytest.mark.parametrize("flag", ["weapons", "violence", "medical_emergency"])
def test_each_mandatory_screening_flag_is_required(flag: str) -> None:
    data = default_data()
    data["policy"]["required_screening"].remove(flag)
    assert errors_of(data) == [
        {"path": "policy.required_screening", "message": SCREENING_FLOOR + flag}
    ]


def test_required_screening_cannot_be_emptied() -> None:
    data = default_data()
    data["policy"]["required_screening"] = []
    assert errors_of(data) == [
        {
            "path": "policy.required_screening",
            "message": SCREENING_FLOOR + "weapons, violence, medical_emergency",
        }
    ]


def test_a_policy_may_require_more_screening_and_defaults_to_the_floor() -> None:
    data = default_data()
    data["policy"]["required_screening"] = [
        "imminent_risk",
        "medical_emergency",
        "violence",
        "weapons",
    ]
    required = validate_document(data).policy.required_screening
    assert required == ("imminent_risk", "medical_emergency", "violence", "weapons")
    del data["policy"]["required_screening"]
    assert validate_document(data).policy.required_screening == (
        "weapons",
        "violence",
        "medical_emergency",
    )


@pytest.mark.parametrize(
    ("hop_limit", "message"),
    [
        (0, "Input should be greater than or equal to 1"),
        (3, "Input should be less than or equal to 2"),
        (True, "Input should be a valid integer"),
        ("2", "Input should be a valid integer"),
    ],
)
def test_hop_limit_is_1_or_2(hop_limit: Any, message: str) -> None:
    data = default_data()
    data["policy"]["hop_limit"] = hop_limit
    assert errors_of(data) == [{"path": "policy.hop_limit", "message": message}]


@pytest.mark.parametrize("flag", ["consent_to_transfer", "weapons", "imminent_risk"])
@pytest.mark.parametrize("spelling", ["no", "false", 0, 1, "true"])
def test_rule_screening_answers_are_true_booleans(flag: str, spelling: Any) -> None:
    data = default_data()
    data["policy"]["rules"][0]["match"]["screening"] = {flag: spelling}
    assert errors_of(data) == [
        {"path": f"policy.rules.0.match.screening.{flag}", "message": NOT_A_BOOLEAN}
    ]


def test_every_loosening_at_once_each_at_its_path() -> None:
    data = default_data()
    data["policy"].update(require_consent="no", required_screening=["violence"], hop_limit=3)
    data["policy"]["exclusions"].remove("weapons")
    data["policy"]["rules"][1]["match"]["screening"] = {"medical_emergency": 0}
    data["policy"]["rules"][2]["ring_timeout_s"] = 1
    assert errors_of(data) == [
        {
            "path": "policy.exclusions",
            "message": "exclusions must list every mandatory exclusion flag; missing: weapons",
        },
        {
            "path": "policy.required_screening",
            "message": SCREENING_FLOOR + "weapons, medical_emergency",
        },
        {"path": "policy.require_consent", "message": NOT_A_BOOLEAN},
        {"path": "policy.hop_limit", "message": "Input should be less than or equal to 2"},
        {"path": "policy.rules.1.match.screening.medical_emergency", "message": NOT_A_BOOLEAN},
        {
            "path": "policy.rules.2.ring_timeout_s",
            "message": "Input should be greater than or equal to 5",
        },
    ]


def test_the_models_keep_the_floor_on_their_own() -> None:
    policy = load_config_dir(CONFIG).policy.model_dump()
    policy.update(required_screening=("weapons",), require_consent=False, hop_limit=0)
    with pytest.raises(ValidationError) as info:
        Policy.model_validate(policy)
    assert [e["loc"] for e in info.value.errors()] == [
        ("required_screening",),
        ("require_consent",),
        ("hop_limit",),
    ]


def _bools(annotation: Any, metadata: list[Any], where: str) -> list[tuple[str, bool]]:
    """Every ``bool`` inside ``annotation``, with whether it is strict."""
    if get_origin(annotation) is Annotated:
        inner, *more = get_args(annotation)
        return _bools(inner, [*metadata, *more], where)
    if annotation is bool:
        return [(where, any(isinstance(m, Strict) and m.strict for m in metadata))]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [
            found
            for name, info in annotation.model_fields.items()
            for found in _bools(info.annotation, list(info.metadata), f"{where}.{name}")
        ]
    return [found for arg in get_args(annotation) for found in _bools(arg, [], f"{where}[]")]


def test_every_boolean_of_the_policy_document_is_strict() -> None:
    found = _bools(PolicyDocument, [], "document")
    assert ("document.policy.require_consent", True) in found
    assert ("document.policy.rules[].match.screening[][]", True) in found
    assert [where for where, strict in found if not strict] == []

    class Loose(BaseModel):  # what the walk would report
        flags: dict[str, bool | None]
        on: bool

    assert _bools(Loose, [], "loose") == [("loose.flags[][]", False), ("loose.on", False)]


def test_a_loosened_policy_file_is_rejected(config_dir: Path) -> None:
    policy = yaml.safe_load((config_dir / "policy.yaml").read_text())
    policy["policy"]["require_consent"] = False
    policy["policy"]["required_screening"] = ["weapons", "violence"]
    (config_dir / "policy.yaml").write_text(yaml.safe_dump(policy))
    assert paths(load_errors(config_dir)) == [
        "policy.yaml:policy.required_screening",
        "policy.yaml:policy.require_consent",
    ]
