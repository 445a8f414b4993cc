"""The screen pop: the transfer's context, POSTed to a destination's ``notify_url`` while its
line rings (DESIGN.md §3, §9 last paragraph). ``/openapi.json`` documents it under
``webhooks`` from this model, so the document and the bytes sent cannot drift apart."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.phone import E164
from gateway.policy.decision import CallerType, Screening


class ScreenPop(BaseModel):
    """``transfer.incoming``: one per dialed attempt, sent once its leg exists.

    Personal data (``callback_number``): for the counselor's screen only, never to be logged.
    Delivery is best effort — one try, no retry — so the counselor's console must also work
    from ``GET /v1/transfers/{id}`` (the receiver deduplicates on ``Idempotency-Key``,
    ``<transfer_id>:<attempt>``, as two gateway processes may both send it)."""

    model_config = ConfigDict(
        frozen=True,
        use_attribute_docstrings=True,
        json_schema_serialization_defaults_required=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "transfer.incoming",
                    "transfer_id": "tr_3f9c0d7e2b8a4c1e9f0a6b5d",
                    "psap_id": "kc-valleycom",
                    "destination_id": "wa-988-primary",
                    "caller_type": "first_person",
                    "language": "en",
                    "screening": {
                        "weapons": False,
                        "violence": False,
                        "medical_emergency": False,
                        "attempt_in_progress": False,
                        "severe_intoxication": None,
                        "officer_requested": False,
                        "imminent_risk": False,
                        "consent_to_transfer": True,
                    },
                    "callback_number": "+12065550123",
                    "attempt": 1,
                }
            ]
        },
    )

    type: Literal["transfer.incoming"] = "transfer.incoming"
    transfer_id: str
    psap_id: str
    """The PSAP the call came from."""
    destination_id: str
    """The destination being dialed (the receiver's own, from the routing policy)."""
    caller_type: CallerType
    language: str = Field(description="The caller's language, a BCP 47 tag.")
    screening: Screening
    """The 911 call-taker's screening answers (``null``: not asked)."""
    callback_number: E164 | None
    """The caller's number in E.164, when the PSAP gave one."""
    attempt: int = Field(ge=1, description="Which attempt of the transfer rings (1: primary).")
