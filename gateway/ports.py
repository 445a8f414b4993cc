"""The outside systems the gateway talks to, as the gateway needs them.

Adapters in ``adapters/`` implement these; only the app factory picks one. Each raises
``TelephonyError`` / ``NoticeError`` for any failure of the outside system, so the gateway can
treat a failed dial as a failed attempt, never as a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class TelephonyError(Exception):
    """The telephony provider refused or did not answer. ``status`` is its HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Telephony(Protocol):
    """Conference legs on the bridge line (Twilio's REST API)."""

    async def add_participant(
        self,
        conference: str,
        *,
        to: str,
        from_: str,
        timeout_s: int,
        status_callback: str,
        label: str,
    ) -> str:
        """Dial ``to`` into ``conference``; the new leg's call id. One request, never retried."""
        ...

    async def cancel_call(self, call_sid: str) -> None:
        """End a leg the gateway dialed: cancel it while it rings, hang it up once answered."""
        ...

    async def announce(self, conference: str, url: str) -> None:
        """Play the TwiML at ``url`` to everyone in ``conference`` (a name or an id)."""
        ...

    async def aclose(self) -> None: ...


class NoticeError(Exception):
    """A signed notice could not be delivered."""


class Notifier(Protocol):
    """Signed JSON notices to partners (988 centers' screen pops, CAD)."""

    async def send(
        self, url: str, payload: Mapping[str, Any], *, secret: str, idempotency_key: str
    ) -> None: ...

    async def aclose(self) -> None: ...
