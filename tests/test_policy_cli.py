"""``python -m gateway rules check|explain`` as an administrator runs them (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway", "rules", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CLEAR = [
    "--flag",
    "weapons=false",
    "--flag",
    "violence=false",
    "--flag",
    "medical_emergency=false",
    "--flag",
    "consent_to_transfer=true",
]


def test_check_default_config() -> None:
    result = run("check", "config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert "1 PSAP(s), 4 destination(s), 3 rule(s)" in result.stdout


def test_check_defaults_to_config_dir_setting(config_dir: Path) -> None:
    (config_dir / "psaps.yaml").unlink()
    result = run("check", env={"GATEWAY_CONFIG_DIR": str(config_dir)})
    assert result.returncode == 1
    assert "psaps.yaml: file missing" in result.stdout


def test_check_broken_policy_lists_every_error(config_dir: Path) -> None:
    dests = yaml.safe_load((config_dir / "destinations.yaml").read_text())
    dests["destinations"][0]["number"] = "555-0188"
    (config_dir / "destinations.yaml").write_text(yaml.safe_dump(dests))
    policy = yaml.safe_load((config_dir / "policy.yaml").read_text())
    policy["policy"]["exclusions"].remove("officer_requested")
    (config_dir / "policy.yaml").write_text(yaml.safe_dump(policy))
    psaps = yaml.safe_load((config_dir / "psaps.yaml").read_text())
    psaps["psaps"][0]["timezone"] = "America/Seattle"
    (config_dir / "psaps.yaml").write_text(yaml.safe_dump(psaps))

    result = run("check", str(config_dir))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("destinations.yaml:destinations.0.number: ") for line in lines)
    assert any(
        line.startswith("policy.yaml:policy.exclusions: ") and "officer_requested" in line
        for line in lines
    )
    assert any(
        line.startswith("psaps.yaml:psaps.0.timezone: ") and "IANA" in line for line in lines
    )
    assert "3 errors" in lines


def test_check_rejects_routing_an_excluded_call(config_dir: Path) -> None:
    policy = yaml.safe_load((config_dir / "policy.yaml").read_text())
    policy["policy"]["rules"][0]["match"]["screening"] = {"attempt_in_progress": True}
    (config_dir / "policy.yaml").write_text(yaml.safe_dump(policy))
    result = run("check", "--config-dir", str(config_dir))
    assert result.returncode == 1
    assert (
        "policy.yaml:policy.rules.0.match.screening.attempt_in_progress: a rule may not match"
        in result.stdout
    )


def test_check_rejects_loosening_the_safety_floor(config_dir: Path) -> None:
    text = (config_dir / "policy.yaml").read_text()
    for was, now in (
        ("require_consent: true", "require_consent: no"),  # YAML 1.1 reads `no` as false
        ("    - violence\n    - medical_emergency\n\n", "\n"),
        ("hop_limit: 2", "hop_limit: 3"),
    ):
        assert was in text
        text = text.replace(was, now)
    (config_dir / "policy.yaml").write_text(text)
    result = run("check", str(config_dir))
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [
        "policy.yaml:policy.required_screening: required_screening must list every mandatory "
        "screening flag (weapons, violence, medical_emergency; a policy may require more); "
        "missing: violence, medical_emergency",
        "policy.yaml:policy.require_consent: require_consent must be true: a caller is "
        "transferred only with consent_to_transfer true, under every policy",
        "policy.yaml:policy.hop_limit: Input should be less than or equal to 2",
        "3 errors",
    ]


def test_explain_says_how_near_each_language_is() -> None:
    result = run(
        "explain",
        "--psap",
        "kc-valleycom",
        "--caller-type",
        "first_person",
        *CLEAR,
        "--language",
        "es-419",
        "--at",
        "2026-06-15T12:00",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "destination wa-988-backup: kept (open, load 0/no limit, does not speak es-419: "
        "nearest en at CLDR distance 84, over 25)"
    ) in result.stdout
    assert (
        "language es-419: reordered to crisis-connections-988, national-988-backup, "
        "wa-988-backup (speakers of es-419 first, nearest first: crisis-connections-988 "
        "distance 5, national-988-backup distance 5; ties and the rest in the rule's order)"
    ) in result.stdout


def test_explain_third_party_at_night() -> None:
    result = run(
        "explain",
        "--config-dir",
        "config",
        "--psap",
        "kc-valleycom",
        "--caller-type",
        "third_party",
        *CLEAR,
        "--at",
        "2026-03-08T11:00:00Z",  # 04:00 PDT
    )
    assert result.returncode == 0, result.stderr
    text, _, why = result.stdout.partition("\n\n")
    decision = json.loads(text)
    assert decision["action"] == "transfer"
    assert [d["id"] for d in decision["destinations"]] == [
        "crisis-connections-988",
        "wa-988-backup",
        "national-988-backup",
    ]
    assert decision["reasons"] == ["rule:third-party-overnight", "closed:kc-dispatch-clinicians"]
    assert "2026-03-08 04:00 Sun PDT" in why
    assert "gate: passes" in why
    assert "rule third-party-daytime: skipped (kc-dispatch-clinicians closed)" in why
    assert "destination wa-988-backup: kept" in why


def test_explain_local_time_and_language() -> None:
    result = run(
        "explain",
        "--psap",
        "kc-valleycom",
        "--caller-type",
        "third_party",
        *CLEAR,
        "--language",
        "es",
        "--tag",
        "youth",
        "--at",
        "2026-11-01T07:00",  # no offset: local time at the PSAP
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout.partition("\n\n")[0])
    assert [d["id"] for d in decision["destinations"]] == [
        "crisis-connections-988",
        "kc-dispatch-clinicians",
    ]
    assert "language es: reordered" in result.stdout


def test_explain_gate() -> None:
    result = run(
        "explain",
        "--psap",
        "kc-valleycom",
        "--caller-type",
        "first_person",
        "--flag",
        "weapons=true",
        "--transfers-so-far",
        "2",
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout.partition("\n\n")[0])
    assert decision["action"] == "stay_with_911"
    assert decision["reasons"] == [
        "excluded:weapons",
        "screening_incomplete:violence",
        "screening_incomplete:medical_emergency",
        "no_consent",
        "hop_limit",
    ]
    assert "gate: fails" in result.stdout


def test_explain_bad_input() -> None:
    unknown = run("explain", "--psap", "nowhere", "--caller-type", "unknown")
    assert unknown.returncode == 1
    assert "unknown PSAP 'nowhere'" in unknown.stdout
    bad_flag = run(
        "explain", "--psap", "kc-valleycom", "--caller-type", "unknown", "--flag", "guns=yes"
    )
    assert bad_flag.returncode == 2
    assert "NAME=true|false|null" in bad_flag.stderr


def test_explain_on_broken_policy(config_dir: Path) -> None:
    (config_dir / "policy.yaml").write_text("policy: [\n")
    result = run(
        "explain",
        "--config-dir",
        str(config_dir),
        "--psap",
        "kc-valleycom",
        "--caller-type",
        "unknown",
    )
    assert result.returncode == 1
    assert "policy.yaml:" in result.stdout
    assert "YAML:" in result.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """``… | head``: the command's output pipe closes early; no traceback on stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "rules", "check", str(ROOT / "config")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the first line
    _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr
    assert b"BrokenPipeError" not in stderr
