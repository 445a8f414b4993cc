"""The policy editor over real HTTP: errors at their paths, a call tried against the draft, the
difference from live, save refused when someone else saved first, versions and rollback."""

from __future__ import annotations

import html
from typing import Any

import yaml

from tests.conftest import AppFactory, KeyMaker
from tests.test_console_pages import HTTP, sign_in


async def editor(make_client: AppFactory, make_key: KeyMaker) -> tuple[Any, dict[str, str]]:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key("ops", "admin"))
    return client, {"HX-Request": "true", "X-CSRF-Token": csrf}


async def live_draft(client: Any) -> dict[str, Any]:
    resp = await client.get("/console/policy")
    assert resp.status == 200
    text = await resp.text()
    start = text.index('spellcheck="false">') + len('spellcheck="false">')
    draft: dict[str, Any] = yaml.safe_load(html.unescape(text[start : text.index("</textarea>")]))
    return draft


async def test_errors_are_shown_at_their_paths_and_nothing_is_saved(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client, headers = await editor(make_client, make_key)
    draft = await live_draft(client)
    draft["policy"]["hop_limit"] = 5
    resp = await client.post(
        "/console/policy/save",
        data={"draft": yaml.safe_dump(draft), "edited_from": "1"},
        headers=headers,
    )
    text = await resp.text()
    assert "nothing was saved" in text
    assert "<code>policy.hop_limit</code>" in text
    resp = await client.post(
        "/console/policy/check",
        data={"draft": "policy: [unclosed", "edited_from": "1"},
        headers=headers,
    )
    assert "not valid YAML (line 1" in await resp.text()


async def test_changes_a_tried_call_a_save_and_a_rollback(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client, headers = await editor(make_client, make_key)
    draft = await live_draft(client)
    draft["policy"]["rules"][0]["ring_timeout_s"] = 25
    body = {"draft": yaml.safe_dump(draft), "edited_from": "1"}
    resp = await client.post("/console/policy/check", data=body, headers=headers)
    assert "ring_timeout_s: 20 → 25" in await resp.text()

    tried = {
        **body,
        "psap_id": "kc-valleycom",
        "caller_type": "first_person",
        "language": "en",
        "transfers_so_far": "0",
        **{f"try_{flag}": "no" for flag in ("weapons", "violence", "medical_emergency")},
        "try_consent_to_transfer": "yes",
    }
    resp = await client.post("/console/policy/try", data=tried, headers=headers)
    text = await resp.text()
    assert "With this draft: Transfer to Crisis Connections" in text
    assert "How the draft decided" in text

    resp = await client.post("/console/policy/save", data=body, headers=headers)
    text = await resp.text()
    assert "Saved as version 2." in text
    assert "admin:ops:" in text  # the versions list names who

    # Someone else had the page open on version 1 and saves: refused in words.
    draft["policy"]["rules"][0]["ring_timeout_s"] = 30
    stale = {"draft": yaml.safe_dump(draft), "edited_from": "1"}
    resp = await client.post("/console/policy/save", data=stale, headers=headers)
    assert "Not saved: someone else saved version 2" in await resp.text()

    resp = await client.post("/console/policy/rollback", data={"version": "1"}, headers=headers)
    text = await resp.text()
    assert "version 3 is live, a copy of version 1" in text
    assert "ring_timeout_s: 20" in text  # the draft shown again is the live policy


async def test_only_an_admin_edits_the_policy(make_client: AppFactory, make_key: KeyMaker) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key("kc-valleycom", "psap"))
    resp = await client.post(
        "/console/policy/save",
        data={"draft": "x: 1"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert resp.headers["X-Console-Status"] == "403"
