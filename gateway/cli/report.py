"""``python -m gateway report``: the program figures in a terminal table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from gateway.reports.counters import CALLER_TYPES

# (label, path into the summary) in reading order.
ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("calls considered", ("considered",)),
    ("kept with 911", ("kept_with_911",)),
    ("eligible for transfer", ("eligible",)),
    ("connected", ("connected",)),
    ("capture rate", ("capture_rate",)),
    ("connected via backup", ("connected_via_backup",)),
    ("abandoned", ("abandoned",)),
    ("failed", ("failed",)),
    ("cancelled", ("cancelled",)),
    ("expired", ("expired",)),
    ("answer time p50 (s)", ("answer_time_s", "p50")),
    ("answer time p90 (s)", ("answer_time_s", "p90")),
    ("ring attempts", ("attempts",)),
    ("answering ring time p50 (s)", ("ring_time_s", "p50")),
    ("resolved without police", ("resolved_without_police_share",)),
    ("resolved by phone alone", ("phone_only_share",)),
    ("handbacks", ("handbacks", "total")),
    ("handbacks confirmed", ("handbacks", "confirmed")),
    ("handbacks unconfirmed", ("handbacks", "unconfirmed")),
)


def _get(figures: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = figures
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any, label: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and ("rate" in label or "resolved" in label):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_table(summary: dict[str, Any]) -> str:
    columns = ["all", *CALLER_TYPES]
    sources = [summary, *(summary["by_caller_type"][ct] for ct in CALLER_TYPES)]
    lines = [
        f"Program figures, {summary['from']} to {summary['to']} "
        f"({', '.join(summary['psap_ids'])}; PSAP-local dates)",
        "",
        f"{'':28}" + "".join(f"{c:>14}" for c in columns),
    ]
    for label, path in ROWS:
        cells = "".join(f"{_cell(_get(s, path), label):>14}" for s in sources)
        lines.append(f"{label:28}{cells}")
    if summary["kept_by_reason"]:
        lines += ["", "kept with 911, by reason:"]
        lines += [f"  {reason:40}{n:>6}" for reason, n in summary["kept_by_reason"].items()]
    if summary["dispositions"]:
        lines += ["", "dispositions:"]
        lines += [f"  {outcome:40}{n:>6}" for outcome, n in summary["dispositions"].items()]
    destinations = {d: f for d, f in summary["by_destination"].items() if f["attempts"]}
    if destinations:
        head = f"{'by destination':28}{'attempts':>10}{'connected':>11}{'wait p50':>10}"
        lines += ["", head + f"{'ring p50':>10}"]
        for dest, f in destinations.items():
            wait = _cell(f["answer_time_s"]["p50"], "")
            ring = _cell(f["ring_time_s"]["p50"], "")
            lines.append(f"  {dest:26}{f['attempts']:>10}{f['connected']:>11}{wait:>10}{ring:>10}")
    return "\n".join(lines)


def render_csv(summary: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["scope", "key", "figure", "value"])
    scopes = [("all", "", summary)]
    scopes += [("caller_type", ct, f) for ct, f in summary["by_caller_type"].items()]
    scopes += [("destination", d, f) for d, f in summary["by_destination"].items()]
    for scope, key, figures in scopes:
        for _label, path in ROWS:
            value = _get(figures, path)
            if value is not None or path[0] in figures:
                writer.writerow([scope, key, ".".join(path), "" if value is None else value])
        for reason, n in figures.get("kept_by_reason", {}).items():
            writer.writerow([scope, key, f"kept_by_reason.{reason}", n])
        for outcome, n in figures.get("dispositions", {}).items():
            writer.writerow([scope, key, f"dispositions.{outcome}", n])
    return out.getvalue()


def render(summary: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(summary, indent=2)
    if fmt == "csv":
        return render_csv(summary)
    return render_table(summary)
