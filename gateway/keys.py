"""Every Redis key the gateway uses, and nothing else builds one.

All keys of one transfer share the hash tag ``{<transfer id>}`` so its scripts stay atomic on one
slot. Ids are opaque (random); no key ever holds a phone number or any other personal data.
"""

from __future__ import annotations

import hashlib

PREFIX = "gw:"


def transfer(transfer_id: str) -> str:
    """Hash: the transfer record (state, version, timestamps, JSON-encoded fields)."""
    return f"{PREFIX}xfer:{{{transfer_id}}}"


def transfer_audit(transfer_id: str) -> str:
    """Stream: the transfer's audit trail, one entry per transition."""
    return f"{PREFIX}xfer:{{{transfer_id}}}:audit"


def event_claim(transfer_id: str, identity: str) -> str:
    """String (SET NX EX): a webhook event already applied to the transfer. ``identity`` is the
    event's own identity (CallSid + status, ConferenceSid + SequenceNumber), digested."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{PREFIX}xfer:{{{transfer_id}}}:evt:{digest}"


def psap_active(psap_id: str) -> str:
    """Set: ids of the PSAP's transfers that are not terminal."""
    return f"{PREFIX}psap:{{{psap_id}}}:active"


def psap_transfers(psap_id: str) -> str:
    """Sorted set: every transfer of the PSAP, scored by creation time (ms)."""
    return f"{PREFIX}psap:{{{psap_id}}}:transfers"


def destination_active(destination_id: str) -> str:
    """Set: ids of transfers ringing or connected at the destination (its live load)."""
    return f"{PREFIX}dest:{{{destination_id}}}:active"


TIMERS_DUE = f"{PREFIX}timers:{{t}}:due"
"""Sorted set: timer id → due time (ms). A claimed timer's score is pushed to its lease end."""
TIMERS_PAYLOAD = f"{PREFIX}timers:{{t}}:payload"
"""Hash: timer id → JSON payload (kind and arguments)."""
TIMERS_LEASE = f"{PREFIX}timers:{{t}}:lease"
"""Hash: timer id → token of the worker holding its lease."""
