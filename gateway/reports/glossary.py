"""What every figure of ``GET /v1/reports/summary`` means (DESIGN.md §6): the one glossary.

``GLOSSARY`` is read by the OpenAPI document's report schema (``gateway.web.reports``: each
property's description) and is the README's "Figures" table (``markdown_table``; a test keeps
the two equal). A dotted name is a member of an object figure (``answer_time_s.p50``).

Counting units, said in every entry because they differ: a *call* is one transfer request
(``POST /v1/transfers``), counted once whatever happens to it; an *attempt* is one destination
rung for a call, so a call that rolls over to a backup is one call and two attempts. Periods are
PSAP-local dates; a call counts on the day it was considered, and everything that later happens
to it (its answer, its disposition, its handback) counts on that same day.
"""

from __future__ import annotations

from collections.abc import Mapping

GLOSSARY: Mapping[str, str] = {
    "considered": "Calls the policy decided on (one per transfer request).",
    "kept_with_911": "Calls the policy kept with 911 (decision `stay_with_911`).",
    "kept_by_reason": "Calls kept with 911, by reason code (`excluded:weapons`, "
    "`screening_incomplete:violence`, `no_consent`, `hop_limit`, …); a call kept for several "
    "reasons counts under each.",
    "eligible": "Calls the policy decided to transfer (`considered` minus `kept_with_911`).",
    "attempts": "Ring attempts: destinations dialed for calls, one per destination per call "
    "(a call that rolls over from the primary to a backup is two attempts).",
    "connected": "Calls a destination answered.",
    "capture_rate": "`connected` ÷ `eligible`; null when nothing was eligible.",
    "connected_via_backup": "Connected calls answered by a destination after the first of the "
    "chain.",
    "completed": "Connected calls whose conference has ended.",
    "abandoned": "Calls whose 911 leg left the conference while a destination rang.",
    "failed": "Calls where every destination of the chain was tried and none answered.",
    "cancelled": "Calls the PSAP cancelled before a destination answered (before the bridge "
    "or while ringing).",
    "expired": "Calls whose bridge code was never used before it expired.",
    "answer_time_s": "The caller's wait for answered calls, in seconds: from the first "
    "destination starting to ring to the answer, including every destination that rang "
    "before (DESIGN.md §6). Under `by_destination`: the wait of the calls that destination "
    "answered.",
    "answer_time_s.p50": "Median caller's wait, seconds; null when no call was answered.",
    "answer_time_s.p90": "90th percentile of the caller's wait, seconds; null when no call was "
    "answered.",
    "answer_time_s.count": "Answered calls measured.",
    "answer_time_s.histogram": "Answered calls by caller's wait, per fixed bucket: the key is "
    "the bucket's upper bound in seconds (`5` … `300`, `+Inf`); each call counts in one "
    "bucket (not cumulative).",
    "ring_time_s": "How long the answering destination itself rang before it answered, in "
    "seconds: from its own attempt starting to ring (shorter than `answer_time_s` when a "
    "backup answered after others rang).",
    "ring_time_s.p50": "Median ring time of the answering destination, seconds; null when no "
    "call was answered.",
    "ring_time_s.p90": "90th percentile of the answering destination's ring time, seconds; "
    "null when no call was answered.",
    "ring_time_s.count": "Answered attempts measured (one per connected call).",
    "dispositions": "Connected calls by the outcome the destination recorded (outcome → "
    "count); calls without a disposition yet are not counted.",
    "resolved_without_police_share": "Of the calls with a disposition, the share the "
    "destination recorded without police involvement; null when none has a disposition.",
    "phone_only_share": "Of the calls with a disposition, the share resolved by phone alone "
    "(`resolved_by_phone`); null when none has a disposition.",
    "handbacks": "Handbacks from a destination to 911 (DESIGN.md §4).",
    "handbacks.total": "Handbacks made.",
    "handbacks.confirmed": "Handbacks whose PSAP confirmed contact with the caller.",
    "handbacks.unconfirmed": "Handbacks flagged unconfirmed (no PSAP answer by the "
    "confirmation timeout) and not confirmed since.",
    "handbacks.no_contact": "Handbacks whose PSAP reported it could not reach the caller.",
    "handbacks.confirmation_rate": "`confirmed` ÷ `total`; null without handbacks.",
    # The report's own fields around the figures.
    "psap_id": "The PSAP reported on; null when the report covers several.",
    "psap_ids": "Every PSAP whose calls the report counts.",
    "from": "First PSAP-local date of the period (YYYY-MM-DD).",
    "to": "Last PSAP-local date of the period, inclusive.",
    "by_caller_type": "The same figures for each caller type (`first_person`, `third_party`, "
    "`unknown`).",
    "by_destination": "The figures that concern a destination, for each destination id: a "
    "call counts under the destination it was rung at, connected to, abandoned or cancelled "
    "at, or disposed by (no `considered`, `kept_with_911`, `kept_by_reason`, `eligible`, "
    "`capture_rate`, `failed`, `expired` or `handbacks`).",
}
"""Every figure and report field → what it means, in the order the report gives them."""

REPORT_FIELDS = frozenset({"psap_id", "psap_ids", "from", "to", "by_caller_type", "by_destination"})
"""The entries of ``GLOSSARY`` that are the report's own fields, not figures."""
FIGURES = frozenset(GLOSSARY) - REPORT_FIELDS
"""The figure names (a scope's keys, objects' members dotted)."""


def describe(name: str) -> str:
    """The description of a figure or report field; ``KeyError`` for an undocumented one."""
    return GLOSSARY[name]


def markdown_table() -> str:
    """The README's "Figures" table: every entry of ``GLOSSARY``, in its order."""
    rows = ["| figure | meaning |", "|---|---|"]
    rows += [f"| `{name}` | {text} |" for name, text in GLOSSARY.items()]
    return "\n".join(rows)
