"""Twilio's REST API through twilio-python, over httpx.

twilio-python's bundled aiohttp client ignores its ``timeout`` and its ``max_retries`` re-sends
POSTs — it could dial a 988 center twice. ``HttpxTwilioClient`` gives every request a real
timeout and never retries; ``client.api.base_url`` points the library at any Twilio-compatible
server (the built-in sandbox in development).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from gateway.core.ports import Leg, TelephonyError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]
    """twilio-python's async transport on an ``httpx.AsyncClient``: timeouts, no retries."""

    def __init__(self, client: httpx.AsyncClient, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(logger=log, is_async=True, timeout=timeout_s)
        self.client = client
        self.timeout_s = timeout_s

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - twilio-python's interface
        allow_redirects: bool = False,
    ) -> Response:
        try:
            response = await self.client.request(
                method.upper(),
                uri,
                params=params,  # type: ignore[arg-type]
                data=data,
                headers=headers,
                auth=auth,
                timeout=timeout or self.timeout_s,
                follow_redirects=allow_redirects,
            )
        except (httpx.HTTPError, RuntimeError) as exc:
            # RuntimeError: the client was closed under a request (a shutdown's last work).
            raise TelephonyError(f"twilio request failed: {type(exc).__name__}") from exc
        return Response(response.status_code, response.text, response.headers)


class TwilioTelephony:
    """``gateway.core.ports.Telephony`` on Twilio's Conferences, Participants and Calls
    resources."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = "https://api.twilio.com",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self.client = Client(
            account_sid, auth_token, http_client=HttpxTwilioClient(self._http, timeout_s)
        )
        self.client.api.base_url = base_url.rstrip("/")
        self.account = self.client.api.v2010.accounts(account_sid)

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except TwilioRestException as exc:
            raise TelephonyError(
                f"{what}: twilio answered {exc.status}", status=exc.status
            ) from exc
        except TwilioException as exc:
            raise TelephonyError(f"{what}: {type(exc).__name__}") from exc

    async def add_participant(
        self,
        conference: str,
        *,
        to: str,
        from_: str,
        timeout_s: int,
        status_callback: str,
        label: str,
        conference_status_callback: str | None = None,
    ) -> str:
        conference_events = (
            {
                "conference_status_callback": conference_status_callback,
                "conference_status_callback_method": "POST",
                "conference_status_callback_event": ["start", "end", "join", "leave"],
            }
            if conference_status_callback
            else {}
        )
        participant = await self._call(
            "add participant",
            self.account.conferences(conference).participants.create_async(
                from_=from_,
                to=to,
                timeout=timeout_s,
                status_callback=status_callback,
                status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                end_conference_on_exit=False,
                start_conference_on_enter=True,
                beep="false",
                early_media=False,
                label=label,
                **conference_events,
            ),
        )
        return str(participant.call_sid)

    async def cancel_call(self, call_sid: str) -> None:
        call = self.account.calls(call_sid)
        # Twilio accepts Status=canceled on any call but only cancels one still queued or
        # ringing; an answered leg comes back in progress and must be hung up instead.
        updated = await self._call("cancel call", call.update_async(status="canceled"))
        if str(getattr(updated, "status", "")) in {"in-progress", "in_progress"}:
            await self._call("end call", call.update_async(status="completed"))

    async def cancel_ringing(self, call_sid: str) -> bool:
        # Status=canceled only: Twilio cancels a queued or ringing call and leaves an answered
        # one as it is (it comes back in progress) — never a hang-up.
        updated = await self._call(
            "cancel ringing call", self.account.calls(call_sid).update_async(status="canceled")
        )
        return str(getattr(updated, "status", "")) not in {"in-progress", "in_progress"}

    async def _live_conference(self, name: str) -> str | None:
        found = await self._call(
            "find conference",
            self.account.conferences.list_async(friendly_name=name, status="in-progress"),
        )
        return str(found[0].sid) if found else None

    async def conference_live(self, conference: str) -> bool:
        return await self._live_conference(conference) is not None

    async def call(self, call_sid: str) -> Leg:
        found = await self._call("fetch call", self.account.calls(call_sid).fetch_async())
        return Leg(call_sid, str(found.status))

    async def find_participant(self, conference: str, label: str) -> Leg | None:
        sid = await self._live_conference(conference)
        if sid is None:
            return None
        try:
            found = await self._call(
                "fetch participant",
                self.account.conferences(sid).participants(label).fetch_async(),
            )
        except TelephonyError as exc:
            if exc.status == 404:
                return None
            raise
        # A participant's own status (queued, connecting, ringing, connected, complete, failed)
        # is coarser than its call's: ask the call.
        return await self.call(str(found.call_sid))

    async def announce(self, conference: str, url: str) -> None:
        sid: str | None = conference
        if not conference.startswith("CF"):
            sid = await self._live_conference(conference)
            if sid is None:
                raise TelephonyError("announce: conference not in progress", status=404)
        await self._call(
            "announce",
            self.account.conferences(sid).update_async(announce_url=url, announce_method="POST"),
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
