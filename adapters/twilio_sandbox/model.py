"""The sandbox's telephony state: calls, conferences and their participants, and the JSON that
Twilio's REST API returns for each (snake_case fields, RFC 2822 dates, ``uri``)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

API_VERSION = "2010-04-01"
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


@dataclass(eq=False)
class Call:
    sid: str
    account_sid: str
    from_: str
    to: str
    direction: str
    """``inbound`` (a scripted caller), ``outbound-api`` (REST), ``outbound-dial`` (<Dial>)."""
    status: str = "queued"
    ended_by: str | None = None
    end_reason: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    parent_call_sid: str | None = None
    said: list[str] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    """Scripted answers to the Gather verbs still to come."""
    silent: bool = False
    time_scale: float = 1.0
    """The sandbox's time scale when the call began: durations are reported in simulated s."""
    # TwiML context
    voice_url: str | None = None
    voice_method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    twiml: str | None = None
    # call progress callbacks
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset()
    progress_seq: int = 0
    timeout_s: float = 60.0
    # conference membership
    conference_sid: str | None = None
    """The conference this call is in, or (for a Participants API leg) is being added to."""
    left_reason: str | None = None
    """ReasonParticipantLeft of the call's last conference exit."""
    conference_left: asyncio.Event = field(default_factory=asyncio.Event)
    ended_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None
    """What the call is doing now: running TwiML, ringing, waiting in a conference."""
    side_tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_CALL_STATUSES

    def set_status(self, status: str) -> None:
        self.status = status
        self.updated_at = utcnow()

    def duration_s(self) -> int:
        if self.answered_at is None:
            return 0
        end = self.ended_at or utcnow()
        return max(0, round((end - self.answered_at).total_seconds() / self.time_scale))

    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"

    def as_json(self) -> dict[str, Any]:
        base = self.uri()[: -len(".json")]
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.created_at),
            "date_updated": rfc2822(self.updated_at),
            "direction": self.direction,
            "duration": str(self.duration_s()) if self.ended else None,
            "end_time": rfc2822(self.ended_at),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": self.parent_call_sid,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.answered_at),
            "status": self.status,
            "subresource_uris": {
                "notifications": f"{base}/Notifications.json",
                "recordings": f"{base}/Recordings.json",
                "payments": f"{base}/Payments.json",
                "events": f"{base}/Events.json",
                "siprec": f"{base}/Siprec.json",
                "streams": f"{base}/Streams.json",
                "user_defined_message_subscriptions": (
                    f"{base}/UserDefinedMessageSubscriptions.json"
                ),
                "user_defined_messages": f"{base}/UserDefinedMessages.json",
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": self.uri(),
        }


@dataclass(eq=False)
class Participant:
    call_sid: str
    conference_sid: str
    account_sid: str
    label: str | None = None
    status: str = "queued"
    """``queued``, ``connecting``, ``ringing``, ``connected``, ``complete``, ``failed``."""
    muted: bool = False
    hold: bool = False
    coaching: bool = False
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    beep: str = "true"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def touch(self) -> None:
        self.updated_at = utcnow()

    def as_json(self) -> dict[str, Any]:
        return {
            "account_sid": self.account_sid,
            "call_sid": self.call_sid,
            "call_sid_to_coach": None,
            "coaching": self.coaching,
            "conference_sid": self.conference_sid,
            "date_created": rfc2822(self.created_at),
            "date_updated": rfc2822(self.updated_at),
            "end_conference_on_exit": self.end_conference_on_exit,
            "hold": self.hold,
            "label": self.label,
            "muted": self.muted,
            "queue_time": None,
            "start_conference_on_enter": self.start_conference_on_enter,
            "status": self.status,
            "uri": (
                f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{self.conference_sid}"
                f"/Participants/{self.call_sid}.json"
            ),
        }

    def callback_params(self) -> dict[str, str]:
        params = {
            "CallSid": self.call_sid,
            "Muted": _bool(self.muted),
            "Hold": _bool(self.hold),
            "Coaching": _bool(self.coaching),
            "EndConferenceOnExit": _bool(self.end_conference_on_exit),
            "StartConferenceOnEnter": _bool(self.start_conference_on_enter),
        }
        if self.label:
            params["ParticipantLabel"] = self.label
        return params


@dataclass(eq=False)
class Conference:
    sid: str
    account_sid: str
    friendly_name: str
    status: str = "init"
    """``init`` (waiting to start), ``in-progress``, ``completed``."""
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset()
    sequence: int = 0
    participants: dict[str, Participant] = field(default_factory=dict)
    """Participants in the conference (joined)."""
    pending: dict[str, Participant] = field(default_factory=dict)
    """Participants API legs still being dialed: not participants yet."""
    reason_ended: str | None = None
    call_sid_ending: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def live(self) -> bool:
        return self.status != "completed"

    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{self.sid}.json"

    def as_json(self) -> dict[str, Any]:
        base = self.uri()[: -len(".json")]
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid_ending_conference": self.call_sid_ending,
            "date_created": rfc2822(self.created_at),
            "date_updated": rfc2822(self.updated_at),
            "friendly_name": self.friendly_name,
            "reason_conference_ended": self.reason_ended,
            "region": "us1",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "participants": f"{base}/Participants.json",
                "recordings": f"{base}/Recordings.json",
            },
            "uri": self.uri(),
        }


def _bool(value: bool) -> str:
    return "true" if value else "false"
