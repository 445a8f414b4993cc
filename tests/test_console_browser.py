"""The consoles in a real browser (Debian's Chromium, driven by Playwright) against the real
gateway wired to the Twilio sandbox: the call-taker's whole flow with a fallback shown live,
keyboard alone, a handback arriving and confirmed, the board, axe-core on every page, and a
cross-site form post refused. Screenshots of each console go to docs/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.twilio_sandbox.config import Behaviour, PartyConfig
from gateway.core.settings import Settings
from gateway.web.appkeys import STORE
from tests.browser.helpers import (
    BlipProxy,
    axe_violations,
    browser_page,
    chromium,  # noqa: F401 - autouse: every test here skips without Chromium
    no_horizontal_scroll,
    screenshot,
)
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import BACKUP, PRIMARY, PSAP, short_ring_timeouts, wired

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LIVE_S = 30_000
"""Milliseconds a live change may take to show (the machine is shared and slow)."""


def origin(line: Any) -> str:
    return f"http://localhost:{line.client.port}"


async def sign_in(page: Any, base: str, key: str) -> None:
    await page.goto(f"{base}/console/")
    await page.get_by_label("Your API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/console/(call-taker|board|handbacks|counselor)"))


async def assert_accessible(page: Any) -> None:
    violations = await axe_violations(page)
    assert violations == [], violations
    assert await no_horizontal_scroll(page)


async def answer_safe_screening(page: Any) -> None:
    await page.get_by_label("First person (the caller is in crisis)").check()
    for question in (
        "Weapons involved?",
        "Violence or threats?",
        "Medical emergency?",
        "Suicide attempt in progress?",
        "Severe intoxication?",
        "Officer requested?",
        "Imminent risk to life?",
    ):
        await page.get_by_role("group", name=question).get_by_label("No", exact=True).check()
    await (
        page.get_by_role("group", name="Caller consents to transfer?")
        .get_by_label("Yes", exact=True)
        .check()
    )


async def test_call_taker_transfer_falls_back_live_and_connects(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker, config_dir: Path
) -> None:
    short_ring_timeouts(config_dir)
    key = make_key(PSAP, "psap")
    parties = {
        PRIMARY: PartyConfig(behaviour=Behaviour.NO_ANSWER),
        BACKUP: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=4),
    }
    async with wired(make_client, settings, key, parties=parties, time_scale=1.0) as line:
        base = origin(line)
        async with browser_page() as page:
            await sign_in(page, base, key)
            decision = page.get_by_test_id("decision")
            await answer_safe_screening(page)
            await page.get_by_label("Callback number").fill("+12065550123")
            await page.get_by_label("Callback number").press("Tab")
            await decision.filter(has_text="Transfer to Crisis Connections").wait_for(
                timeout=LIVE_S
            )
            await assert_accessible(page)
            await screenshot(page, "call-taker-decision")

            await page.get_by_role("button", name="Transfer", exact=True).click()
            code_box = page.get_by_test_id("bridge-code")
            await code_box.wait_for(timeout=LIVE_S)
            code = (await code_box.inner_text()).replace(" ", "")
            assert re.fullmatch(r"\d{6}", code)
            size = await code_box.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
            assert size >= 48  # readable across a desk
            await screenshot(page, "call-taker-code")

            line.dial_bridge(code)
            progress = page.get_by_test_id("progress")
            await progress.filter(has_text="Ringing Crisis Connections").wait_for(timeout=LIVE_S)
            await progress.filter(has_text="trying Washington 988 backup").wait_for(timeout=LIVE_S)
            await screenshot(page, "call-taker-fallback")
            await progress.filter(has_text="Connected to Washington 988 backup").wait_for(
                timeout=LIVE_S
            )
            await assert_accessible(page)
            await page.get_by_role("button", name="I have released the call").click()
            await page.get_by_text("Released at").wait_for(timeout=LIVE_S)
            await screenshot(page, "call-taker-connected")


async def test_call_taker_works_with_the_keyboard_alone(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line:
        base = origin(line)
        async with browser_page() as page:
            await sign_in(page, base, key)
            await page.get_by_test_id("decision").wait_for(timeout=LIVE_S)
            # Tab to the caller type, arrow keys choose within a question, Tab moves on.
            await page.get_by_label("First person (the caller is in crisis)").focus()
            await page.keyboard.press("Space")
            answers = ["No"] * 7 + ["Yes"]
            for answer in answers:
                await page.keyboard.press("Tab")
                focused = await page.evaluate(
                    "() => document.activeElement.parentElement.innerText"
                )
                if answer == "No":
                    # Yes → No: one arrow down from "Yes" when focus lands on the group's checked
                    # "Not asked" radio.
                    await page.keyboard.press("ArrowUp")
                else:
                    await page.keyboard.press("ArrowUp")
                    await page.keyboard.press("ArrowUp")
                assert focused.strip() == "Not asked"
            decision = page.get_by_test_id("decision")
            await decision.filter(has_text="Transfer to").wait_for(timeout=LIVE_S)
            # On to the Transfer button with Tab only, then Enter.
            for _ in range(12):
                await page.keyboard.press("Tab")
                name = await page.evaluate("() => document.activeElement.textContent.trim()")
                if name == "Transfer":
                    break
            else:
                raise AssertionError("Transfer is not reachable with Tab")
            await page.keyboard.press("Enter")
            code_box = page.get_by_test_id("bridge-code")
            await code_box.wait_for(timeout=LIVE_S)
            first_code = await code_box.inner_text()
            # A new code, by keyboard: the old one stops working, the new one is shown.
            await page.get_by_role("button", name="New code").focus()
            await page.keyboard.press("Enter")
            await page.wait_for_function(
                "old => document.querySelector('[data-testid=bridge-code]').innerText !== old",
                arg=first_code,
                timeout=LIVE_S,
            )
            # Cancel by keyboard too. The new code's own live event redraws the transfer's
            # progress a moment later (the stream is live): a press that lands on the button
            # being replaced is lost, so it is pressed again as a person would.
            from playwright.async_api import TimeoutError as PlaywrightTimeout

            cancelled = page.get_by_test_id("progress").filter(has_text="Transfer cancelled")
            for _ in range(3):
                await page.get_by_role("button", name="Cancel transfer").press("Enter")
                try:
                    await cancelled.wait_for(timeout=LIVE_S // 3)
                    break
                except PlaywrightTimeout:
                    continue
            await cancelled.wait_for(timeout=LIVE_S)
            # A tablet held upright: still no sideways scrolling.
            await page.set_viewport_size({"width": 768, "height": 1024})
            assert await no_horizontal_scroll(page)
            await screenshot(page, "call-taker-tablet")


async def test_a_handback_appears_in_the_inbox_and_is_confirmed(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    key = make_key(PSAP, "psap")
    center = make_key("crisis-connections", "crisis_center")
    async with wired(make_client, settings, key) as line:
        base = origin(line)
        async with browser_page() as page:
            await sign_in(page, base, key)
            await page.get_by_role("link", name="Handback inbox").click()
            await page.get_by_text("No handbacks.").wait_for(timeout=LIVE_S)
            resp = await line.client.post(
                "/v1/handbacks",
                json={
                    "psap_id": PSAP,
                    "reason": "imminent_risk",
                    "location": None,
                    "callback_number": "+12065550123",
                    "risk": {"weapons": False, "summary": "says they have pills"},
                    "counselor_ref": "c-17",
                },
                headers={"Authorization": f"Bearer {center}"},
            )
            assert resp.status == 201, await resp.text()
            alert = page.get_by_test_id("handback")
            await alert.wait_for(timeout=LIVE_S)
            text = await alert.inner_text()
            assert "Imminent risk" in text
            assert "location unknown" in text
            assert "+1 206-555-0123" in text
            assert "Weapons: no" in text
            assert "Unconfirmed" in text
            await assert_accessible(page)
            await screenshot(page, "handback-inbox")
            await alert.get_by_role("button", name="Contact made").click()
            await alert.filter(has_text="Contact made (").wait_for(timeout=LIVE_S)
            assert "Unconfirmed" not in await alert.inner_text()


async def test_supervisor_board_shows_live_work_and_figures(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    psap_key = make_key(PSAP, "psap")
    admin = make_key("ops", "admin")
    async with wired(make_client, settings, psap_key) as line:
        await line.open("first_person")
        await line.open("third_party", screening={"weapons": True})
        base = origin(line)
        async with browser_page() as page:
            await sign_in(page, base, admin)
            await page.get_by_role("heading", name="Supervisor board").wait_for()
            board = page.locator("#board")
            await board.get_by_text("Waiting for the bridge call").wait_for(timeout=LIVE_S)
            await board.get_by_text("Destinations now").wait_for()
            assert await page.locator("svg.chart").count() == 3
            await assert_accessible(page)
            await screenshot(page, "supervisor-board")


async def test_sign_in_page_is_accessible(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line, browser_page() as page:
        await page.goto(f"{origin(line)}/console/sign-in")
        await assert_accessible(page)
        await screenshot(page, "sign-in")


async def test_a_cross_site_form_post_is_refused(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    """A page on another origin posts a transfer form to the console while the person is signed
    in: refused (no CSRF token; another origin), and no transfer is opened."""
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line:
        base = origin(line)
        evil = web.Application()
        target = f"{base}/console/call-taker/transfers"

        async def attack(request: web.Request) -> web.Response:
            html = (
                f'<form id="f" method="post" action="{target}">'
                '<input name="caller_type" value="first_person">'
                '<input name="consent_to_transfer" value="yes"></form>'
                "<script>document.getElementById('f').submit()</script>"
            )
            return web.Response(text=html, content_type="text/html")

        evil.router.add_get("/", attack)
        server = TestServer(evil, host="127.0.0.1")
        await server.start_server()
        try:
            async with browser_page() as page:
                await sign_in(page, base, key)
                await page.goto(f"http://127.0.0.1:{server.port}/")
                await page.wait_for_url(target, timeout=LIVE_S)
                body = await page.locator("body").inner_text()
                assert "Refused" in body or "Signed out" in body, body
        finally:
            await server.close()
        assert await line.client.app[STORE].active_for_psap(PSAP) == set()


async def test_counselor_sees_the_call_ring_records_the_outcome_and_hands_back(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    psap_key = make_key(PSAP, "psap")
    center = make_key("crisis-connections", "crisis_center")
    parties = {PRIMARY: PartyConfig(behaviour=Behaviour.ANSWER, answer_after_s=3)}
    async with (
        wired(make_client, settings, psap_key, parties=parties, time_scale=1.0) as line,
        browser_page() as page,
    ):
        await sign_in(page, origin(line), center)
        await page.get_by_text("No calls ringing or connected.").wait_for(timeout=LIVE_S)
        opened = await line.open("first_person", callback_number="+12065550123")
        line.dial_bridge(opened["bridge_code"])
        call = page.get_by_test_id("call")
        await call.filter(has_text="Ringing Crisis Connections").wait_for(timeout=LIVE_S)
        text = await call.inner_text()
        assert "+1 206-555-0123" in text
        assert "Weapons involved: no" in text
        await screenshot(page, "counselor-ringing")
        await call.filter(has_text="Connected — Crisis Connections").wait_for(timeout=LIVE_S)
        await assert_accessible(page)
        await call.get_by_label("Outcome").select_option("resolved_by_phone")
        await call.get_by_role("button", name="Record outcome").click()
        await call.filter(has_text="Resolved by phone · no police").wait_for(timeout=LIVE_S)

        await call.get_by_text("Hand back to 911").click()
        await call.get_by_label("Address (if known)").fill("500 Example Ave, Kent")
        assert await call.get_by_label("Callback number").input_value() == "+12065550123"
        await call.get_by_role("group", name="Weapons?").get_by_label("No", exact=True).check()
        await call.get_by_role("button", name=re.compile("^Hand back to")).click()
        mine = page.get_by_test_id("my-handback")
        await mine.first.wait_for(timeout=LIVE_S)
        await call.get_by_text("Hand back to 911").wait_for(state="detached", timeout=LIVE_S)
        assert "Imminent risk" in await mine.first.inner_text()
        await assert_accessible(page)
        await screenshot(page, "counselor-handback")


async def test_a_network_blip_is_shown_and_the_inbox_catches_up(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    """The stream drops (every connection cut, new ones refused): the page says so; a handback
    made meanwhile shows once the stream is back (resumed by Last-Event-ID), and the notice
    goes."""
    key = make_key(PSAP, "psap")
    center = make_key("crisis-connections", "crisis_center")
    async with wired(make_client, settings, key) as line, browser_page() as page:
        served = {r.resource.canonical for r in line.client.app.router.routes() if r.resource}
        if "/v1/events" not in served:
            pytest.skip("this gateway has no GET /v1/events: the consoles fall back to polling")
        proxy = BlipProxy(line.client.port)
        await proxy.up()
        base = f"http://localhost:{proxy.port}"
        try:
            await sign_in(page, base, key)
            await page.goto(f"{base}/console/handbacks")
            await page.wait_for_function("document.body.dataset.live === 'on'", timeout=LIVE_S)
            banner = page.locator("#live-status")
            assert await banner.is_hidden()
            await proxy.down()
            await banner.wait_for(state="visible", timeout=LIVE_S)
            await screenshot(page, "live-interrupted")
            resp = await line.client.post(
                "/v1/handbacks",
                json={"psap_id": PSAP, "reason": "medical", "callback_number": "+12065550123"},
                headers={"Authorization": f"Bearer {center}"},
            )
            assert resp.status == 201, await resp.text()
            await proxy.up()
            await (
                page.get_by_test_id("handback")
                .filter(has_text="Medical emergency")
                .wait_for(timeout=LIVE_S)
            )
            await banner.wait_for(state="hidden", timeout=LIVE_S)
        finally:
            await proxy.down()
