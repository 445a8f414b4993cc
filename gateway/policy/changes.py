"""What changed between two policy documents, path by path, for the version list (DESIGN.md §9).

Each change names its path in the document's JSON shape, with list items that carry an ``id``
named by that id rather than their position, and shows the old and the new value::

    destinations.wa-988-backup.languages: [en] → [en, zh]
    policy.hop_limit: 2 → 1
    policy.rules.first-person.chain: [crisis-connections-988, wa-988-backup] → [wa-988-backup]
    destinations.county-mobile-team: added
    policy.rules.youth: removed
    policy.rules: order [first-person, youth] → [youth, first-person]

A missing optional value reads ``none``. Values are shown in a compact YAML-like flow form,
each cut at ``MAX_VALUE`` characters; the whole summary at ``MAX_SUMMARY``, ending with how many
more changes there were. Policy documents hold no personal data (numbers are organizations'
lines), so a summary may be shown to any key that may read the policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.policy.models import PolicyDocument

MAX_VALUE = 120
"""Longest rendering of one old or new value in a summary."""
MAX_SUMMARY = 2000
"""Longest summary; the changes past it are counted, not shown."""
NO_CHANGE = "no change"


def render(value: Any) -> str:
    """``value`` (JSON data) in flow form: ``[en, zh]``, ``{start: 07:00, end: 23:00}``,
    ``none`` for null, ``true``/``false``; cut at ``MAX_VALUE`` characters."""
    text = _flow(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _flow(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _keyed(items: Any) -> dict[str, Any] | None:
    """A list whose items are objects with distinct string ids, as id → item; else None."""
    if not isinstance(items, list) or not items:
        return None
    if not all(isinstance(i, Mapping) and isinstance(i.get("id"), str) for i in items):
        return None
    by_id = {i["id"]: i for i in items}
    return by_id if len(by_id) == len(items) else None


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Every change from ``old`` to ``new`` (JSON data), one line each, in document order."""
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        lines: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            lines += diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return lines
    before, after = _keyed(old), _keyed(new)
    if before is not None and after is not None:
        lines = []
        for key in [*before, *(k for k in after if k not in before)]:
            where = f"{path}.{key}"
            if key not in after:
                lines.append(f"{where}: removed")
            elif key not in before:
                lines.append(f"{where}: added")
            else:
                lines += diff(before[key], after[key], where)
        kept_before = [k for k in before if k in after]
        kept_after = [k for k in after if k in before]
        if kept_before != kept_after:
            lines.append(f"{path}: order {render(kept_before)} → {render(kept_after)}")
        return lines
    return [f"{path}: {render(old)} → {render(new)}"]


def changes(old: PolicyDocument, new: PolicyDocument) -> list[str]:
    """Every change from ``old`` to ``new``, one ``path: old → new`` line each."""
    return diff(old.model_dump(mode="json"), new.model_dump(mode="json"))


def summarize(old: PolicyDocument | None, new: PolicyDocument) -> str:
    """The changes from ``old`` to ``new`` joined with ``; `` (``no change`` when there is none;
    ``initial policy`` without an ``old``), at most ``MAX_SUMMARY`` characters."""
    if old is None:
        return "initial policy"
    return join(changes(old, new))


def join(lines: list[str]) -> str:
    """``lines`` joined with ``; `` (``no change`` for none), at most ``MAX_SUMMARY``
    characters: the lines past it are counted (``; … 12 more``), never cut in the middle."""
    if not lines:
        return NO_CHANGE
    shown: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        if shown and size + len(line) > MAX_SUMMARY - 24:  # room for "; … N more"
            return "; ".join(shown) + f"; … {len(lines) - i} more"
        shown.append(line)
        size += len(line) + 2
    return "; ".join(shown)
