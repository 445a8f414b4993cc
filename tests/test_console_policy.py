"""The policy editor console over real HTTP, without a browser, against the real app and a real
Redis: an edit with an error shown at its path, a draft tried against a call, a save, a save
refused with 412 because another admin saved first (nothing overwritten), a rollback with its
confirm step, and the pages kept from other roles and from posts without the CSRF token."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient

from gateway.core.auth import Role, add_key
from tests.conftest import AppFactory, KeyMaker
from tests.test_console_pages import CSRF_RE, HTTP

DRAFT_RE = re.compile(r'<textarea id="draft"[^>]*>(.*?)</textarea>', re.S)
BASE_RE = re.compile(r'name="base_version" value="(\d+)"')


async def sign_in(client: TestClient[Any, Any], key: str, *, status: int = 200) -> str:
    """Sign in straight to the policy editor (``next``); the session's CSRF token."""
    resp = await client.post(
        "/console/sign-in", data={"key": key, "next": "/console/policy"}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/console/policy"
    page = await client.get("/console/policy")
    assert page.status == status
    found = CSRF_RE.search(await page.text())
    assert found is not None
    return found.group(1)


def admin_key(config_dir: Path, name: str) -> str:
    return add_key(config_dir, org="ops", role=Role.ADMIN, name=name)


async def editor(client: TestClient[Any, Any]) -> tuple[str, int, str]:
    """The editor page: its draft text, its base version and the whole page."""
    resp = await client.get("/console/policy")
    page = await resp.text()
    assert resp.status == 200, page
    draft = DRAFT_RE.search(page)
    base = BASE_RE.search(page)
    assert draft is not None
    assert base is not None
    return html.unescape(draft.group(1)), int(base.group(1)), page


def edited(text: str, change: Any) -> str:
    data = yaml.safe_load(text)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def hop_limit_1(data: dict[str, Any]) -> None:
    data["policy"]["hop_limit"] = 1


def one_language(data: dict[str, Any]) -> None:
    data["destinations"][1]["languages"] = ["en", "zh"]


async def test_an_admin_sees_the_live_policy_in_words_and_as_text(
    make_client: AppFactory, config_dir: Path
) -> None:
    client = await make_client(**HTTP)
    await sign_in(client, admin_key(config_dir, "dana"))
    text, base, page = await editor(client)
    assert base == 1
    assert 'href="/console/policy" aria-current="page">Policy editor' in page
    assert yaml.safe_load(text)["policy"]["hop_limit"] == 2
    assert "Stays with 911 after 2 transfers" in page
    assert "Crisis Connections" in page
    assert "Version 1" in page
    assert "system:config-files" in page
    assert '<label for="draft">' in page


async def test_other_roles_and_posts_without_the_token_are_refused(
    make_client: AppFactory, make_key: KeyMaker, config_dir: Path
) -> None:
    client = await make_client(**HTTP)
    await sign_in(client, make_key("kc-valleycom", "psap"), status=403)
    resp = await client.get("/console/policy/rollback?version=1")
    assert resp.status == 403
    other = await make_client(**HTTP)
    await sign_in(other, admin_key(config_dir, "dana"))
    text, base, _ = await editor(other)
    resp = await other.post(
        "/console/policy/save",
        data={"csrf": "wrong", "draft": edited(text, hop_limit_1), "base_version": str(base)},
    )
    assert resp.status == 403
    assert (await editor(other))[1] == 1


async def test_an_edit_with_an_error_is_shown_at_its_path_and_not_saved(
    make_client: AppFactory, config_dir: Path
) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, admin_key(config_dir, "dana"))
    text, base, _ = await editor(client)
    bad = edited(text, lambda d: d["policy"].update(hop_limit=7))
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    resp = await client.post("/console/policy/check", data={"draft": bad}, headers=headers)
    fragment = await resp.text()
    assert resp.status == 200, fragment
    assert "The draft has 1 error" in fragment
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "hop_limit" in t)
    assert f"<code>policy.hop_limit</code> (line {line}): " in fragment
    assert "less than or equal to 2" in fragment
    assert "The live policy (the draft has errors)" in fragment

    resp = await client.post(
        "/console/policy/save", data={"csrf": csrf, "draft": bad, "base_version": str(base)}
    )
    page = await resp.text()
    assert resp.status == 422
    assert "<code>policy.hop_limit</code>" in page
    assert "hop_limit: 7" in html.unescape(page)  # the draft is kept for fixing
    assert (await editor(client))[1] == 1

    resp = await client.post(
        "/console/policy/check", data={"draft": "policy: [unclosed"}, headers=headers
    )
    assert "not valid YAML" in await resp.text()


async def test_a_valid_draft_shows_its_changes_and_decides_a_call(
    make_client: AppFactory, config_dir: Path
) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, admin_key(config_dir, "dana"))
    text, _, _ = await editor(client)
    draft = edited(text, hop_limit_1)
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    resp = await client.post("/console/policy/check", data={"draft": draft}, headers=headers)
    fragment = html.unescape(await resp.text())
    assert "1 change from version 1" in fragment
    assert "<code>policy.hop_limit</code></td><td>2 → 1" in fragment
    assert 'id="structure"' in fragment
    assert "The draft (not saved)" in fragment

    call = {
        "draft": draft,
        "psap_id": "kc-valleycom",
        "caller_type": "first_person",
        "weapons": "no",
        "violence": "no",
        "medical_emergency": "no",
        "consent_to_transfer": "yes",
        "language": "en",
        "transfers_so_far": "1",
    }
    resp = await client.post("/console/policy/try", data=call, headers=headers)
    fragment = html.unescape(await resp.text())
    assert "The draft would: Keep the call with 911" in fragment
    assert "Safety gate: the call stays with 911 — Already transferred the most" in fragment
    # A third-party call at 03:00 PSAP time: the clinicians (07:00 to 23:00) are closed.
    night = {**call, "caller_type": "third_party", "transfers_so_far": "0"}
    night["at"] = "2026-12-01T03:00"
    resp = await client.post("/console/policy/try", data=night, headers=headers)
    fragment = html.unescape(await resp.text())
    assert "local time 2026-12-01 03:00 Tue PST" in fragment
    assert "Rule third-party-daytime: does not match (kc-dispatch-clinicians closed)" in fragment
    resp = await client.post(
        "/console/policy/try", data={**night, "at": "2026-12-01T10:00"}, headers=headers
    )
    assert "Transfer to King County dispatch-embedded clinicians" in await resp.text()
    resp = await client.post("/console/policy/try", data={**night, "at": "soon"}, headers=headers)
    assert "not a date and time" in await resp.text()
    # The live policy (hop limit 2) would transfer this call: the try used the draft.
    resp = await client.post("/console/policy/try", data={**call, "draft": text}, headers=headers)
    assert "The draft would: Transfer to Crisis Connections" in html.unescape(await resp.text())


async def test_a_save_then_a_conflict_from_a_second_admin_then_a_rollback(
    make_client: AppFactory, config_dir: Path
) -> None:
    dana = await make_client(**HTTP)
    sam = await make_client(**HTTP)
    dana_csrf = await sign_in(dana, admin_key(config_dir, "dana"))
    sam_csrf = await sign_in(sam, admin_key(config_dir, "sam"))
    dana_text, dana_base, _ = await editor(dana)
    sam_text, _, _ = await editor(sam)

    resp = await sam.post(
        "/console/policy/save",
        data={"csrf": sam_csrf, "draft": edited(sam_text, one_language), "base_version": "1"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/policy?saved=2"

    # Dana's open editor learns of it (on the policy.changed event, or polling) before saving.
    resp = await dana.get(f"/console/policy/versions?base={dana_base}")
    warning = html.unescape(await resp.text())
    assert "Version 2 was saved at " in warning
    assert "by admin:ops:sam after version 1" in warning
    resp = await dana.get("/console/policy/versions?base=2")
    assert "newer-version" not in await resp.text()

    mine = edited(dana_text, hop_limit_1)
    resp = await dana.post(
        "/console/policy/save",
        data={"csrf": dana_csrf, "draft": mine, "base_version": str(dana_base)},
    )
    page = html.unescape(await resp.text())
    assert resp.status == 412
    assert "Someone else saved version 2 at " in page
    assert "(admin:ops:sam) — review their change" in page
    assert "destinations.wa-988-backup.languages: [en] → [en, zh]" in page
    live = yaml.safe_load((await editor(dana))[0])
    assert live["policy"]["hop_limit"] == 2  # nothing of Dana's was saved…
    assert "zh" in live["destinations"][1]["languages"]  # …and Sam's change stands
    draft = DRAFT_RE.search(page)
    assert draft is not None
    assert "hop_limit: 1" in html.unescape(draft.group(1))
    assert 'name="base_version" value="2"' in page

    # Saving again after the review is deliberate: on top of version 2.
    resp = await dana.post(
        "/console/policy/save",
        data={"csrf": dana_csrf, "draft": mine, "base_version": "2"},
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/console/policy?saved=3"
    _, _, page = await editor(dana)
    assert "admin:ops:dana" in page
    assert "policy.hop_limit: 2 → 1" in html.unescape(page)

    resp = await dana.get("/console/policy/rollback?version=1")
    confirm = html.unescape(await resp.text())
    assert resp.status == 200
    assert "<code>policy.hop_limit</code></td><td>1 → 2" in confirm
    assert "Yes, roll back to version 1" in confirm
    resp = await dana.post(
        "/console/policy/rollback",
        data={"csrf": dana_csrf, "version": "1", "base_version": "2"},
    )
    assert resp.status == 412  # the confirm page was for version 2; 3 is live
    assert "Someone else saved version 3" in html.unescape(await resp.text())
    resp = await dana.post(
        "/console/policy/rollback",
        data={"csrf": dana_csrf, "version": "1", "base_version": "3"},
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/console/policy?saved=4&rolled_back=1"
    resp = await dana.get(resp.headers["Location"])
    assert "Rolled back to version 1: it is live as version 4." in await resp.text()
    text, base, page = await editor(dana)
    assert base == 4
    assert "rollback to version 1" in page
    assert yaml.safe_load(text)["policy"]["hop_limit"] == 2
    assert yaml.safe_load(text)["destinations"][1]["languages"] == ["en"]
    resp = await dana.get("/console/policy/rollback?version=99")
    assert resp.status == 404
