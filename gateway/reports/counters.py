"""Program figures (DESIGN.md §6 ``GET /v1/reports/summary``), from counters that outlive records.

Every transition that matters to a figure increments a counter in the same Lua call as the
transition itself (``gateway.core.records``): one hash per PSAP and local day, each field named
``<figure>|<caller type>|<destination id or empty>``. Answer times go to a per-day sorted set whose
members are ``<caller type>|<destination>|<transfer id>`` — opaque ids, no personal data — so
percentiles are exact. A transfer counts on the PSAP-local day it was considered, so a period's
ratios (capture rate, shares) relate outcomes to the calls of that same period.

This module is pure: it turns the raw counters of a period into the summary.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CALLER_TYPES = ("first_person", "third_party", "unknown")

# Figures counted per transfer (and per destination where one is involved).
CONSIDERED = "considered"
KEPT = "kept_with_911"
KEPT_REASON = "kept_reason:"  # + reason code
ELIGIBLE = "eligible"
OFFERED = "offered"  # a destination was dialed: one per ring attempt (the figure ``attempts``)
CONNECTED = "connected"
VIA_BACKUP = "connected_via_backup"
ABANDONED = "abandoned"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"
COMPLETED = "completed"
DISPOSITION = "disposition:"  # + outcome
POLICE = "police:"  # + "yes" / "no"
HANDBACK = "handbacks"
HANDBACK_CONFIRMED = "handbacks_confirmed"
HANDBACK_UNCONFIRMED = "handbacks_unconfirmed"
HANDBACK_NO_CONTACT = "handbacks_no_contact"

PHONE_ONLY_OUTCOME = "resolved_by_phone"

ANSWER_BUCKET = "answer_le:"  # + upper bound in seconds, or "+Inf"
ANSWER_BUCKETS_S: tuple[float, ...] = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
"""Upper bounds of the fixed answer-time buckets (the caller's wait, first ring → answer); a call
counts in the bucket of its whole wait, overall and under the destination that answered."""


def answer_bucket(seconds: float) -> str:
    """The counter figure of the fixed bucket ``seconds`` falls in."""
    bound = next((b for b in ANSWER_BUCKETS_S if seconds <= b), None)
    return f"{ANSWER_BUCKET}{'+Inf' if bound is None else f'{bound:g}'}"


def counter_field(figure: str, caller_type: str, destination_id: str | None = None) -> str:
    return f"{figure}|{caller_type}|{destination_id or ''}"


OWN_ATTEMPT = "attempt:"


def answer_member(caller_type: str, destination_id: str, transfer_id: str) -> str:
    """The member of the caller's wait (first ring → answer)."""
    return f"{caller_type}|{destination_id}|{transfer_id}"


def attempt_member(caller_type: str, destination_id: str, transfer_id: str) -> str:
    """The member of the answering destination's own ring → answer time."""
    return f"{caller_type}|{destination_id}|{OWN_ATTEMPT}{transfer_id}"


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    answers: list[float] = field(default_factory=list)
    """The caller's wait of each answered call: first ring → answer, seconds."""
    rings: list[float] = field(default_factory=list)
    """How long the answering destination rang before it answered, seconds."""


def percentile(values: list[float], share: float) -> float | None:
    """The ``share`` quantile by linear interpolation between closest ranks (numpy's default,
    so p50 is the median). ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def figures(tally: _Tally, *, with_kept: bool = True) -> dict[str, Any]:
    counts = tally.counts
    dispositions = {
        name.removeprefix(DISPOSITION): n
        for name, n in sorted(counts.items())
        if name.startswith(DISPOSITION) and n
    }
    disposed = sum(dispositions.values())
    out: dict[str, Any] = {
        "considered": counts[CONSIDERED],
        "kept_with_911": counts[KEPT],
        "kept_by_reason": {
            name.removeprefix(KEPT_REASON): n
            for name, n in sorted(counts.items())
            if name.startswith(KEPT_REASON) and n
        },
        "eligible": counts[ELIGIBLE],
        "attempts": counts[OFFERED],
        "connected": counts[CONNECTED],
        "capture_rate": _ratio(counts[CONNECTED], counts[ELIGIBLE]),
        "connected_via_backup": counts[VIA_BACKUP],
        "completed": counts[COMPLETED],
        "abandoned": counts[ABANDONED],
        "failed": counts[FAILED],
        "cancelled": counts[CANCELLED],
        "expired": counts[EXPIRED],
        "answer_time_s": {
            "p50": percentile(tally.answers, 0.5),
            "p90": percentile(tally.answers, 0.9),
            "count": len(tally.answers),
            # Calls per fixed bucket of the caller's wait (``≤ bound`` seconds, not cumulative).
            "histogram": {
                bound: counts[ANSWER_BUCKET + bound]
                for bound in [f"{b:g}" for b in ANSWER_BUCKETS_S] + ["+Inf"]
            },
        },
        "ring_time_s": {
            "p50": percentile(tally.rings, 0.5),
            "p90": percentile(tally.rings, 0.9),
            "count": len(tally.rings),
        },
        "dispositions": dispositions,
        "resolved_without_police_share": _ratio(counts[POLICE + "no"], disposed),
        "phone_only_share": _ratio(dispositions.get(PHONE_ONLY_OUTCOME, 0), disposed),
        "handbacks": {
            "total": counts[HANDBACK],
            "confirmed": counts[HANDBACK_CONFIRMED],
            "unconfirmed": counts[HANDBACK_UNCONFIRMED],
            "no_contact": counts[HANDBACK_NO_CONTACT],
            "confirmation_rate": _ratio(counts[HANDBACK_CONFIRMED], counts[HANDBACK]),
        },
    }
    if not with_kept:
        for name in ("considered", "kept_with_911", "kept_by_reason", "eligible", "capture_rate",
                     "failed", "expired", "handbacks"):  # fmt: skip
            out.pop(name)
    return out


def summarize(
    counters: Iterable[Mapping[str, int]],
    answer_members: Iterable[tuple[str, float]],
    *,
    destinations: Iterable[str] = (),
) -> dict[str, Any]:
    """The summary of a period from each day's counter hash and answer-time members.

    ``answer_time_s`` is the caller's wait everywhere (DESIGN.md §6): first destination ringing
    → answer, counted overall, under the caller type and under the destination that answered.
    ``ring_time_s`` is the answering destination's own ring → answer (shorter than the wait when
    a backup answered), in the same three places. ``gateway.reports.glossary`` describes every
    figure."""
    total = _Tally()
    by_type = {ct: _Tally() for ct in CALLER_TYPES}
    by_dest: dict[str, _Tally] = {d: _Tally() for d in destinations}
    for day in counters:
        for name, value in day.items():
            figure, caller_type, destination = name.split("|", 2)
            total.counts[figure] += value
            by_type.setdefault(caller_type, _Tally()).counts[figure] += value
            if destination:
                by_dest.setdefault(destination, _Tally()).counts[figure] += value
    for member, seconds in answer_members:
        caller_type, destination, rest = member.split("|", 2)
        tallies = (
            total,
            by_type.setdefault(caller_type, _Tally()),
            by_dest.setdefault(destination, _Tally()),
        )
        for tally in tallies:
            if rest.startswith(OWN_ATTEMPT):  # the answering destination's own ring time
                tally.rings.append(seconds)
            else:  # the caller's whole wait
                tally.answers.append(seconds)
    return {
        **figures(total),
        "by_caller_type": {ct: figures(t) for ct, t in by_type.items()},
        "by_destination": {d: figures(t, with_kept=False) for d, t in sorted(by_dest.items())},
    }
