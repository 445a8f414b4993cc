"""The outside systems the gateway talks to, as the gateway needs them.

Adapters in ``adapters/`` implement these; only the app factory picks one. Each raises
``TelephonyError`` / ``NoticeError`` / ``CadError`` for any failure of the outside system, so the
gateway can treat a failed dial as a failed attempt, never as a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class TelephonyError(Exception):
    """The telephony provider refused or did not answer. ``status`` is its HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Leg:
    """A call leg as the provider reports it: its call id and Twilio's call status (``queued``,
    ``initiated``, ``ringing``, ``in-progress``, ``completed``, ``busy``, ``no-answer``,
    ``failed``, ``canceled``)."""

    call_sid: str
    status: str

    @property
    def answered(self) -> bool:
        """Talking now: Twilio's ``in-progress``."""
        return self.status in ("in-progress", "answered")

    @property
    def ringing(self) -> bool:
        return self.status in ("queued", "initiated", "ringing")


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
        conference_status_callback: str | None = None,
    ) -> str:
        """Dial ``to`` into ``conference``; the new leg's call id. One request, never retried.

        ``conference_status_callback`` receives the conference's events should this leg be the
        one that starts the conference (Twilio lets the first participant fix it)."""
        ...

    async def cancel_call(self, call_sid: str) -> None:
        """End a leg the gateway dialed: cancel it while it rings, hang it up once answered."""
        ...

    async def cancel_ringing(self, call_sid: str) -> bool:
        """Cancel a leg the gateway dialed only while it is still queued or ringing; a leg
        that was answered is left alone. False when the provider reports it in progress
        (answered), True otherwise (cancelled now, or already over)."""
        ...

    async def conference_live(self, conference: str) -> bool:
        """Whether a conference of that name is in progress."""
        ...

    async def call(self, call_sid: str) -> Leg:
        """The leg's status now, from the provider (its word beats any timer of ours)."""
        ...

    async def find_participant(self, conference: str, label: str) -> Leg | None:
        """The leg dialed into the live conference ``conference`` (a name) under ``label``, with
        its call status; None when the conference is not live or has no such participant (a
        dial whose request never reached the provider)."""
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


class CadError(Exception):
    """CAD did not take the EIDO (unreachable, timed out, refused). ``retryable`` is false for
    an answer that a retry cannot change (4xx other than 408/429)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class CadSink(Protocol):
    """A PSAP's CAD system, which takes incidents as EIDO documents (NENA-STA-021)."""

    async def deliver(
        self, url: str, eido: Mapping[str, Any], *, secret: str, idempotency_key: str
    ) -> None:
        """POST ``eido`` to ``url``, signed with ``secret``. The same ``idempotency_key`` on
        every retry of one document, so a retry never opens a second incident."""
        ...

    async def aclose(self) -> None: ...
