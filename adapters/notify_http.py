"""Signed JSON notices over HTTPS (``gateway.core.ports.Notifier``): screen pops, center notices."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from adapters.signed_http import SignedPoster
from gateway.core.ports import NoticeError

log = logging.getLogger(__name__)


class HttpNotifier(SignedPoster):
    def __init__(self, *, timeout_s: float = 3.0, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(timeout_s=timeout_s, http=http)

    async def send(
        self, url: str, payload: Mapping[str, Any], *, secret: str, idempotency_key: str
    ) -> None:
        try:
            response = await self.post(url, payload, secret=secret, idempotency_key=idempotency_key)
        except httpx.HTTPError as exc:
            raise NoticeError(f"notice not delivered: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise NoticeError(f"notice refused with HTTP {response.status_code}")
