"""The policy editor console (admin, DESIGN.md §10) over the policy administration API (§9).

- ``GET /console/policy``: the live policy in words beside its YAML in a labelled textarea, the
  versions (who, when, what changed) and a "Try a call" form.
- ``POST /console/policy/check`` (htmx): the draft validated as ``PUT /v1/admin/routing`` would,
  errors at their paths (and lines), or its changes from the live version and its structure.
- ``POST /console/policy/try`` (htmx): the decision and its trace for a call, on the DRAFT.
- ``POST /console/policy/save``: ``PUT`` with ``If-Match`` = the version the draft was made from;
  someone else saved first (412) → the page says who and when, keeps the draft, overwrites
  nothing; invalid (422) → the errors at their paths.
- ``GET /console/policy/rollback?version=n`` → a confirm page with what would change;
  ``POST /console/policy/rollback`` makes the copy (with ``If-Match`` too).

Everything goes through ``PolicyService`` with the signed-in admin's actor, as the API does.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from gateway.console import policy_views, views
from gateway.console.pages import LANGUAGES, call_facts
from gateway.console.policy_views import DraftCheck
from gateway.console.web import SESSION, fragment, page, render
from gateway.core.auth import Role
from gateway.core.errors import BadRequest
from gateway.policy import LoadedPolicy, VersionMismatch
from gateway.policy.changes import changes
from gateway.policy.decision import SCREENING_FLAGS, DecisionRequest
from gateway.web.appkeys import POLICY

DRAFT_FIELD = "draft"
BASE_FIELD = "base_version"


def _zone(loaded: LoadedPolicy) -> ZoneInfo:
    """Times are shown in the first PSAP's timezone (an admin belongs to no PSAP)."""
    psaps = loaded.document.psaps
    return psaps[0].zone if psaps else ZoneInfo("UTC")


def _number(value: object, field: str) -> int:
    raw = str(value or "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 15 or int(raw) < 1:
        raise BadRequest(
            f"{field} must be a version number", [{"path": field, "message": raw[:20]}]
        )
    return int(raw)


def _draft(form: MultiDictProxy[Any]) -> str:
    value = form.get(DRAFT_FIELD)
    return value if isinstance(value, str) else ""


async def _page(
    request: web.Request,
    *,
    text: str | None = None,
    base: int | None = None,
    check: DraftCheck | None = None,
    conflict: policy_views.Conflict | None = None,
    message: str | None = None,
    status: int = 200,
) -> web.Response:
    service = request.app[POLICY]
    live = await service.current()
    zone = _zone(live)
    shown = check.document if check is not None and check.document is not None else None
    rows = policy_views.version_rows(await service.versions(), live.version, zone)
    return render(
        request,
        "policy.html",
        {
            "title": "Policy editor",
            "live_version": live.version,
            "base": base if base is not None else live.version,
            "text": text if text is not None else policy_views.draft_text(live.document),
            "check": check,
            "conflict": conflict,
            "message": message,
            "structure": policy_views.structure(shown or live.document),
            "structure_is_draft": shown is not None,
            "versions": rows,
            "newer": _newer(rows, base if base is not None else live.version),
            "flags": [(f, views.FLAG_LABELS[f]) for f in SCREENING_FLAGS],
            "caller_types": list(views.CALLER_TYPES.items()),
            "languages": LANGUAGES,
            "psaps": [(p.id, p.name) for p in live.document.psaps],
        },
        status=status,
    )


def _newer(rows: list[policy_views.VersionRow], base: int) -> policy_views.VersionRow | None:
    """The newest version saved after ``base`` (the draft's), if any."""
    return rows[0] if rows and rows[0].version > base else None


@fragment(Role.ADMIN)
async def versions(request: web.Request) -> web.StreamResponse:
    """The versions, refreshed on a ``policy.changed`` event (or while the stream is down), with
    a warning when one was saved after ``?base=n``, the version the open draft was made from."""
    service = request.app[POLICY]
    live = await service.current()
    rows = policy_views.version_rows(await service.versions(), live.version, _zone(live))
    raw = request.query.get("base", "")
    base = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 15 else live.version
    return render(
        request,
        "_policy_versions.html",
        {"versions": rows, "newer": _newer(rows, base), "base": base},
    )


@page(Role.ADMIN)
async def editor(request: web.Request) -> web.StreamResponse:
    """The editor on the live policy; ``?saved=n`` / ``?rolled_back=n`` say what just happened."""
    message = None
    saved = request.query.get("saved", "")
    if saved.isdigit():
        rolled = request.query.get("rolled_back", "")
        if rolled.isdigit():
            message = f"Rolled back to version {rolled}: it is live as version {saved}."
        else:
            message = f"Saved: version {saved} is live."
    elif request.query.get("unchanged") == "1":
        message = "Nothing changed: that is the live policy already."
    return await _page(request, message=message)


@fragment(Role.ADMIN)
async def check(request: web.Request) -> web.StreamResponse:
    """The draft's errors at their paths, or its changes from the live version."""
    form = await request.post()
    live = await request.app[POLICY].current()
    result = policy_views.check_draft(_draft(form), live.document)
    shown = result.document
    return render(
        request,
        "_policy_check.html",
        {
            "check": result,
            "live_version": live.version,
            "structure": policy_views.structure(shown or live.document),
            "structure_is_draft": shown is not None,
            "oob": True,
        },
    )


@fragment(Role.ADMIN)
async def try_call(request: web.Request) -> web.StreamResponse:
    """What the DRAFT decides for the call in the form, with the trace (nothing is saved or
    recorded; live load counts for capacity, as in a real decision)."""
    form = await request.post()
    service = request.app[POLICY]
    live = await service.current()
    result = policy_views.check_draft(_draft(form), live.document)
    context: dict[str, Any] = {"check": result, "view": None, "trace": [], "problem": None}
    if result.document is not None:
        psap_id = str(form.get("psap_id") or "")
        psap = result.document.psap(psap_id)
        if psap is None:
            context["problem"] = f"The draft has no PSAP {psap_id!r}: choose another."
            return render(request, "_policy_try.html", context)
        facts = call_facts(form, psap_id)
        facts.pop("callback_number", None)
        try:
            at = policy_views.local_instant(str(form.get("at") or ""), psap.zone)
        except ValueError:
            context["problem"] = "The time of the call is not a date and time."
            return render(request, "_policy_try.html", context)
        if at is not None:
            facts["at"] = at.isoformat()
        try:
            body = DecisionRequest.model_validate(facts)
        except ValidationError as exc:
            context["problem"] = str(exc.errors()[0]["msg"])
            return render(request, "_policy_try.html", context)
        draft = LoadedPolicy(0, result.document)
        explained = await service.explain(body, loaded=draft)
        names = {d.id: d.name for d in result.document.destinations}
        context["view"] = views.decision_view(explained.decision, names)
        psaps = {p.id: p.name for p in result.document.psaps}
        context["trace"] = [policy_views.trace_words(t, names, psaps) for t in explained.trace]
    return render(request, "_policy_try.html", context)


@page(Role.ADMIN)
async def save(request: web.Request) -> web.StreamResponse:
    """``PUT /v1/admin/routing`` with ``If-Match`` = the draft's base version."""
    form = await request.post()
    text = _draft(form)
    base = _number(form.get(BASE_FIELD), BASE_FIELD)
    service = request.app[POLICY]
    live = await service.current()
    result = policy_views.check_draft(text, live.document)
    if result.document is None:
        return await _page(request, text=text, base=base, check=result, status=422)
    data, _ = policy_views.parse_draft(text)
    try:
        change = await service.put(data, request[SESSION].principal.actor, if_match=base)
    except VersionMismatch as exc:
        return await _conflict(request, text, base, exc)
    if not change.changed:
        raise web.HTTPSeeOther("/console/policy?unchanged=1")
    raise web.HTTPSeeOther(f"/console/policy?saved={change.version}")


async def _conflict(
    request: web.Request, text: str, base: int, exc: VersionMismatch
) -> web.Response:
    """412: who saved since ``base``; the draft kept, compared with the version now live, and
    based on it so that saving again is a deliberate choice after the review."""
    service = request.app[POLICY]
    live = await service.current()
    found = policy_views.conflict(base, exc.live_version, await service.versions(), _zone(live))
    result = policy_views.check_draft(text, live.document)
    return await _page(
        request, text=text, base=live.version, check=result, conflict=found, status=412
    )


def _rollback_page(
    request: web.Request,
    version: int,
    live: LoadedPolicy,
    target: LoadedPolicy,
    *,
    conflict: policy_views.Conflict | None,
    status: int = 200,
) -> web.StreamResponse:
    """The rollback page: what rolling back to ``version`` (``target``) would change from
    ``live``, with the 412's words when a rollback was refused."""
    return render(
        request,
        "policy_rollback.html",
        {
            "title": f"Roll back to version {version}",
            "version": version,
            "live_version": live.version,
            "changes": policy_views.change_lines(changes(live.document, target.document)),
            "conflict": conflict,
        },
        status=status,
    )


@page(Role.ADMIN)
async def rollback_confirm(request: web.Request) -> web.StreamResponse:
    """The confirm step: what rolling back to ``?version=n`` would change from the live one."""
    version = _number(request.query.get("version"), "version")
    service = request.app[POLICY]
    live = await service.current()
    target = await service.version(version)
    return _rollback_page(request, version, live, target, conflict=None)


@page(Role.ADMIN)
async def rollback(request: web.Request) -> web.StreamResponse:
    """``POST /v1/admin/routing/rollback`` with ``version`` and ``If-Match`` = the live version
    the confirm page showed."""
    form = await request.post()
    version = _number(form.get("version"), "version")
    base = _number(form.get(BASE_FIELD), BASE_FIELD)
    service = request.app[POLICY]
    try:
        change = await service.rollback(version, request[SESSION].principal.actor, if_match=base)
    except VersionMismatch as exc:
        live = await service.current()
        target = await service.version(version)
        found = policy_views.conflict(base, exc.live_version, await service.versions(), _zone(live))
        return _rollback_page(request, version, live, target, conflict=found, status=412)
    if not change.changed:
        raise web.HTTPSeeOther("/console/policy?unchanged=1")
    raise web.HTTPSeeOther(f"/console/policy?saved={change.version}&rolled_back={version}")


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/console/policy", editor)
    router.add_post("/console/policy/check", check)
    router.add_post("/console/policy/try", try_call)
    router.add_post("/console/policy/save", save)
    router.add_get("/console/policy/versions", versions)
    router.add_get("/console/policy/rollback", rollback_confirm)
    router.add_post("/console/policy/rollback", rollback)
