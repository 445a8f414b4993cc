"""Twilio's REST API through twilio-python, over httpx.

twilio-python's bundled aiohttp client ignores its ``timeout`` and its ``max_retries`` re-sends
POSTs — it could dial a 988 center twice. ``HttpxTwilioClient`` gives every request a real
timeout and never retries; ``client.api.base_url`` points the library at any Twilio-compatible
server (the built-in sandbox in development).

The requests themselves run on an event loop of their own, in a thread (``RequestLoop``): a dial
must not wait its turn behind every webhook a busy serving loop has queued. httpx yields to the
loop four or five times before a request's bytes are out (its pool's and connection's locks,
one checkpoint per write); on the serving loop each of those yields waits for every callback
then ready, so under load a Participants create left hundreds of milliseconds after the TwiML
that announced it. On its own loop it waits for nothing but the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from gateway.core.ports import Leg, TelephonyError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
STOP_S = 5.0
"""How long closing waits for the request loop's thread to end."""

T = TypeVar("T")


class RequestLoop:
    """An asyncio event loop running in a daemon thread of its own; ``run`` awaits a coroutine
    on it from another loop. Cancelling the awaiting task cancels the coroutine (a timeout
    around ``run`` reaches the request itself)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def stop(self) -> None:
        """Stop the loop once what it runs now has been handed over, and close it."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, STOP_S)
        if not self._thread.is_alive():
            self.loop.close()


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]
    """twilio-python's async transport on an ``httpx.AsyncClient``: timeouts, no retries.
    With ``requests``, each request runs on that loop (the client must be used nowhere else)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        requests: RequestLoop | None = None,
    ) -> None:
        super().__init__(logger=log, is_async=True, timeout=timeout_s)
        self.client = client
        self.timeout_s = timeout_s
        self.requests = requests

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
        sent = self.client.request(
            method.upper(),
            uri,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout or self.timeout_s,
            follow_redirects=allow_redirects,
        )
        try:
            response = await (sent if self.requests is None else self.requests.run(sent))
        except (httpx.HTTPError, RuntimeError) as exc:
            # RuntimeError: the client was closed under a request (a shutdown's last work), or
            # the request loop was.
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
        # A client handed in belongs to its owner's loop; one made here, to the request loop.
        self._requests = RequestLoop("twilio-rest") if http is None else None
        self.client = Client(
            account_sid,
            auth_token,
            http_client=HttpxTwilioClient(self._http, timeout_s, self._requests),
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
        if self._requests is not None:
            await self._requests.run(self._http.aclose())
            await self._requests.stop()
        elif self._owns_http:
            await self._http.aclose()
