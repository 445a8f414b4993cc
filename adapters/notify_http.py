"""Signed JSON notices over HTTPS (``gateway.ports.Notifier``): screen pops, center notices."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from gateway.ports import NoticeError
from gateway.signing import HEADER, sign

log = logging.getLogger(__name__)


class HttpNotifier:
    def __init__(self, *, timeout_s: float = 3.0, http: httpx.AsyncClient | None = None) -> None:
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self.timeout_s = timeout_s

    async def send(
        self, url: str, payload: Mapping[str, Any], *, secret: str, idempotency_key: str
    ) -> None:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(secret, body),
            "Idempotency-Key": idempotency_key,
        }
        try:
            response = await self._http.post(
                url, content=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise NoticeError(f"notice not delivered: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise NoticeError(f"notice refused with HTTP {response.status_code}")

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
