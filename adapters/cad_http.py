"""EIDO documents to a PSAP's CAD over HTTPS (``gateway.ports.CadSink``).

One signed JSON POST per try (``X-Gateway-Signature``, DESIGN.md §6), with an explicit timeout
and an ``Idempotency-Key`` that stays the same across retries of one document, so a CAD that
took a document whose answer was lost does not open a second incident when it comes again.
Retrying is the caller's business (the gateway's durable outbox); this adapter never retries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from gateway.ports import CadError
from gateway.signing import HEADER, sign

CONTENT_TYPE = "application/json"


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


class HttpCadSink:
    def __init__(self, *, timeout_s: float = 5.0, http: httpx.AsyncClient | None = None) -> None:
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self.timeout_s = timeout_s

    async def deliver(
        self, url: str, eido: Mapping[str, Any], *, secret: str, idempotency_key: str
    ) -> None:
        body = json.dumps(eido, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": CONTENT_TYPE,
            HEADER: sign(secret, body),
            "Idempotency-Key": idempotency_key,
        }
        try:
            response = await self._http.post(
                url, content=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise CadError(f"CAD unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise CadError(
                f"CAD refused the EIDO with HTTP {response.status_code}",
                retryable=_retryable(response.status_code),
            )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
