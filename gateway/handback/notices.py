"""The notices a 988 center gets about its handbacks, POSTed to its destination's
``notify_url`` (DESIGN.md §4, §9 last paragraph). ``/openapi.json`` documents each under
``webhooks`` from these models, so the document and the bytes sent cannot drift apart.

Every notice names the handback (``handback_id``, ``eido_id``, ``transfer_id`` or ``null``,
``psap_id``), its ``state`` then, and what happened. Each kind is sent at most once per handback
(retried with backoff while the center answers non-2xx or not at all; the receiver deduplicates
on ``Idempotency-Key``, ``<handback_id>:<kind>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

from gateway.handback.models import AttemptOutcome
from gateway.handback.states import HandbackState

FAILED_MESSAGE = (
    "The PSAP's handback line did not answer. Nobody was disconnected: the counselor is still "
    "with the caller. Reach 911 by another line now; the incident data was sent to the PSAP."
)
CALL_ENDED_MESSAGE = (
    "The caller's call through the gateway ended before a call-taker answered the PSAP's "
    "handback line, so the handback could not connect (a line still ringing was cancelled). "
    "Reach 911 by another line now; the incident data was sent to the PSAP."
)
UNCONFIRMED_MESSAGE = (
    "No confirmation from the PSAP that emergency services reached the person. "
    "Follow up with the PSAP."
)

IsoInstant = Annotated[
    datetime, PlainSerializer(lambda at: at.isoformat(), return_type=str, when_used="json")
]
"""An aware instant, sent as Python's ISO 8601 form (``2026-03-08T03:15:00+00:00``)."""

_EXAMPLE_IDS: dict[str, Any] = {
    "handback_id": "hb_7a1e4c9b0d2f8e3a6c5b1d0e",
    "transfer_id": "tr_3f9c0d7e2b8a4c1e9f0a6b5d",
    "psap_id": "kc-valleycom",
    "eido_id": "urn:emergency:uid:incidentid:hb_7a1e4c9b0d2f8e3a6c5b1d0e:gateway.example.org",
}


class HandbackNotice(BaseModel):
    """What every handback notice carries."""

    model_config = ConfigDict(
        frozen=True,
        use_attribute_docstrings=True,
        json_schema_serialization_defaults_required=True,
    )

    type: str
    handback_id: str
    transfer_id: str | None
    """The transfer the call came through; ``null`` for a handback made without one."""
    psap_id: str
    eido_id: str
    """The EIDO's incident id, as sent to the PSAP's CAD."""
    state: HandbackState
    """The handback's state when the notice was made."""

    def body(self) -> dict[str, Any]:
        """The JSON object sent (its bytes: ``json.dumps`` of it, compact, UTF-8)."""
        return self.model_dump(mode="json")


class HandbackFailed(HandbackNotice):
    """``handback.failed``: the handback could not connect. The center must reach 911 by
    another line now (nobody was disconnected)."""

    model_config = ConfigDict(json_schema_extra=lambda schema: _failed_schema(schema))

    type: Literal["handback.failed"] = "handback.failed"
    attempts: list[AttemptOutcome | None]
    """The outcome of each dial of the PSAP's handback line, in order."""
    failure: Literal["call_ended"] | None = None
    """``call_ended``: the caller's call was over before a call-taker answered (absent when
    the line itself never answered)."""
    message: str
    """What the counselor should do, in one readable paragraph."""

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"failure"} if self.failure is None else None)


def _failed_schema(schema: dict[str, Any]) -> None:
    """``failure`` is sent only when there is one; the examples."""
    schema["required"] = [name for name in schema.get("required", []) if name != "failure"]
    schema["examples"] = [
        {
            "type": "handback.failed",
            **_EXAMPLE_IDS,
            "state": "failed",
            "attempts": ["no_answer", "busy", "no_answer"],
            "message": FAILED_MESSAGE,
        },
        {
            "type": "handback.failed",
            **_EXAMPLE_IDS,
            "state": "failed",
            "attempts": [],
            "failure": "call_ended",
            "message": CALL_ENDED_MESSAGE,
        },
    ]


class HandbackUnconfirmed(HandbackNotice):
    """``handback.unconfirmed``: the PSAP did not confirm contact with the person within
    ``confirm_within_s`` of the handback. The center should follow up with the PSAP."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "handback.unconfirmed",
                    **_EXAMPLE_IDS,
                    "state": "completed",
                    "confirm_within_s": 1800,
                    "message": UNCONFIRMED_MESSAGE,
                }
            ]
        }
    )

    type: Literal["handback.unconfirmed"] = "handback.unconfirmed"
    confirm_within_s: int
    """The confirmation window, seconds (setting ``GATEWAY_HANDBACK_CONFIRM_TIMEOUT_S``)."""
    message: str = UNCONFIRMED_MESSAGE


class HandbackContact(HandbackNotice):
    """``handback.contact``: the PSAP reported whether emergency services reached the person
    (``POST /v1/handbacks/{id}/contact``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "handback.contact",
                    **_EXAMPLE_IDS,
                    "state": "completed",
                    "contact_made": True,
                    "at": "2026-03-08T03:41:00+00:00",
                    "note": None,
                }
            ]
        }
    )

    type: Literal["handback.contact"] = "handback.contact"
    contact_made: bool
    """``true``: emergency services reached the person; ``false``: they could not."""
    at: IsoInstant
    """When contact was made (or given up on), ISO 8601 with its UTC offset."""
    note: str | None
    """The PSAP's note (free text, personal data: never to be logged)."""
