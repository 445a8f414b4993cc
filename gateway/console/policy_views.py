"""What the policy editor shows, as plain data (DESIGN.md §10): the policy's structure in words,
a draft's validation errors at their paths (and the draft's line), the changes from the live
version, the versions, and a save refused because someone else saved first.

No I/O and no HTML here, so every piece is tested without a browser
(``tests/test_console_policy_views.py``). The draft is YAML — the policy's JSON shape, as
``GET /v1/admin/routing`` answers it without ``version``; JSON is accepted too (it is YAML).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from gateway.console.views import CALLER_TYPES, FLAG_LABELS, language_words, reason_words
from gateway.policy.changes import NO_CHANGE, changes
from gateway.policy.loader import PolicyInvalid, validate_document
from gateway.policy.models import Destination, PolicyDocument, Rule, Window
from gateway.policy.service import VersionInfo

MAX_DRAFT = 200_000
"""Longest draft accepted, in characters (a policy of 200 rules is far shorter)."""


# ---- the draft ----------------------------------------------------------------------------------


def _pruned(value: Any) -> Any:
    """``value`` without unset optional fields: nulls and empty lists or objects (each such
    field's default is the same: absent, ``[]`` or ``{}``)."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def draft_text(document: PolicyDocument) -> str:
    """``document`` as the editor's YAML: the GET shape, in its own key order, unset optional
    fields (null, empty) left out."""
    data = _pruned(document.model_dump(mode="json"))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


@dataclass(frozen=True, slots=True)
class ErrorLine:
    """One validation error as the API reports it (``{path, message}``), with the draft's line
    the path leads to when it can be found (1-based)."""

    path: str
    message: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ChangeLine:
    """One change from the live version: ``path: old → new`` split at the path."""

    path: str
    change: str


@dataclass(frozen=True, slots=True)
class DraftCheck:
    """A draft read and validated: the document when valid, else every error; and, when valid,
    each change from the live policy (empty: the draft is the live policy)."""

    document: PolicyDocument | None
    errors: list[ErrorLine]
    changes: list[ChangeLine]

    @property
    def valid(self) -> bool:
        return self.document is not None


def parse_draft(text: str) -> tuple[Any, list[ErrorLine]]:
    """The draft's data, or the YAML error at ``$`` with its line. Aliases are refused: a
    draft of a few lines could otherwise expand to an enormous document."""
    if len(text) > MAX_DRAFT:
        return None, [ErrorLine("$", f"the draft is longer than {MAX_DRAFT} characters")]
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark is not None else None
                return None, [ErrorLine("$", "YAML aliases (*name) are not accepted", line)]
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not readable"
        line = mark.line + 1 if mark is not None else None
        return None, [ErrorLine("$", f"not valid YAML: {problem}", line)]


def _node_line(root: yaml.Node | None, path: str) -> int | None:
    """The 1-based line of the YAML node at ``path`` (``policy.rules.0.chain``), or of the
    deepest node found on the way; None when the path leads nowhere in the text."""
    if root is None or path == "$":
        return None
    node: yaml.Node = root
    line: int | None = None
    for part in path.split("."):
        found: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    found, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and part.isdigit():
            index = int(part)
            if index < len(node.value):
                found = node.value[index]
                line = found.start_mark.line + 1
        if found is None:
            break
        node = found
    return line


def error_lines(errors: Iterable[Mapping[str, Any]], text: str) -> list[ErrorLine]:
    """The API's ``{path, message}`` errors, each with the draft's line for its path."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        root = None
    return [
        ErrorLine(
            str(e.get("path", "$")),
            str(e.get("message", "")),
            _node_line(root, str(e.get("path", "$"))),
        )
        for e in errors
    ]


def change_lines(lines: Iterable[str]) -> list[ChangeLine]:
    """``gateway.policy.changes`` lines (``path: old → new``) split at the path."""
    out = []
    for line in lines:
        path, _, change = line.partition(": ")
        out.append(ChangeLine(path, change))
    return out


def check_draft(text: str, live: PolicyDocument) -> DraftCheck:
    """Read and validate the draft as ``PUT /v1/admin/routing`` would (the same checks, the same
    paths); when valid, its changes from ``live``."""
    data, problems = parse_draft(text)
    if problems:
        return DraftCheck(None, problems, [])
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "version"}
    try:
        document = validate_document(data)
    except PolicyInvalid as exc:
        return DraftCheck(None, error_lines(exc.errors, text), [])
    return DraftCheck(document, [], change_lines(changes(live, document)))


# ---- trying a call --------------------------------------------------------------------------


def local_instant(value: str, zone: ZoneInfo) -> datetime | None:
    """A ``datetime-local`` field (``2026-11-30T21:30``) as an instant in ``zone`` (the PSAP's);
    None when empty; ``ValueError`` when unreadable."""
    value = value.strip()
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=zone)


# ---- a decision's trace, in words -------------------------------------------------------------

_DECISION_TRANSFER = re.compile(r"^decision: transfer to (.+), ringing each (\d+) s$")
_DECISION_STAY = re.compile(r"^decision: stay_with_911 \((.*)\)$")
_GATE_FAILS = re.compile(r"^gate: fails — (.*)$")
_RULE = re.compile(r"^rule ([^:]+): (matches|skipped \((.*)\))$")
_DESTINATION = re.compile(r"^destination ([^:]+): (.*)$")
_PSAP = re.compile(r"^psap ([^:]+): local time (.*)$")
_REQUEST = re.compile(
    r"^request: caller_type=(\S+) language=(\S+) transfers_so_far=(\d+) tags=\[(.*)\]$"
)


def _request_words(found: re.Match[str]) -> str:
    caller = CALLER_TYPES.get(found.group(1), found.group(1)).split(" (")[0].lower()
    hops = int(found.group(3))
    words = f"The call: {caller} caller, language {language_words(found.group(2))}, "
    words += f"{hops} transfer{'s' if hops != 1 else ''} so far"
    tags = found.group(4).replace("'", "")
    return words + (f", tagged {tags}" if tags else "")


def trace_words(line: str, names: Mapping[str, str], psaps: Mapping[str, str] | None = None) -> str:
    """One line of the engine's trace (``gateway.policy.engine.explain``) for a person: reason
    codes in words, destinations (``names``) and PSAPs (``psaps``) by name; a line of another
    form as it is."""
    if found := _PSAP.match(line):
        psap = (psaps or {}).get(found.group(1), found.group(1))
        return f"At {psap}: local time {found.group(2)}"
    if found := _REQUEST.match(line):
        return _request_words(found)
    if found := _DECISION_TRANSFER.match(line):
        chain = ", then ".join(names.get(d, d) for d in found.group(1).split(", "))
        return f"Decision: transfer to {chain}, ringing each {found.group(2)} s"
    if found := _DECISION_STAY.match(line):
        codes = [c for c in found.group(1).split(", ") if c]
        return "Decision: keep the call with 911 — " + "; ".join(
            reason_words(c, names) if c != "no_rule" else "no rule matches the call" for c in codes
        )
    if found := _GATE_FAILS.match(line):
        codes = found.group(1).split(", ")
        return "Safety gate: the call stays with 911 — " + "; ".join(
            reason_words(c, names) for c in codes
        )
    if line.startswith("gate: passes"):
        return "Safety gate: passes" + line.removeprefix("gate: passes")
    if found := _RULE.match(line):
        if found.group(2) == "matches":
            return f"Rule {found.group(1)}: matches — its chain is used"
        return f"Rule {found.group(1)}: does not match ({found.group(3)})"
    if found := _DESTINATION.match(line):
        return f"{names.get(found.group(1), found.group(1))}: {found.group(2)}"
    if line == "no rule matches":
        return "No rule matches the call"
    return line


# ---- the policy's structure, in words -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DestinationRow:
    id: str
    name: str
    kind: str
    org: str
    number: str
    languages: str
    hours: str
    capacity: str


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: str
    description: str
    when: str
    chain: str
    ring: str


@dataclass(frozen=True, slots=True)
class PsapRow:
    id: str
    name: str
    timezone: str
    fallback: str


@dataclass(frozen=True, slots=True)
class Structure:
    """The policy as the editor shows it beside the text: the safety gate, the rules in order,
    the destinations and the PSAPs."""

    gate: list[str]
    rules: list[RuleRow]
    destinations: list[DestinationRow]
    psaps: list[PsapRow]


def _window(window: Window) -> str:
    days = ", ".join(d.capitalize() for d in window.days)
    return f"{days} {window.start} to {window.end}"


def hours_words(destination: Destination) -> str:
    """``Mon, Tue 07:00 to 23:00; Sat 10:00 to 14:00``, or ``always open``."""
    if destination.hours is None:
        return "always open"
    return "; ".join(_window(w) for w in destination.hours)


def _flag(flag: str) -> str:
    return FLAG_LABELS.get(flag, flag).lower()


def when_words(rule: Rule, names: Mapping[str, str]) -> str:
    """A rule's match in words: ``caller is First person …; language es; weapons involved:
    no``; ``every call`` for an empty match."""
    match = rule.match
    parts = []
    if match.caller_types:
        kinds = " or ".join(
            CALLER_TYPES.get(c, c).split(" (")[0].lower() for c in match.caller_types
        )
        parts.append(f"caller is {kinds}")
    if match.tags:
        parts.append("tagged " + ", ".join(match.tags))
    if match.languages:
        parts.append("language " + " or ".join(match.languages))
    for flag, answer in match.screening.items():
        said = "not asked" if answer is None else ("yes" if answer else "no")
        parts.append(f"{_flag(flag)}: {said}")
    if match.while_open:
        parts.append("while " + " and ".join(names.get(d, d) for d in match.while_open) + " open")
    return "; ".join(parts) if parts else "every call"


def structure(document: PolicyDocument) -> Structure:
    """``document`` in words for the editor's side panel."""
    names = {d.id: d.name for d in document.destinations}
    policy = document.policy
    gate = [
        "Stays with 911 when any is yes: " + ", ".join(_flag(f) for f in policy.exclusions),
        "Must be asked: " + ", ".join(_flag(f) for f in policy.required_screening),
        "Caller's consent required" if policy.require_consent else "Consent not required",
        f"Stays with 911 after {policy.hop_limit} transfer{'s' if policy.hop_limit != 1 else ''}",
    ]
    rules = [
        RuleRow(
            id=r.id,
            description=r.description or "",
            when=when_words(r, names),
            chain=" → ".join(names.get(d, d) for d in r.chain),
            ring=f"{r.ring_timeout_s} s each",
        )
        for r in policy.rules
    ]
    destinations = [
        DestinationRow(
            id=d.id,
            name=d.name,
            kind=str(d.kind),
            org=d.org,
            number=d.number,
            languages=", ".join(d.languages),
            hours=hours_words(d),
            capacity="no limit" if d.max_concurrent is None else f"{d.max_concurrent} at once",
        )
        for d in document.destinations
    ]
    psaps = [
        PsapRow(p.id, p.name, p.timezone, names.get(p.fallback_destination, p.fallback_destination))
        for p in document.psaps
    ]
    return Structure(gate, rules, destinations, psaps)


# ---- versions and conflicts ---------------------------------------------------------------------


def when_words_at(at: datetime, zone: ZoneInfo) -> str:
    """``2026-11-30 14:05 PST``: a moment in ``zone``."""
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def summary_lines(summary: str) -> list[str]:
    """A version's summary (changes joined with ``; ``) as one line per change."""
    if summary == NO_CHANGE:
        return [summary]
    return [part for part in summary.split("; ") if part]


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    at: str
    actor: str
    changes: list[str]
    live: bool


def version_rows(versions: Sequence[VersionInfo], live: int, zone: ZoneInfo) -> list[VersionRow]:
    """``GET /v1/admin/routing/versions`` newest first, in words, the live one marked."""
    return [
        VersionRow(
            v.version,
            when_words_at(v.at, zone),
            v.actor,
            summary_lines(v.summary),
            v.version == live,
        )
        for v in sorted(versions, key=lambda v: v.version, reverse=True)
    ]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A save refused because the draft was made from ``base`` and ``live`` is live now (412):
    who saved what since, for the person to review before saving again."""

    base: int
    live: int
    message: str
    theirs: list[VersionRow]


def conflict(base: int, live: int, versions: Sequence[VersionInfo], zone: ZoneInfo) -> Conflict:
    """The words for a save refused with 412: ``Someone else saved version 5 at … — review
    their change``, and every version saved since ``base``."""
    since = [v for v in versions if v.version > base]
    latest = max(since, key=lambda v: v.version, default=None)
    if latest is None:
        message = (
            f"Version {live} is live, not version {base} your draft was made from — review it. "
            "Nothing was saved."
        )
    else:
        message = (
            f"Someone else saved version {latest.version} at {when_words_at(latest.at, zone)} "
            f"({latest.actor}) — review their change. Your draft was not saved and nothing "
            "was overwritten; it is kept below, now compared with the live version."
        )
    return Conflict(base, live, message, version_rows(since, live, zone))
