"""A one-line summary of what changed between two policy documents (for the version list)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.policy.models import PolicyDocument

MAX_SUMMARY = 300


def _by_id(label: str, old: Sequence[Any], new: Sequence[Any]) -> list[str]:
    before = {item.id: item for item in old}
    after = {item.id: item for item in new}
    parts = [f"{label} {i} added" for i in after if i not in before]
    parts += [f"{label} {i} removed" for i in before if i not in after]
    parts += [f"{label} {i} changed" for i in after if i in before and after[i] != before[i]]
    return parts


def summarize(old: PolicyDocument | None, new: PolicyDocument) -> str:
    if old is None:
        return "initial policy"
    parts = _by_id("psap", old.psaps, new.psaps)
    parts += _by_id("destination", old.destinations, new.destinations)
    for field in ("exclusions", "required_screening", "require_consent", "hop_limit"):
        was, now = getattr(old.policy, field), getattr(new.policy, field)
        if was != now:
            show = (lambda v: ",".join(v)) if isinstance(now, tuple) else str
            parts.append(f"{field} {show(was)} → {show(now)}")
    parts += _by_id("rule", old.policy.rules, new.policy.rules)
    old_order = [r.id for r in old.policy.rules if r.id in {n.id for n in new.policy.rules}]
    new_order = [r.id for r in new.policy.rules if r.id in set(old_order)]
    if old_order != new_order:
        parts.append("rules reordered")
    text = "; ".join(parts) or "no change"
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"
