"""The README's commands are real: every ``make X`` it shows is a Makefile target, and CI runs the
same ``make test`` a developer does."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.$()/-]+(?:\s+[A-Za-z0-9_.$()/-]+)*)\s*:(?![=:])", line)
        if match and not line.startswith(("\t", "#")):
            targets |= set(match.group(1).split())
    return targets


def readme_make_commands() -> set[str]:
    """``make X`` wherever the README shows a command: fenced blocks and inline code (prose such
    as "could not make contact" is not a command)."""
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"^```.*?^```", text, re.MULTILINE | re.DOTALL)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return set(re.findall(r"(?<![\w-])make\s+([a-z][\w-]*)", "\n".join(code)))


def test_readme_shows_make_run_and_make_test() -> None:
    assert {"run", "test"} <= readme_make_commands()


def test_every_make_command_in_the_readme_is_a_target() -> None:
    targets = makefile_targets()
    assert {"run", "test", "lint", "typecheck"} <= targets  # the parser itself works
    missing = readme_make_commands() - targets
    assert not missing, f"README mentions make {sorted(missing)}, which the Makefile lacks"


def test_targets_that_do_not_make_files_are_phony() -> None:
    text = (ROOT / "Makefile").read_text()
    phony = set(" ".join(re.findall(r"^\.PHONY:(.*)$", text, re.MULTILINE)).split())
    assert readme_make_commands() <= phony


def test_ci_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert "make test" in commands
    assert script.startswith("#!")
    assert re.search(r"^set -\w*e", script, re.MULTILINE)
