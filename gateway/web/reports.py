"""``GET /v1/reports/summary``: the program figures for a period."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from gateway import reporting
from gateway.auth import Role, require_org, require_role
from gateway.errors import Invalid
from gateway.policy.service import LoadedPolicy
from gateway.web.appkeys import POLICY, REDIS
from gateway.web.middlewares import principal_of
from gateway.web.routes import Route


def parse_day(value: str | None, name: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"'{name}' must be a date (YYYY-MM-DD)", [{"path": name, "message": "not a date"}]
        ) from None


async def build_summary(
    loaded: LoadedPolicy, redis: Any, psap_id: str | None, start: str | None, end: str | None
) -> dict[str, Any]:
    """The summary for one PSAP (or, with ``psap_id`` None, every PSAP of the policy)."""
    psaps = [loaded.psap(psap_id)] if psap_id else list(loaded.document.psaps)
    today = date.fromisoformat(reporting.local_day(datetime.now(UTC), psaps[0].timezone))
    first_asked = parse_day(start, "from", today) if start else None
    last = parse_day(end, "to", max(today, first_asked or today))
    first = first_asked or min(today, last)
    return await reporting.summary(
        redis,
        [p.id for p in psaps],
        first,
        last,
        destinations=[d.id for d in loaded.document.destinations],
    )


async def summary_view(request: web.Request) -> web.Response:
    principal = require_role(principal_of(request), Role.ADMIN, Role.PSAP)
    psap_id = request.query.get("psap_id") or None
    if principal.role is Role.PSAP:
        psap_id = psap_id or principal.org
        require_org(principal, psap_id)
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
        query=(
            ("from", "first PSAP-local date, YYYY-MM-DD (default: today)"),
            ("to", "last PSAP-local date, inclusive (default: the later of today and from)"),
            ("psap_id", "one PSAP (a psap key: its own, the default; admin: default all)"),
        ),
    )
]
