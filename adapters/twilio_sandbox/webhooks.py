"""Webhooks as Twilio sends them: signed form POSTs (or GETs), with an idempotency token.

Every webhook is signed with ``RequestValidator`` over the exact URL the sandbox was given (the
public one) and, when ``deliver_via`` maps that URL's prefix, delivered to the local address
instead. TwiML fetches are awaited by the call that needs them; status callbacks are queued per
stream (one call's progress, one conference's events) so each stream arrives in order, unless
the duplicate or shuffle modes say otherwise. A failed delivery is recorded, never raised.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from .config import SandboxConfig
from .timeline import Timeline

Spawn = Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a webhook request got back: a status and body, or an error (timeout, refused)."""

    status: int | None
    body: str
    content_type: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class _Callback:
    url: str
    method: str
    params: dict[str, str]
    purpose: str
    stream: str
    token: str


def signed_request(
    auth_token: str, url: str, method: str, params: dict[str, str]
) -> tuple[str, dict[str, str] | None, str]:
    """The URL to request, the form body (None for GET) and the X-Twilio-Signature."""
    validator = RequestValidator(auth_token)
    if method.upper() == "GET":
        full = url + ("&" if "?" in url else "?") + urlencode(params) if params else url
        return full, None, str(validator.compute_signature(full, {}))
    return url, params, str(validator.compute_signature(url, params))


class WebhookSender:
    def __init__(self, config: SandboxConfig, timeline: Timeline, spawn: Spawn) -> None:
        self.config = config
        self._timeline = timeline
        self._spawn = spawn
        self._client: httpx.AsyncClient | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._shuffle_buffer: list[_Callback] = []
        self._shuffle_task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.webhook_timeout_s), follow_redirects=False
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def reset(self) -> None:
        self._locks.clear()
        self._shuffle_buffer.clear()
        self._shuffle_task = None

    def _deliver_to(self, url: str) -> str:
        for public, local in self.config.deliver_via.items():
            if url.startswith(public):
                return local + url[len(public) :]
        return url

    async def request(
        self,
        url: str,
        method: str,
        params: dict[str, str],
        *,
        purpose: str,
        token: str | None = None,
        duplicate: bool = False,
        **ids: str,
    ) -> Reply:
        """Send one signed webhook now and record it. Never raises for transport errors."""
        method = method.upper() if method.upper() in ("GET", "POST") else "POST"
        signed_url, body, signature = signed_request(self.config.auth_token, url, method, params)
        target = self._deliver_to(signed_url)
        headers = {
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": token or str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
        }
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        details: dict[str, Any] = {
            "purpose": purpose,
            "url": signed_url,
            "method": method,
            "params": params,
            **ids,
        }
        if target != signed_url:
            details["delivered_to"] = target
        if duplicate:
            details["duplicate"] = True
        await self.start()
        assert self._client is not None
        started = time.monotonic()
        try:
            response = await self._client.request(
                method,
                target,
                content=urlencode(body).encode() if body is not None else None,
                headers=headers,
            )
        except httpx.TimeoutException as exc:
            details.update(error=f"timeout: {type(exc).__name__}", elapsed_s=_since(started))
            self._timeline.record("webhook.failed", **details)
            return Reply(None, "", "", error="timeout")
        except httpx.HTTPError as exc:
            details.update(error=f"{type(exc).__name__}: {exc}", elapsed_s=_since(started))
            self._timeline.record("webhook.failed", **details)
            return Reply(None, "", "", error=type(exc).__name__)
        details.update(
            status=response.status_code,
            ok=200 <= response.status_code < 300,
            elapsed_s=_since(started),
        )
        self._timeline.record("webhook.sent", **details)
        return Reply(response.status_code, response.text, response.headers.get("content-type", ""))

    def post_status(
        self, url: str, method: str, params: dict[str, str], *, purpose: str, stream: str
    ) -> None:
        """Queue a status callback; it is delivered in the background (see the module doc)."""
        callback = _Callback(url, method, params, purpose, stream, str(uuid.uuid4()))
        if self.config.shuffle_callbacks:
            self._shuffle_buffer.append(callback)
            if self._shuffle_task is None or self._shuffle_task.done():
                self._shuffle_task = self._spawn(self._flush_shuffled(), "sandbox-shuffle")
            return
        self._spawn(self._deliver_in_order(callback), f"sandbox-callback-{purpose}")

    async def _deliver(self, callback: _Callback) -> None:
        copies = 2 if self.config.duplicate_callbacks else 1
        for copy in range(copies):
            await self.request(
                callback.url,
                callback.method,
                callback.params,
                purpose=callback.purpose,
                token=callback.token,
                duplicate=copy > 0,
            )

    async def _deliver_in_order(self, callback: _Callback) -> None:
        lock = self._locks.setdefault(callback.stream, asyncio.Lock())
        async with lock:
            await self._deliver(callback)

    async def _flush_shuffled(self) -> None:
        while self._shuffle_buffer:
            await asyncio.sleep(self.config.shuffle_window_s)
            batch, self._shuffle_buffer = self._shuffle_buffer, []
            random.shuffle(batch)
            self._timeline.record("callbacks.shuffled", count=len(batch))
            for callback in batch:
                await self._deliver(callback)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 4)
