"""``GET /v1/reports/summary``: the program figures for a period.

The response models below exist for ``/openapi.json``: each property's description is its entry
in ``gateway.reports.glossary`` (the README's "Figures" table is the same glossary).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.core.auth import Role, require_role
from gateway.reports.figures import build_summary
from gateway.reports.glossary import describe
from gateway.web.appkeys import POLICY, REDIS
from gateway.web.bodies import query_text
from gateway.web.middlewares import principal_of
from gateway.web.routes import Route
from gateway.web.scope import own_psap_id


def _figure(name: str, **extra: Any) -> Any:
    """A required property described by the glossary entry ``name``."""
    return Field(description=describe(name), **extra)


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AnswerTime(_Schema):
    """The caller's wait for answered calls (first ring → answer), seconds."""

    p50: float | None = _figure("answer_time_s.p50")
    p90: float | None = _figure("answer_time_s.p90")
    count: int = _figure("answer_time_s.count")
    histogram: dict[str, int] = _figure("answer_time_s.histogram")


class RingTime(_Schema):
    """The answering destination's own ring → answer, seconds."""

    p50: float | None = _figure("ring_time_s.p50")
    p90: float | None = _figure("ring_time_s.p90")
    count: int = _figure("ring_time_s.count")


class Handbacks(_Schema):
    """Handbacks to 911 in the period."""

    total: int = _figure("handbacks.total")
    confirmed: int = _figure("handbacks.confirmed")
    unconfirmed: int = _figure("handbacks.unconfirmed")
    no_contact: int = _figure("handbacks.no_contact")
    confirmation_rate: float | None = _figure("handbacks.confirmation_rate")


class DestinationFigures(_Schema):
    """The figures that concern one destination."""

    attempts: int = _figure("attempts")
    connected: int = _figure("connected")
    connected_via_backup: int = _figure("connected_via_backup")
    completed: int = _figure("completed")
    abandoned: int = _figure("abandoned")
    cancelled: int = _figure("cancelled")
    answer_time_s: AnswerTime = _figure("answer_time_s")
    ring_time_s: RingTime = _figure("ring_time_s")
    dispositions: dict[str, int] = _figure("dispositions")
    resolved_without_police_share: float | None = _figure("resolved_without_police_share")
    phone_only_share: float | None = _figure("phone_only_share")


class Figures(DestinationFigures):
    """Every figure, for the whole period or one caller type."""

    considered: int = _figure("considered")
    kept_with_911: int = _figure("kept_with_911")
    kept_by_reason: dict[str, int] = _figure("kept_by_reason")
    eligible: int = _figure("eligible")
    capture_rate: float | None = _figure("capture_rate")
    failed: int = _figure("failed")
    expired: int = _figure("expired")
    handbacks: Handbacks = _figure("handbacks")


class ReportSummary(Figures):
    """The program figures of a period (DESIGN.md §6); every figure is described in the README's
    "Figures" table too."""

    psap_id: str | None = _figure("psap_id")
    psap_ids: list[str] = _figure("psap_ids")
    from_: str = _figure("from", alias="from")
    to: str = _figure("to")
    by_caller_type: dict[str, Figures] = _figure("by_caller_type")
    by_destination: dict[str, DestinationFigures] = _figure("by_destination")


async def summary_view(request: web.Request) -> web.Response:
    principal = require_role(principal_of(request), Role.ADMIN, Role.PSAP)
    psap_id = own_psap_id(principal, query_text(request, "psap_id"))  # a psap key: its own
    loaded = await request.app[POLICY].current()
    body = await build_summary(
        loaded, request.app[REDIS], psap_id, request.query.get("from"), request.query.get("to")
    )
    return web.json_response(body)


ROUTES = [
    Route(
        "GET",
        "/v1/reports/summary",
        summary_view,
        "Program figures for a period (from, to: PSAP-local dates, inclusive; psap_id)",
        "reports",
        roles=(Role.ADMIN, Role.PSAP),
        response=ReportSummary,
        query=(
            ("from", "first PSAP-local date, YYYY-MM-DD (default: today)"),
            ("to", "last PSAP-local date, inclusive (default: the later of today and from)"),
            ("psap_id", "one PSAP (a psap key: its own, the default; admin: default all)"),
        ),
    )
]
