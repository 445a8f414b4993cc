"""The decision: a pure function of (policy, request, instant, live load) — DESIGN.md §5.

Order: the safety gate (every failing check listed), then the first rule that matches, then the
rule's chain filtered (closed, at capacity) and ordered: destinations speaking the caller's
language first, nearest first by CLDR language-matching distance (an exact match, distance 0,
before a near one such as ``es`` for ``es-419``), ties and the others in the configured order.
"Speaking" and a rule's ``match.languages`` use the same test
(``gateway.policy.models.language_matches``). ``explain`` returns the same decision with a
readable trace of each step; ``decide`` returns the decision alone.

Reason codes: ``excluded:<flag>``, ``screening_incomplete:<flag>``, ``no_consent``,
``hop_limit``, ``rule:<rule id>``, ``closed:<destination id>``, ``at_capacity:<destination
id>``; and ``no_rule`` when no rule matches the request (the call stays with 911).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gateway.core.errors import NotFound
from gateway.policy.decision import Action, Decision, DecisionRequest
from gateway.policy.models import (
    DEFAULT_RING_TIMEOUT_S,
    MATCH_DISTANCE,
    Destination,
    PolicyDocument,
    Psap,
    Rule,
    nearest_language,
)


class UnknownPsap(NotFound):
    def __init__(self, psap_id: str) -> None:
        super().__init__(f"unknown PSAP {psap_id!r}")
        self.psap_id = psap_id


@dataclass(frozen=True, slots=True)
class Explained:
    decision: Decision
    trace: list[str] = field(default_factory=list)


def gate_reasons(doc: PolicyDocument, request: DecisionRequest) -> list[str]:
    """Every safety-gate code that applies; empty when the call may be transferred."""
    policy = doc.policy
    screening = request.screening
    reasons = [f"excluded:{f}" for f in policy.exclusions if screening.flag(f) is True]
    reasons += [
        f"screening_incomplete:{f}" for f in policy.required_screening if screening.flag(f) is None
    ]
    if policy.require_consent and screening.consent_to_transfer is not True:
        reasons.append("no_consent")
    if request.transfers_so_far >= policy.hop_limit:
        reasons.append("hop_limit")
    return reasons


def _closed(doc: PolicyDocument, ids: tuple[str, ...], psap: Psap, at: datetime) -> list[str]:
    closed = []
    for dest_id in ids:
        dest = doc.destination(dest_id)
        if dest is None or not dest.is_open(at, psap.zone):
            closed.append(dest_id)
    return closed


def _rule_matches(
    doc: PolicyDocument, rule: Rule, request: DecisionRequest, psap: Psap, at: datetime
) -> tuple[str | None, list[str]]:
    """``(None, [])`` when ``rule`` matches, else why not (for the trace) and, when only its
    hours condition failed, the destinations that are closed."""
    match = rule.match
    if match.caller_types and request.caller_type not in match.caller_types:
        wanted = ", ".join(match.caller_types)
        return f"caller type {request.caller_type} not in {wanted}", []
    missing = [t for t in match.tags if t not in request.tags]
    if missing:
        return f"tag(s) {', '.join(missing)} absent", []
    if match.languages:
        nearest, distance = nearest_language(match.languages, request.language)
        if distance > MATCH_DISTANCE:
            return (
                f"language {request.language} matches none of {', '.join(match.languages)}: "
                f"nearest {nearest} at CLDR distance {distance}, over {MATCH_DISTANCE}"
            ), []
    for flag, wanted_value in match.screening.items():
        if request.screening.flag(flag) is not wanted_value:
            return f"screening {flag} is not {wanted_value}", []
    closed = _closed(doc, match.while_open, psap, at)
    if closed:
        return f"{', '.join(closed)} closed", closed
    return None, []


def _select_rule(
    doc: PolicyDocument, request: DecisionRequest, psap: Psap, at: datetime, trace: list[str]
) -> tuple[Rule | None, list[str]]:
    """The first matching rule, and the ``closed:`` reasons of rules skipped for hours."""
    skipped_closed: list[str] = []
    for rule in doc.policy.rules:
        why_not, closed = _rule_matches(doc, rule, request, psap, at)
        if why_not is None:
            trace.append(f"rule {rule.id}: matches")
            return rule, skipped_closed
        trace.append(f"rule {rule.id}: skipped ({why_not})")
        # Skipped only because a destination it needs is outside its hours: say so.
        for dest_id in closed:
            code = f"closed:{dest_id}"
            if code not in skipped_closed:
                skipped_closed.append(code)
    return None, skipped_closed


def _speaking(language: str, nearest: str, distance: int) -> str:
    """How a destination's nearest language serves the caller's, in words, for the trace."""
    if distance == 0:
        return f"speaks {language}: {nearest}, the same language"
    if distance <= MATCH_DISTANCE:
        return f"speaks {language}: {nearest} at CLDR distance {distance}"
    return (
        f"does not speak {language}: nearest {nearest} at CLDR distance {distance}, "
        f"over {MATCH_DISTANCE}"
    )


def _by_language(kept: list[Destination], language: str) -> tuple[list[Destination], str | None]:
    """``kept`` with the destinations speaking ``language`` first, nearest first, stable (ties
    and the rest keep the rule's order); and, when that moved any, the trace line saying why."""
    distance = {dest.id: dest.nearest_language(language)[1] for dest in kept}

    def rank(dest: Destination) -> tuple[bool, int]:
        speaks = distance[dest.id] <= MATCH_DISTANCE
        return (not speaks, distance[dest.id] if speaks else 0)

    ordered = sorted(kept, key=rank)
    if [d.id for d in ordered] == [d.id for d in kept]:
        return ordered, None
    speakers = [
        f"{d.id} " + ("same language" if distance[d.id] == 0 else f"distance {distance[d.id]}")
        for d in ordered
        if distance[d.id] <= MATCH_DISTANCE
    ]
    why = (
        f"language {language}: reordered to {', '.join(d.id for d in ordered)} "
        f"(speakers of {language} first, nearest first: {', '.join(speakers)}; "
        "ties and the rest in the rule's order)"
    )
    return ordered, why


def _psap(doc: PolicyDocument, psap_id: str) -> Psap:
    psap = doc.psap(psap_id)
    if psap is None:
        raise UnknownPsap(psap_id)
    return psap


def candidates(doc: PolicyDocument, request: DecisionRequest, *, at: datetime) -> tuple[str, ...]:
    """The destination ids whose live load the decision will need (the matched rule's chain);
    empty when the gate keeps the call or no rule matches."""
    psap = _psap(doc, request.psap_id)
    if gate_reasons(doc, request):
        return ()
    rule, _ = _select_rule(doc, request, psap, request.at or at, [])
    return rule.chain if rule is not None else ()


def explain(
    doc: PolicyDocument,
    request: DecisionRequest,
    *,
    at: datetime,
    load: Mapping[str, int],
    version: int = 0,
) -> Explained:
    """The decision and why. ``at`` is now (aware); ``request.at`` wins when the request has one.
    ``load`` maps destination id → ringing plus connected transfers (absent: 0)."""
    psap = _psap(doc, request.psap_id)
    instant = request.at or at
    if instant.tzinfo is None:
        raise ValueError("the decision instant must be timezone-aware")
    local = instant.astimezone(psap.zone)
    trace = [
        f"psap {psap.id}: local time {local:%Y-%m-%d %H:%M %a %Z} ({psap.timezone})",
        f"request: caller_type={request.caller_type} language={request.language} "
        f"transfers_so_far={request.transfers_so_far} tags={list(request.tags)}",
    ]

    def stay(reasons: list[str], timeout: int = DEFAULT_RING_TIMEOUT_S) -> Explained:
        trace.append(f"decision: stay_with_911 ({', '.join(reasons)})")
        return Explained(
            Decision(
                action=Action.STAY_WITH_911,
                destinations=[],
                ring_timeout_s=timeout,
                reasons=reasons,
                policy_version=version,
            ),
            trace,
        )

    gate = gate_reasons(doc, request)
    if gate:
        trace.append("gate: fails — " + ", ".join(gate))
        return stay(gate)
    trace.append(
        "gate: passes (no exclusion flag true, required screening answered, "
        "consent given, under the hop limit)"
    )

    rule, closed_rules = _select_rule(doc, request, psap, instant, trace)
    if rule is None:
        trace.append("no rule matches")
        return stay([*closed_rules, "no_rule"])
    reasons = [f"rule:{rule.id}", *closed_rules]

    kept: list[Destination] = []
    for dest_id in rule.chain:
        dest = doc.destination(dest_id)
        if dest is None:  # impossible in a validated document; never dial an unknown id
            continue
        current = load.get(dest.id, 0)
        if not dest.is_open(instant, psap.zone):
            trace.append(f"destination {dest.id}: skipped, closed at {local:%H:%M %a}")
            code = f"closed:{dest.id}"
        elif dest.max_concurrent is not None and current >= dest.max_concurrent:
            trace.append(
                f"destination {dest.id}: skipped, at capacity ({current}/{dest.max_concurrent})"
            )
            code = f"at_capacity:{dest.id}"
        else:
            limit = dest.max_concurrent if dest.max_concurrent is not None else "no limit"
            speaking = _speaking(request.language, *dest.nearest_language(request.language))
            trace.append(f"destination {dest.id}: kept (open, load {current}/{limit}, {speaking})")
            kept.append(dest)
            continue
        if code not in reasons:
            reasons.append(code)

    ordered, why = _by_language(kept, request.language)
    if why is not None:
        trace.append(why)
    if not ordered:
        trace.append("every destination of the chain was skipped")
        return stay(reasons, rule.ring_timeout_s)
    trace.append(
        f"decision: transfer to {', '.join(d.id for d in ordered)}, "
        f"ringing each {rule.ring_timeout_s} s"
    )
    return Explained(
        Decision(
            action=Action.TRANSFER,
            destinations=[d.ref() for d in ordered],
            ring_timeout_s=rule.ring_timeout_s,
            reasons=reasons,
            policy_version=version,
        ),
        trace,
    )


def decide(
    doc: PolicyDocument,
    request: DecisionRequest,
    *,
    at: datetime,
    load: Mapping[str, int],
    version: int = 0,
) -> Decision:
    """The decision of DESIGN.md §5 (see ``explain``)."""
    return explain(doc, request, at=at, load=load, version=version).decision
