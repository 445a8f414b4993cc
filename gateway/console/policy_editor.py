"""The policy editor (admin, DESIGN.md §10): the live policy as YAML to edit; validation errors at
their paths; a call tried against the draft (decision and trace); the difference from the live
version; save with ``If-Match`` semantics (refused in words when someone saved first); versions
with who, when and what changed; rollback. Everything goes through ``PolicyService`` exactly as
``/v1/admin/routing`` does."""

from __future__ import annotations

from typing import Any

import yaml
from aiohttp import web
from multidict import MultiDictProxy

from gateway.console import views
from gateway.console.pages import LANGUAGES, _answer, _principal, _zone
from gateway.console.web import fragment, page, render
from gateway.core.auth import Role
from gateway.policy.changes import changes
from gateway.policy.decision import SCREENING_FLAGS, DecisionRequest
from gateway.policy.loader import PolicyInvalid, validate_document
from gateway.policy.models import PolicyDocument
from gateway.policy.service import LoadedPolicy, VersionMismatch
from gateway.web.appkeys import POLICY

MAX_DRAFT = 200_000
"""Characters a draft may have (the policy files are a few kilobytes)."""


def as_yaml(document: PolicyDocument) -> str:
    return yaml.safe_dump(document.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


class DraftUnreadable(Exception):
    """The draft is not YAML (or JSON) at all: ``problems`` as ``{path, message}``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.problems = [{"path": "$", "message": message}]


def read_draft(form: MultiDictProxy[Any]) -> PolicyDocument:
    """The draft in the form as a valid policy document; ``PolicyInvalid`` (every error with its
    path) or ``DraftUnreadable``."""
    text = str(form.get("draft") or "")
    if len(text) > MAX_DRAFT:
        raise DraftUnreadable(f"the draft is longer than {MAX_DRAFT} characters")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise DraftUnreadable(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "version"}
    return validate_document(data)


def _edited_from(form: MultiDictProxy[Any]) -> int | None:
    raw = str(form.get("edited_from") or "")
    return int(raw) if raw.isdigit() else None


async def _check(form: MultiDictProxy[Any], live: LoadedPolicy) -> dict[str, Any]:
    """What the checks panel shows: problems at their paths, or the changes from live."""
    try:
        draft = read_draft(form)
    except PolicyInvalid as exc:
        return {"problems": exc.errors, "diff": None, "draft": None}
    except DraftUnreadable as exc:
        return {"problems": exc.problems, "diff": None, "draft": None}
    return {"problems": [], "diff": changes(live.document, draft), "draft": draft}


async def _versions(request: web.Request) -> list[dict[str, str | int]]:
    service = request.app[POLICY]
    loaded = await service.current()
    zone = _zone(loaded, None)
    listed = await service.versions()
    return [
        {
            "version": v.version,
            "at": v.at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
            "actor": v.actor,
            "summary": v.summary,
            "live": v.version == loaded.version,
        }
        for v in reversed(listed)
    ]


@page(Role.ADMIN)
async def editor(request: web.Request) -> web.StreamResponse:
    live = await request.app[POLICY].current()
    return render(
        request,
        "policy.html",
        {
            "title": "Policy editor",
            "live": live,
            "draft": as_yaml(live.document),
            "versions": await _versions(request),
            "flags": [(f, views.FLAG_LABELS[f]) for f in SCREENING_FLAGS],
            "caller_types": list(views.CALLER_TYPES.items()),
            "languages": LANGUAGES,
            "psaps": [(p.id, p.name) for p in live.document.psaps],
        },
    )


@fragment(Role.ADMIN)
async def check(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    live = await request.app[POLICY].current()
    return render(request, "_policy_check.html", {**await _check(form, live), "live": live})


@fragment(Role.ADMIN)
async def try_call(request: web.Request) -> web.StreamResponse:
    """The draft's decision and trace for the call described in the form (nothing recorded)."""
    form = await request.post()
    service = request.app[POLICY]
    live = await service.current()
    checked = await _check(form, live)
    if checked["draft"] is None:
        return render(request, "_policy_check.html", {**checked, "live": live})
    facts = {
        "psap_id": str(form.get("psap_id") or ""),
        "caller_type": str(form.get("caller_type") or "unknown"),
        "screening": {flag: _answer(form.get(f"try_{flag}")) for flag in SCREENING_FLAGS},
        "language": str(form.get("language") or "en"),
        "transfers_so_far": int(str(form.get("transfers_so_far") or "0")),
    }
    body = DecisionRequest.model_validate(facts)
    draft = LoadedPolicy(version=live.version, document=checked["draft"])
    explained = await service.explain(body, loaded=draft)
    names = {d.id: d.name for d in draft.document.destinations}
    return render(
        request,
        "_policy_try.html",
        {"view": views.decision_view(explained.decision, names), "trace": explained.trace},
    )


@fragment(Role.ADMIN)
async def save(request: web.Request) -> web.StreamResponse:
    """Save the draft as the next version, refused when it was edited from a version that is no
    longer live (someone else saved first)."""
    form = await request.post()
    service = request.app[POLICY]
    live = await service.current()
    checked = await _check(form, live)
    if checked["draft"] is None:
        return render(request, "_policy_check.html", {**checked, "live": live})
    document = checked["draft"].model_dump(mode="json")
    try:
        change = await service.put(document, _principal(request).actor, if_match=_edited_from(form))
    except VersionMismatch as exc:
        return render(
            request,
            "_policy_saved.html",
            {
                "ok": False,
                "message": f"Not saved: someone else saved version {exc.live_version} after you "
                f"started editing version {exc.expected}. Reload the page to edit the live "
                "policy, then make your change again.",
            },
        )
    message = (
        f"Saved as version {change.live.version}."
        if change.changed
        else f"Nothing to save: the draft is the live version {change.live.version}."
    )
    return render(
        request,
        "_policy_saved.html",
        {
            "ok": True,
            "message": message,
            "live": change.live,
            "draft_yaml": as_yaml(change.live.document),
            "versions": await _versions(request),
        },
    )


@fragment(Role.ADMIN)
async def rollback(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    raw = str(form.get("version") or "")
    service = request.app[POLICY]
    change = await service.rollback(int(raw) if raw.isdigit() else None, _principal(request).actor)
    message = (
        f"Rolled back: version {change.live.version} is live, a copy of version {raw}."
        if change.changed
        else f"Version {raw} is already what is live (version {change.live.version})."
    )
    return render(
        request,
        "_policy_saved.html",
        {
            "ok": True,
            "message": message,
            "live": change.live,
            "draft_yaml": as_yaml(change.live.document),
            "versions": await _versions(request),
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/policy", editor)
    app.router.add_post("/console/policy/check", check)
    app.router.add_post("/console/policy/try", try_call)
    app.router.add_post("/console/policy/save", save)
    app.router.add_post("/console/policy/rollback", rollback)
