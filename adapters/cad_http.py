"""EIDO documents to a PSAP's CAD over HTTPS (``gateway.core.ports.CadSink``).

One signed JSON POST per try (``X-Gateway-Signature``, DESIGN.md §6), with an explicit timeout
and an ``Idempotency-Key`` that stays the same across retries of one document, so a CAD that
took a document whose answer was lost does not open a second incident when it comes again.
Retrying is the caller's business (the gateway's durable outbox); this adapter never retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from adapters.signed_http import SignedPoster
from gateway.core.ports import CadError


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


class HttpCadSink(SignedPoster):
    def __init__(self, *, timeout_s: float = 5.0, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(timeout_s=timeout_s, http=http)

    async def deliver(
        self, url: str, eido: Mapping[str, Any], *, secret: str, idempotency_key: str
    ) -> None:
        try:
            response = await self.post(url, eido, secret=secret, idempotency_key=idempotency_key)
        except httpx.HTTPError as exc:
            raise CadError(f"CAD unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise CadError(
                f"CAD refused the EIDO with HTTP {response.status_code}",
                retryable=_retryable(response.status_code),
            )
