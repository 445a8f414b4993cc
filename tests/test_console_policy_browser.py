"""The policy editor in a real browser (Debian's Chromium, driven by Playwright) against the real
gateway and Redis: an edit with an error shown at its path, fixed; a call tried against the
draft; a save refused because a second admin saved first, then made deliberately; a rollback
through its confirm step with the keyboard. axe-core on every page; screenshots to
docs/screenshots/policy-editor*.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.core.auth import Role, add_key
from tests.browser.helpers import (
    axe_violations,
    browser_page,
    chromium,  # noqa: F401 - autouse: every test here skips without Chromium
    no_horizontal_scroll,
    screenshot,
)
from tests.conftest import AppFactory
from tests.test_console_pages import HTTP

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WAIT = 30_000
"""Milliseconds a change may take to show (the machine is shared and slow)."""


async def assert_accessible(page: Any) -> None:
    violations = await axe_violations(page)
    assert violations == [], violations
    assert await no_horizontal_scroll(page)


async def test_edit_try_conflict_save_and_roll_back(
    make_client: AppFactory, config_dir: Path
) -> None:
    dana = add_key(config_dir, org="ops", role=Role.ADMIN, name="dana")
    sam = add_key(config_dir, org="ops", role=Role.ADMIN, name="sam")
    client = await make_client(**HTTP)
    base = f"http://localhost:{client.port}"
    api = {"Authorization": f"Bearer {sam}"}
    async with browser_page() as page:
        await page.goto(f"{base}/console/policy")  # → sign in, then back here
        await page.get_by_label("Your API key").fill(dana)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{base}/console/policy")
        assert (
            await page.get_by_role("link", name="Policy editor").get_attribute("aria-current")
            == "page"
        )
        await page.get_by_role("heading", name="Policy editor · live version 1").wait_for()
        await page.get_by_role("heading", name="The live policy").wait_for()
        await assert_accessible(page)

        # An edit with an error: shown at its path (and line), nothing saved.
        draft = page.get_by_label(re.compile(r"^Policy draft \(YAML\)"))
        live_text = await draft.input_value()
        assert "hop_limit: 2" in live_text
        await draft.fill(live_text.replace("hop_limit: 2", "hop_limit: 7"))
        status = page.get_by_test_id("draft-status")
        await status.filter(has_text="The draft has 1 error").wait_for(timeout=WAIT)
        errors = await page.get_by_test_id("draft-errors").inner_text()
        assert "policy.hop_limit (line " in errors
        assert "less than or equal to 2" in errors
        await assert_accessible(page)
        await screenshot(page, "policy-editor-error")

        # Fixed: the change from the live version, and the draft's structure beside it.
        await draft.fill(live_text.replace("hop_limit: 2", "hop_limit: 1"))
        await page.get_by_role("button", name="Check the draft").click()
        await status.filter(has_text="The draft is valid: 1 change from version 1").wait_for(
            timeout=WAIT
        )
        await page.get_by_role("cell", name="2 → 1").wait_for()
        await page.get_by_role("heading", name="The draft (not saved)").wait_for()
        assert "after 1 transfer" in await page.locator("#structure").inner_text()

        # Try a call against the DRAFT: a second transfer now stays with 911.
        trial = page.locator("#try")
        await trial.get_by_label("First person (the caller is in crisis)").check()
        for question in ("Weapons involved?", "Violence or threats?", "Medical emergency?"):
            await trial.get_by_role("group", name=question).get_by_label("No", exact=True).check()
        await (
            trial.get_by_role("group", name="Caller consents to transfer?")
            .get_by_label("Yes", exact=True)
            .check()
        )
        await trial.get_by_label("Transfers so far").select_option("1")
        await trial.get_by_role("button", name="Try this call").click()
        decided = page.get_by_test_id("try-decision")
        await decided.filter(has_text="The draft would: Keep the call with 911").wait_for(
            timeout=WAIT
        )
        trace = await page.get_by_test_id("try-trace").inner_text()
        assert "Safety gate: the call stays with 911 — Already transferred" in trace
        await assert_accessible(page)
        await screenshot(page, "policy-editor")

        # A second admin saves first (the API, If-Match "1"): Dana's save is refused, shown.
        resp = await client.get("/v1/admin/routing", headers=api)
        assert resp.headers["ETag"] == '"1"'
        theirs = await resp.json()
        theirs["destinations"][1]["languages"] = ["en", "zh"]
        resp = await client.put(
            "/v1/admin/routing", json=theirs, headers={**api, "If-Match": '"1"'}
        )
        assert resp.status == 200, await resp.text()
        # The open editor shows a newer version was saved (policy.changed, or polling).
        newer = page.get_by_test_id("newer-version")
        await newer.filter(has_text="Version 2 was saved at").wait_for(timeout=WAIT)
        await page.get_by_role("button", name="Save as the next version").click()
        conflict = page.get_by_test_id("conflict")
        await conflict.wait_for(timeout=WAIT)
        said = await conflict.inner_text()
        assert "Someone else saved version 2 at " in said
        assert "(admin:ops:sam) — review their change" in said
        assert "destinations.wa-988-backup.languages: [en] → [en, zh]" in said
        assert "hop_limit: 1" in await draft.input_value()  # the draft is kept
        resp = await client.get("/v1/admin/routing", headers=api)
        live = await resp.json()
        assert live["version"] == 2
        assert live["policy"]["hop_limit"] == 2  # nothing was overwritten
        await assert_accessible(page)
        await screenshot(page, "policy-editor-conflict")

        # Saving again, after the review, is on top of version 2.
        await page.get_by_role("button", name="Save as the next version").click()
        await page.get_by_text("Saved: version 3 is live.").wait_for(timeout=WAIT)
        await page.get_by_test_id("version-3").filter(has_text="admin:ops:dana").wait_for()

        # Roll back to version 1 through the confirm step, with the keyboard.
        await page.get_by_role("link", name="Roll back to version 1…").click()
        await page.get_by_role("heading", name="Roll back to version 1?").wait_for()
        assert "1 → 2" in await page.locator("main").inner_text()
        await assert_accessible(page)
        confirm = page.get_by_role("button", name="Yes, roll back to version 1")
        await confirm.focus()
        await page.keyboard.press("Enter")
        await page.get_by_text("Rolled back to version 1: it is live as version 4.").wait_for(
            timeout=WAIT
        )
        resp = await client.get("/v1/admin/routing", headers=api)
        live = await resp.json()
        assert live["version"] == 4
        assert live["policy"]["hop_limit"] == 2
        assert live["destinations"][1]["languages"] == ["en"]
        assert yaml.safe_load(await draft.input_value())["policy"]["hop_limit"] == 2
        await assert_accessible(page)

        # A tablet held upright: the editor and its structure, still no sideways scrolling.
        await page.set_viewport_size({"width": 768, "height": 1024})
        await page.goto(f"{base}/console/policy")
        await page.get_by_role("heading", name="The live policy").wait_for()
        await assert_accessible(page)
