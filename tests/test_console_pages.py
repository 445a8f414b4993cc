"""The consoles over real HTTP, without a browser: sign-in and sessions, CSRF, each role's pages,
and the call-taker's fragments, against the real app and a real Redis."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.core.auth import digest, key_id_of, revoke_key
from gateway.core.keys import console_session
from tests.conftest import AppFactory, KeyMaker
from tests.telephony import PSAP

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
HTTP = {"public_base_url": "http://127.0.0.1:8080"}
"""A plain-http public URL: the test client sends no ``Secure`` cookie over http."""


async def sign_in(client: TestClient[Any, Any], key: str) -> str:
    """Sign in; the session's CSRF token as the page carries it."""
    resp = await client.post("/console/sign-in", data={"key": key}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await client.get(resp.headers["Location"])
    assert page.status == 200
    found = CSRF_RE.search(await page.text())
    assert found is not None
    return found.group(1)


def form(csrf: str, **fields: str) -> dict[str, str]:
    answers = {
        "caller_type": "first_person",
        "weapons": "no",
        "violence": "no",
        "medical_emergency": "no",
        "attempt_in_progress": "no",
        "severe_intoxication": "no",
        "officer_requested": "no",
        "imminent_risk": "no",
        "consent_to_transfer": "yes",
        "language": "en",
        "transfers_so_far": "0",
    }
    return {"csrf": csrf, **answers, **fields}


async def test_sign_in_sets_a_strict_http_only_cookie_and_keeps_no_key(
    make_client: AppFactory, make_key: KeyMaker, redis: Any
) -> None:
    secure = await make_client()
    key = make_key(PSAP, "psap")
    resp = await secure.post("/console/sign-in", data={"key": key}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/call-taker"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" in cookie  # the public URL of the test settings is https
    client = await make_client(**HTTP)
    await redis.flushdb()
    resp = await client.post("/console/sign-in", data={"key": key}, allow_redirects=False)
    assert "Secure" not in resp.headers["Set-Cookie"]
    page = await client.get("/console/call-taker")
    text = await page.text()
    assert key not in text
    stored = [k async for k in redis.scan_iter(console_session("*"))]
    assert len(stored) == 1
    assert key.encode() not in (await redis.get(stored[0]))


async def test_a_wrong_key_is_refused_and_pages_need_a_session(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client = await make_client(**HTTP)
    resp = await client.post("/console/sign-in", data={"key": "gw_psap_nope"})
    assert resp.status == 401
    assert "not recognised" in await resp.text()
    resp = await client.get("/console/call-taker", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/console/sign-in")
    resp = await client.get("/console/handbacks/list", headers={"HX-Request": "true"})
    assert resp.status == 401
    assert resp.headers["HX-Redirect"].startswith("/console/sign-in")


async def test_sign_out_ends_the_session(make_client: AppFactory, make_key: KeyMaker) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    resp = await client.post("/console/sign-out", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    resp = await client.get("/console/call-taker", allow_redirects=False)
    assert resp.status == 303


async def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    resp = await client.post("/console/call-taker/transfers", data=form("wrong"))
    assert resp.status == 403
    assert "did not come from this console" in await resp.text()
    resp = await client.post(
        "/console/call-taker/transfers",
        data=form(csrf),
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403
    resp = await client.post(
        "/console/sign-in", data={"key": "x"}, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403


async def test_each_role_lands_on_its_console(make_client: AppFactory, make_key: KeyMaker) -> None:
    client = await make_client(**HTTP)
    resp = await client.post(
        "/console/sign-in", data={"key": make_key("ops", "admin")}, allow_redirects=False
    )
    assert resp.headers["Location"] == "/console/board"
    board = await client.get("/console/board")
    assert board.status == 200
    text = await board.text()
    assert "Destinations now" in text
    assert "Crisis Connections" in text or "crisis" in text.lower()
    # An admin is not a call-taker.
    resp = await client.get("/console/call-taker")
    assert resp.status == 403


async def test_the_decision_fragment_explains_in_words(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    resp = await client.post("/console/call-taker/decision", data=form(csrf), headers=headers)
    text = await resp.text()
    assert resp.status == 200, text
    assert "Transfer to" in text
    resp = await client.post(
        "/console/call-taker/decision",
        data=form(csrf, weapons="yes", consent_to_transfer=""),
        headers=headers,
    )
    text = await resp.text()
    assert "Keep the call with 911" in text
    assert "Weapons involved: yes" in text
    assert "has not consented" in text


async def test_transfer_shows_the_code_and_cancel_moves_it_on(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    resp = await client.post(
        "/console/call-taker/transfers",
        data=form(csrf, callback_number="+12065550123"),
        headers=headers,
    )
    text = await resp.text()
    assert resp.status == 200, text
    code = re.search(r'data-testid="bridge-code">(\d{3}) (\d{3})<', text)
    assert code is not None, text
    transfer_id = re.search(r'id="progress-(tr_[0-9a-f]{24})"', text)
    assert transfer_id is not None
    assert "Waiting for the bridge call" in text
    resp = await client.post(f"/console/transfers/{transfer_id.group(1)}/cancel", headers=headers)
    text = await resp.text()
    assert "Transfer cancelled" in text
    # Cancelling twice is a notice in words, not a JSON error.
    resp = await client.post(f"/console/transfers/{transfer_id.group(1)}/cancel", headers=headers)
    assert resp.headers["X-Console-Status"] == "409"
    assert "notice" in await resp.text()


async def test_another_psaps_transfer_is_not_shown(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    resp = await client.get(
        "/console/transfers/tr_000000000000000000000000/progress", headers=headers
    )
    assert resp.headers["X-Console-Status"] == "404"


async def test_a_key_taken_out_of_the_key_ring_ends_its_sessions(
    make_client: AppFactory, make_key: KeyMaker, config_dir: Any
) -> None:
    client = await make_client(**HTTP)
    await sign_in(client, make_key(PSAP, "psap"))
    assert (await client.get("/console/call-taker", allow_redirects=False)).status == 200
    (config_dir / "api_keys.yaml").write_text("keys: []\n")
    resp = await client.get("/console/call-taker", allow_redirects=False)
    assert resp.status == 303


async def test_revoking_the_key_ends_its_console_session(
    make_client: AppFactory, make_key: KeyMaker, config_dir: Any
) -> None:
    client = await make_client(**HTTP)
    key = make_key(PSAP, "psap")
    await sign_in(client, key)
    revoke_key(config_dir, key_id_of(digest(key)))
    resp = await client.get("/console/call-taker", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/console/sign-in")


async def test_the_boards_time_in_state_counts_up_between_events(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    """A ringing transfer sends no event until it is answered or times out: the board's "In
    state" cell carries when the state began, so the page counts the seconds itself instead of
    showing "0 s" until the next event or a reload."""
    client = await make_client(**HTTP)
    csrf = await sign_in(client, make_key(PSAP, "psap"))
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    resp = await client.post(
        "/console/call-taker/transfers",
        data=form(csrf, callback_number="+12065550123"),
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    board = await client.get("/console/board")
    text = await board.text()
    assert board.status == 200, text
    cell = re.search(r'<td data-since="([^"]+)"><span class="elapsed">(\d+ s)</span></td>', text)
    assert cell is not None, text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", cell.group(1))


async def test_pages_declare_an_icon_so_the_browser_asks_for_no_favicon(
    make_client: AppFactory,
) -> None:
    """Without an icon a browser fetches /favicon.ico, gets a 404 and logs an error on every
    console page; the pages declare an empty inline icon, which the CSP's img-src allows."""
    client = await make_client(**HTTP)
    page = await client.get("/console/sign-in")
    text = await page.text()
    assert page.status == 200, text
    assert '<link rel="icon" href="data:,">' in text
    assert "data:" in page.headers["Content-Security-Policy"].split("img-src", 1)[1].split(";")[0]


async def test_the_boards_handback_figure_does_not_contradict_the_inbox_badge(
    make_client: AppFactory, make_key: KeyMaker
) -> None:
    """A fresh handback is "1 unconfirmed" beside the inbox link, while today's figure counts only
    those past the confirmation deadline: the board says so rather than "(0 unconfirmed)"."""
    client = await make_client(**HTTP)
    center = make_key("crisis-connections", "crisis_center")
    resp = await client.post(
        "/v1/handbacks",
        json={"psap_id": PSAP, "reason": "medical", "callback_number": "+12065550123"},
        headers={"Authorization": f"Bearer {center}"},
    )
    assert resp.status == 201, await resp.text()
    await sign_in(client, make_key(PSAP, "psap"))
    board = await client.get("/console/board")
    text = await board.text()
    assert board.status == 200, text
    assert "handbacks 1 (0 not confirmed by the deadline)" in text
    assert "(0 unconfirmed)" not in text
