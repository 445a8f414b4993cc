"""The report's figures and their glossary: the caller's wait and the answering destination's
ring time are separate figures everywhere, and every figure is described — in the OpenAPI
document and in the README — by the one glossary (``gateway.reports.glossary``)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.reports.counters import (
    CONNECTED,
    OFFERED,
    VIA_BACKUP,
    answer_bucket,
    answer_member,
    attempt_member,
    counter_field,
    summarize,
)
from gateway.reports.glossary import FIGURES, GLOSSARY, REPORT_FIELDS, markdown_table
from gateway.web.reports import ReportSummary
from tests.conftest import ROOT

Client = TestClient[Any, Any]


def rollover_day() -> tuple[dict[str, int], list[tuple[str, float]]]:
    """One day as the transfer service counts it: call t1 answered by the primary after 4 s;
    call t2 rang the primary 20 s, rolled over, and the backup answered after 6 s more."""
    fields = [
        counter_field(OFFERED, "first_person", "primary"),
        counter_field(CONNECTED, "first_person", "primary"),
        counter_field(answer_bucket(4), "first_person", "primary"),
        counter_field(OFFERED, "first_person", "primary"),
        counter_field(OFFERED, "first_person", "backup"),
        counter_field(CONNECTED, "first_person", "backup"),
        counter_field(VIA_BACKUP, "first_person", "backup"),
        counter_field(answer_bucket(26), "first_person", "backup"),
    ]
    counters: dict[str, int] = {}
    for name in fields:
        counters[name] = counters.get(name, 0) + 1
    members = [
        (answer_member("first_person", "primary", "t1"), 4.0),
        (attempt_member("first_person", "primary", "t1"), 4.0),
        (answer_member("first_person", "backup", "t2"), 26.0),
        (attempt_member("first_person", "backup", "t2"), 6.0),
    ]
    return counters, members


def test_by_destination_answer_time_is_the_callers_wait() -> None:
    counters, members = rollover_day()
    summary = summarize([counters], members, destinations=["primary", "backup", "national"])
    backup = summary["by_destination"]["backup"]
    # The caller waited 26 s for the backup: that is its answer time, as overall …
    assert backup["answer_time_s"]["p50"] == 26.0
    assert backup["answer_time_s"]["count"] == 1
    assert {b: n for b, n in backup["answer_time_s"]["histogram"].items() if n} == {"30": 1}
    # … and the backup's own ring before it answered is its own figure.
    assert backup["ring_time_s"] == {"p50": 6.0, "p90": 6.0, "count": 1}
    assert summary["answer_time_s"]["p50"] == 15.0  # median of 4 and 26
    assert summary["ring_time_s"]["p50"] == 5.0  # median of 4 and 6
    assert summary["ring_time_s"]["count"] == summary["answer_time_s"]["count"] == 2
    assert summary["by_caller_type"]["first_person"]["ring_time_s"]["count"] == 2
    # Attempts count ring attempts; calls are counted once.
    assert summary["attempts"] == 3
    assert summary["connected"] == 2
    assert summary["by_destination"]["primary"]["attempts"] == 2
    assert summary["by_destination"]["primary"]["connected"] == 1
    national = summary["by_destination"]["national"]
    assert national["attempts"] == 0
    assert national["answer_time_s"]["p50"] is None
    assert national["ring_time_s"] == {"p50": None, "p90": None, "count": 0}


def glossary_names(figures: dict[str, Any]) -> set[str]:
    """The figure names of one scope of a summary, objects' members dotted."""
    names = set()
    for name, value in figures.items():
        names.add(name)
        if isinstance(value, dict) and name in ("answer_time_s", "ring_time_s", "handbacks"):
            names |= {f"{name}.{member}" for member in value}
    return names


def test_every_figure_is_in_the_glossary_and_nothing_else() -> None:
    counters, members = rollover_day()
    summary = summarize([counters], members, destinations=["primary"])
    scopes = {k: v for k, v in summary.items() if k not in ("by_caller_type", "by_destination")}
    assert glossary_names(scopes) == set(FIGURES)
    for figures in summary["by_caller_type"].values():
        assert glossary_names(figures) == set(FIGURES)
    for figures in summary["by_destination"].values():
        assert glossary_names(figures) <= set(FIGURES)
    envelope = {"psap_id": "x", "psap_ids": ["x"], "from": "2026-11-01", "to": "2026-11-01"}
    ReportSummary.model_validate({**envelope, **summary})
    assert {*envelope, "by_caller_type", "by_destination"} == REPORT_FIELDS


async def test_openapi_describes_every_figure_from_the_glossary(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    op = doc["paths"]["/v1/reports/summary"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReportSummary"
    }
    summary = schemas["ReportSummary"]["properties"]
    for name, text in GLOSSARY.items():
        parent, _, member = name.partition(".")
        if not member:
            assert summary[parent]["description"] == text, name
            continue
        nested = {"answer_time_s": "AnswerTime", "ring_time_s": "RingTime"}.get(parent, "Handbacks")
        assert schemas[nested]["properties"][member]["description"] == text, name
    per_destination = schemas["DestinationFigures"]["properties"]
    assert per_destination["answer_time_s"]["description"] == GLOSSARY["answer_time_s"]
    assert "considered" not in per_destination


def test_readme_figures_table_is_the_glossary() -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^### Figures\n(.*?)(?=^#)", readme, re.MULTILINE | re.DOTALL)
    assert section is not None, "README has no Figures section"
    table = "\n".join(line for line in section.group(1).splitlines() if line.startswith("|"))
    assert table == markdown_table()
