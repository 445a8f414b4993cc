"""A signed JSON POST over httpx: what every partner-facing adapter sends (DESIGN.md §6).

One request per call — never retried here: each caller owns its retry policy (the CAD outbox,
a notice's timer) — with an explicit timeout, ``X-Gateway-Signature`` over the exact bytes
sent, and an ``Idempotency-Key`` the receiver can deduplicate on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from gateway.core.signing import HEADER, sign


class SignedPoster:
    """Owns (or borrows) an ``httpx.AsyncClient`` and posts signed JSON with it."""

    def __init__(self, *, timeout_s: float, http: httpx.AsyncClient | None = None) -> None:
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self.timeout_s = timeout_s

    async def post(
        self, url: str, payload: Mapping[str, Any], *, secret: str, idempotency_key: str
    ) -> httpx.Response:
        """The receiver's answer; ``httpx.HTTPError`` when there was none."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        raw = body.encode()
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(secret, raw),
            "Idempotency-Key": idempotency_key,
        }
        return await self._http.post(url, content=raw, headers=headers, timeout=self.timeout_s)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
