"""Problems found using the consoles as their people would (call-taker, counselor, supervisor,
administrator), each pinned by a test over real HTTP against the real app and a real Redis."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from gateway.console import policy_views, views
from gateway.core.auth import digest, key_id_of, revoke_key
from gateway.core.settings import Settings
from gateway.handback.states import HandbackState
from gateway.reports import counters
from gateway.transfer.states import TransferState
from tests.browser.helpers import browser_page, need_chromium, screenshot
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PSAP, Line, wired
from tests.test_console_browser import answer_safe_screening
from tests.test_console_pages import HTTP, form, sign_in
from tests.test_console_views import NAMES, T0, ZONE, ringing
from tests.test_console_views import handback as view_handback
from tests.test_console_views import transfer as view_transfer
from tests.test_events import Sse

KEY_CHECK_WAIT_S = 5.0
"""Longer than ``gateway.web.events.KEY_CHECK_S``: the stream has checked its key by then."""


async def test_the_console_stream_stays_open_and_carries_events(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    # A console stream has no Authorization header: its periodic key check once raised 401
    # into the open stream, so every page dropped to "Live updates interrupted" every 2 s.
    client = await make_client(events_heartbeat_s=0.2, **HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    async with client.get("/console/events", timeout=aiohttp.ClientTimeout(total=60)) as resp:
        assert resp.status == 200
        events = Sse(resp)
        await asyncio.sleep(KEY_CHECK_WAIT_S)
        opened = await client.post("/console/call-taker/transfers", data=form(csrf))
        assert opened.status == 200
        message = await events.next(within_s=10)
        assert message.data["type"].startswith("transfer.")


async def test_revoking_the_key_ends_its_console_stream_cleanly(
    make_client: AppFactory, make_key: KeyMaker, config_dir: Any
) -> None:
    client = await make_client(events_heartbeat_s=0.2, **HTTP)
    key = make_key(PSAP, "psap")
    await sign_in(client, key)
    async with client.get("/console/events", timeout=aiohttp.ClientTimeout(total=60)) as resp:
        assert resp.status == 200
        events = Sse(resp)
        revoke_key(config_dir, key_id_of(digest(key)))
        assert await events.ended(within_s=15)


def test_after_release_the_headline_no_longer_asks_to_release() -> None:
    # Once released, "introduce the caller, then release" sat above a page with no release
    # button: the headline says the call-taker is off the call.
    connected = view_transfer(
        TransferState.CONNECTED,
        [ringing("cc", T0, "no_answer"), ringing("wa", T0, "answered")],
        connected_destination_id="wa",
        connected_at=T0 + timedelta(seconds=40),
    )
    released = connected.model_copy(update={"released_at": T0 + timedelta(minutes=1)})
    view = views.progress_view(released, NAMES, ZONE)
    assert "then release" not in view.headline.text
    assert (
        view.headline.text == "Released — the caller is with WA 988 backup; you are off this call"
    )
    assert not view.can_release


def test_the_counselor_reads_the_callers_language_in_words() -> None:
    # The screen-pop said "language en" / "language es-MX": a counselor needs the language.
    spanish = view_transfer(TransferState.RINGING, [ringing("wa", T0)], language="es-MX")
    call = views.counselor_call(spanish, NAMES, {}, ZONE, ["wa"])
    assert call is not None
    assert call.language == "Spanish (es-MX)"
    english = view_transfer(TransferState.RINGING, [ringing("wa", T0)], language="en")
    call = views.counselor_call(english, NAMES, {}, ZONE, ["wa"])
    assert call is not None
    assert call.language == "English"
    assert views.language_words("x-klingon") == "x-klingon"


def test_the_board_charts_each_callers_wait_once_and_rounds_it() -> None:
    # The chart once read the day's answer-time set, which also holds each answering
    # destination's own ring time (4 bars for 2 calls); it now draws the report's own
    # histogram of the caller's wait, one count per connected call. The summary read
    # "p50 15.6023395 s".
    histogram = {f"{b:g}": 0 for b in counters.ANSWER_BUCKETS_S} | {"+Inf": 0}
    histogram |= {"10": 1, "30": 1}
    assert sum(count for _, count in views.answer_histogram(histogram)) == 2
    assert views.seconds_words(15.6023395) == "16 s"
    assert views.seconds_words(None) == "—"


async def test_an_unknown_console_address_is_a_page_not_json(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client = await make_client(**HTTP)
    resp = await client.get("/console/call-takr")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("text/html")
    text = await resp.text()
    assert "There is no such page" in text
    assert '"error"' not in text
    await sign_in(client, make_key(PSAP, "psap"))
    text = await (await client.get("/console/call-takr")).text()
    assert "Handback inbox" in text  # the signed-in person's links
    # The console's own files and pages are still served.
    assert (await client.get("/console/static/console.css")).status == 200
    assert (await client.get("/console/call-taker")).status == 200


async def test_every_psap_page_shows_unconfirmed_handbacks_beside_the_inbox_link(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    # A call-taker on the call-taker page had no sign that a handback had arrived: the inbox
    # link now carries the count of unconfirmed ones, refetched on each handback event.
    client = await make_client(**HTTP)
    await sign_in(client, make_key(PSAP, "psap"))
    page = await (await client.get("/console/call-taker")).text()
    assert 'hx-get="/console/handbacks/waiting"' in page
    assert "live:handback from:body" in page
    waiting = await client.get("/console/handbacks/waiting", headers={"HX-Request": "true"})
    assert waiting.status == 200
    assert "unconfirmed" not in await waiting.text()
    center = make_key("crisis-connections", "crisis_center")
    body = {"psap_id": PSAP, "reason": "imminent_risk", "callback_number": "+12065550123"}
    created = await client.post(
        "/v1/handbacks", json=body, headers={"Authorization": f"Bearer {center}"}
    )
    assert created.status == 201, await created.text()
    waiting = await client.get("/console/handbacks/waiting", headers={"HX-Request": "true"})
    assert "1 unconfirmed" in await waiting.text()


async def test_a_session_that_ended_says_why_and_sign_out_says_so(
    make_client: AppFactory, make_key: KeyMaker, config_dir: Any
) -> None:
    # A revoked key or an idle session sent the person to a bare sign-in form, with no word of
    # what happened; the hint showed a shell command to a call-taker.
    client = await make_client(**HTTP)
    key = make_key(PSAP, "psap")
    await sign_in(client, key)
    revoke_key(config_dir, key_id_of(digest(key)))
    resp = await client.get("/console/handbacks")
    assert resp.status == 200
    text = await resp.text()
    assert "Your session has ended" in text
    assert "python -m" not in text
    live = await client.get("/console/handbacks/list", headers={"HX-Request": "true"})
    assert live.status == 401
    assert "ended=1" in live.headers["HX-Redirect"]
    refused = await client.post("/console/sign-in", data={"key": key})
    assert refused.status == 401
    assert "may be mistyped or revoked" in await refused.text()

    csrf = await sign_in(client, make_key(PSAP, "psap"))
    resp = await client.post("/console/sign-out", data={"csrf": csrf})
    text = await resp.text()
    assert "You have signed out." in text
    assert "Your session has ended" not in text


async def test_a_kept_call_renders_no_stray_out_of_band_swap(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    # "Transfer" on a call the policy keeps with 911 answered an out-of-band swap for a
    # #bridge-code that was never on the page (htmx:oobErrorNoTarget in the browser).
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    kept = await client.post(
        "/console/call-taker/transfers",
        data=form(csrf, weapons="yes"),
        headers={"HX-Request": "true"},
    )
    text = await kept.text()
    assert "stays with 911" in text
    assert "hx-swap-oob" not in text


def test_every_board_alarm_says_what_to_do() -> None:
    # The alarms said what was wrong ("Handback not delivered to CAD") but not what to do.
    stuck = view_transfer(TransferState.RINGING, [ringing("cc", T0)])
    failed = view_transfer(TransferState.FAILED, [ringing("cc", T0, "no_answer")])
    alarms = [
        *views.transfer_row(stuck, NAMES, T0 + timedelta(minutes=2))[1],
        *views.transfer_row(failed, NAMES, T0 + timedelta(minutes=2))[1],
        *views.handback_row(
            view_handback(unconfirmed_at=T0, cad_mode="send", cad_failed_at=T0),
            T0 + timedelta(minutes=31),
        )[1],
        *views.handback_row(view_handback(state=HandbackState.FAILED), T0)[1],
    ]
    assert len(alarms) == 5
    for alarm in alarms:
        assert alarm.action, alarm
    cad = next(a for a in alarms if "CAD" in a.text)
    assert cad.action == "Enter the incident in CAD by hand from the Handback inbox."


async def open_call_taker(page: Any, line: Line, key: str, *, by_button: bool = False) -> str:
    """Sign in to the console with a PSAP key (Enter in the key's field, or the "Sign in"
    button), onto the call-taker page; the console's base URL."""
    base = f"http://localhost:{line.client.port}"
    await page.goto(f"{base}/console/")
    await page.get_by_label("Your API key").fill(key)
    if by_button:
        await page.get_by_role("button", name="Sign in").click()
    else:
        await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/console/call-taker"))
    return base


@pytest.mark.parametrize("viewport", [(1280, 720), (768, 1024)], ids=["laptop", "tablet"])
async def test_after_transfer_the_code_and_its_controls_are_in_view(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker, viewport: tuple[int, int]
) -> None:
    # The bridge number and code opened at the bottom edge at 1280x720, "Cancel transfer"
    # below the fold, and far below the form on a tablet: the call-taker, reading the code
    # across the desk, had to scroll to find it. The page now brings it into view.
    need_chromium()
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line, browser_page() as page:
        width, height = viewport
        await page.set_viewport_size({"width": width, "height": height})
        await open_call_taker(page, line, key, by_button=True)
        await answer_safe_screening(page)
        await page.get_by_role("button", name="Transfer").click()
        await page.locator("#bridge-code").wait_for(timeout=30_000)
        await page.wait_for_timeout(500)  # the scroll, if any
        for target in (
            page.locator("#bridge-code"),
            page.get_by_role("button", name="Cancel transfer"),
        ):
            box = await target.bounding_box()
            assert box is not None
            assert box["y"] >= 0, box
            assert box["y"] + box["height"] <= height, box
        await screenshot(page, f"review-call-taker-code-in-view-{width}")


async def test_a_press_that_fails_says_so_instead_of_doing_nothing(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    # With the gateway unreachable or answering 5xx, htmx swapped nothing: "Transfer" seemed to
    # do nothing at all. The page now says the press did not go through and what to do.
    need_chromium()
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line, browser_page() as page:
        await open_call_taker(page, line, key, by_button=True)
        await answer_safe_screening(page)
        notices = page.locator("#notices")

        await page.route("**/console/call-taker/transfers", lambda route: route.abort())
        await page.get_by_role("button", name="Transfer").click()
        await notices.get_by_text("the gateway could not be reached").wait_for(timeout=10_000)
        assert "carry on by phone" in await notices.inner_text()
        await page.unroute("**/console/call-taker/transfers")

        await page.route(
            "**/console/call-taker/transfers",
            lambda route: route.fulfill(status=503, body="unavailable"),
        )
        await page.get_by_role("button", name="Transfer").click()
        await notices.get_by_text("answered with an error (503)").wait_for(timeout=10_000)
        assert "unavailable" not in await notices.inner_text()
        await page.unroute("**/console/call-taker/transfers")

        await page.get_by_role("button", name="Transfer").click()
        await page.locator("#bridge-code").wait_for(timeout=30_000)
        assert (await notices.inner_text()).strip() == ""
        await screenshot(page, "review-call-taker-after-a-failed-press")


async def test_keyboard_focus_survives_new_code_and_cancel(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    # Enter on "New code" or "Cancel transfer" swapped the button away and left focus on
    # <body>: the next Tab started again from "Skip to content".
    need_chromium()
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line, browser_page() as page:
        await open_call_taker(page, line, key)
        await answer_safe_screening(page)
        await page.get_by_role("button", name="Transfer").focus()
        await page.keyboard.press("Enter")
        await page.locator("#bridge-code").wait_for(timeout=30_000)
        focused = "() => document.activeElement.id || document.activeElement.dataset.testid || ''"

        first = await page.locator("#bridge-code").inner_text()
        await page.get_by_role("button", name="New code").focus()
        await page.keyboard.press("Enter")
        await page.wait_for_function(
            "old => document.querySelector('#bridge-code').innerText !== old", arg=first
        )
        await page.wait_for_timeout(500)
        assert (await page.evaluate(focused)).startswith("new-code-")

        await page.get_by_role("button", name="Cancel transfer").focus()
        await page.keyboard.press("Enter")
        await page.get_by_text("Transfer cancelled").wait_for(timeout=30_000)
        await page.wait_for_timeout(500)
        assert await page.evaluate(focused) == "progress"


async def test_the_drafts_first_error_shows_beside_the_save_button(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    # The check's result sat below the 28-line editor, off screen at 1280x720 while typing:
    # a short line by the Save button now says valid or names the first error at its path.
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key("ops", "admin"))
    page = await (await client.get("/console/policy")).text()
    assert 'id="draft-brief"' in page
    draft = re.search(r'<textarea id="draft"[^>]*>(.*?)</textarea>', page, re.S)
    assert draft is not None
    text = html.unescape(draft.group(1))
    bad = text.replace("ring_timeout_s: 20", "ring_timeout_s: -5", 1)
    checked = await client.post(
        "/console/policy/check",
        data={"csrf": csrf, "draft": bad},
        headers={"HX-Request": "true"},
    )
    brief = re.search(
        r'<p id="draft-brief" hx-swap-oob="true"[^>]*>(.*?)</p>', await checked.text()
    )
    assert brief is not None
    assert brief.group(1).startswith("1 error: policy.rules.0.ring_timeout_s (line ")
    good = await client.post(
        "/console/policy/check",
        data={"csrf": csrf, "draft": text.replace("ring_timeout_s: 20", "ring_timeout_s: 25", 1)},
        headers={"HX-Request": "true"},
    )
    assert "Valid: 1 change from version 1 (below)." in await good.text()


async def test_the_board_names_each_rows_psap(make_client: AppFactory, make_key: KeyMaker) -> None:
    # Rows read "Transfer 4dc50a · kc-valleycom": the supervisor reads the PSAP's name.
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    assert (await client.post("/console/call-taker/transfers", data=form(csrf))).status == 200
    board = await client.get("/console/board/live", headers={"HX-Request": "true"})
    rows = re.findall(r"<tr class=\"tone-row-[a-z]+\"><td>(.*?)</td>", await board.text())
    assert rows
    assert all("Valley Communications Center" in row for row in rows), rows


def test_try_a_call_names_the_language_in_words() -> None:
    # The trace of "Try a call" read "language en".
    line = "request: caller_type=first_person language=vi transfers_so_far=0 tags=[]"
    assert policy_views.trace_words(line, {}) == (
        "The call: first person caller, language Vietnamese, 0 transfers so far"
    )


async def test_a_background_refresh_that_fails_is_the_banner_not_a_notice(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    # A live refresh the person did not ask for (the inbox refetched on an event) failed and
    # was shown as "That did not go through" — as if they had pressed something. It is the
    # live-status banner instead, until a refresh goes through again.
    need_chromium()
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line, browser_page() as page:
        base = await open_call_taker(page, line, key)
        await page.goto(f"{base}/console/handbacks")
        await page.wait_for_function("document.body.dataset.live === 'on'", timeout=30_000)
        await page.route("**/console/handbacks/list", lambda route: route.abort())
        await page.evaluate("htmx.trigger(document.body, 'live:handback')")
        banner = page.locator("#live-status")
        await banner.wait_for(state="visible", timeout=10_000)
        assert (await page.locator("#notices").inner_text()).strip() == ""
        await page.unroute("**/console/handbacks/list")
        await banner.wait_for(state="hidden", timeout=20_000)


async def test_a_double_press_on_transfer_opens_one_transfer(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker
) -> None:
    # A double click on "Transfer" opened two transfers (two codes; the first left waiting).
    need_chromium()
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line, browser_page() as page:
        await open_call_taker(page, line, key)
        await answer_safe_screening(page)
        await page.get_by_role("button", name="Transfer").dblclick()
        await page.locator("#bridge-code").wait_for(timeout=30_000)
        await page.wait_for_timeout(1000)
        listed = await line.client.get("/v1/transfers", headers={"Authorization": f"Bearer {key}"})
        assert len((await listed.json())["items"]) == 1
