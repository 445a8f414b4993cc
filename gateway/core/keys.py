"""Every Redis key the gateway uses, and nothing else builds one.

All keys share one hash tag (``PREFIX``), so every script stays atomic even on Redis Cluster.
Ids are opaque (random); no key ever holds a phone number or any other personal data.
"""

from __future__ import annotations

import hashlib

PREFIX = "gw:{gw}:"
"""Every key starts with the one hash tag ``{gw}``: each Lua script touches a record with its
indexes, timers and counters, so on Redis Cluster every key must live in one slot for the
script to stay one atomic call. (A county's call volume fits one shard many times over.)"""


def transfer(transfer_id: str) -> str:
    """Hash: the transfer record (state, version, timestamps, JSON-encoded fields)."""
    return f"{PREFIX}xfer:{transfer_id}"


def transfer_audit(transfer_id: str) -> str:
    """Stream: the transfer's audit trail, one entry per transition."""
    return f"{PREFIX}xfer:{transfer_id}:audit"


def transfer_legs(transfer_id: str) -> str:
    """Hash: attempt number → call id of the leg dialed for it; ``conference`` → conference id.
    Written once per leg, so no version check is needed."""
    return f"{PREFIX}xfer:{transfer_id}:legs"


def dial_lease(record: str, attempt: int) -> str:
    """String (SET PX): the token of the process dialing ``attempt`` of the record whose key is
    ``record`` right now. It lapses when that process dies before the provider answered the
    dial; the durable backup then dials (``gateway.core.legs``)."""
    return f"{record}:dial:{attempt}"


def dial_claims(record: str) -> str:
    """Hash: ``attempt:<n>`` → how many dial leases were ever taken for the attempt of the
    record whose key is ``record`` (more than one: an earlier holder may have reached the
    provider, which is asked before dialing again)."""
    return f"{record}:dials"


def bridge_code(code_digest: str) -> str:
    """String (SET NX EX): a live bridge code's digest → its transfer id. Single use."""
    return f"{PREFIX}bridge:{code_digest}"


def bridge_code_redeemed(code_digest: str) -> str:
    """String (SET EX): ``<call id> <transfer id>`` of a code just redeemed, so the same call
    asking again (a retried request) gets the same answer while any other call is refused."""
    return f"{PREFIX}bridge:{code_digest}:redeemed"


def call_code_tries(call_sid: str) -> str:
    """Counter: wrong bridge codes entered on one inbound call."""
    return f"{PREFIX}call:{call_sid}:tries"


def psap_active(psap_id: str) -> str:
    """Set: ids of the PSAP's transfers that are not terminal."""
    return f"{PREFIX}psap:{psap_id}:active"


def psap_transfers(psap_id: str) -> str:
    """Sorted set: every transfer of the PSAP, scored by creation time (ms)."""
    return f"{PREFIX}psap:{psap_id}:transfers"


# ---- list indexes (DESIGN.md §9): sorted sets of ids scored by creation time (ms), written in
# the same script call as the record; entries older than the retention period are trimmed on
# every create, and a reader drops an entry whose record is gone.

TRANSFERS_ALL = f"{PREFIX}transfers"
"""Sorted set: every transfer, scored by creation time (ms): an admin's list."""


def destination_transfers(destination_id: str) -> str:
    """Sorted set: every transfer whose chain names the destination, scored by creation time."""
    return f"{PREFIX}dest:{destination_id}:transfers"


def org_transfers(org: str) -> str:
    """Sorted set: every transfer whose chain names a destination of the crisis-center ``org``
    (as recorded when the call was decided), scored by creation time (ms)."""
    return f"{PREFIX}org:{org}:transfers"


HANDBACKS_ALL = f"{PREFIX}handbacks"
"""Sorted set: every handback, scored by creation time (ms): an admin's list."""


LISTS_INDEXED = f"{PREFIX}lists:indexed"
"""String: set once the records made before the list indexes existed were entered in them
(``gateway.web.lists.index_existing_ctx``)."""


def org_handbacks(org: str) -> str:
    """Sorted set: every handback made by the crisis-center ``org``, scored by creation time."""
    return f"{PREFIX}org:{org}:handbacks"


def destination_active(destination_id: str) -> str:
    """Set: ids of transfers ringing or connected at the destination (its live load)."""
    return f"{PREFIX}dest:{destination_id}:active"


def handback(handback_id: str) -> str:
    """Hash: the handback record (state, version, timestamps, JSON-encoded fields, the EIDO as
    sent). Expires a retention period after creation, whatever its state."""
    return f"{PREFIX}hb:{handback_id}"


def handback_audit(handback_id: str) -> str:
    """Stream: the handback's audit trail (transitions, contact, flags, CAD delivery)."""
    return f"{PREFIX}hb:{handback_id}:audit"


def handback_legs(handback_id: str) -> str:
    """Hash: ``attempt:<n>`` → call id of the handback line's leg; ``bridge`` → the center's
    bridge-line leg (data-only handbacks). Written once per leg."""
    return f"{PREFIX}hb:{handback_id}:legs"


def handback_event(handback_id: str, identity: str) -> str:
    """String (SET NX EX): a webhook event (or a dial) already acted on for the handback."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{PREFIX}hb:{handback_id}:evt:{digest}"


def psap_handbacks(psap_id: str) -> str:
    """Sorted set: every handback to the PSAP, scored by creation time (ms)."""
    return f"{PREFIX}psap:{psap_id}:handbacks"


def console_session(token_digest: str) -> str:
    """String (SET EX): a signed-in person's console session as JSON (the key's principal, the
    key's digest, a CSRF token), under the SHA-256 digest of the cookie's token — never the
    token, never the key (``gateway.console.sessions``)."""
    return f"{PREFIX}console:session:{token_digest}"


CAD_OUTBOX = f"{PREFIX}cad:outbox"
"""Sorted set: ids of handbacks whose EIDO is still to be delivered to CAD, scored by the time
it was queued (ms). Each has a durable ``cad_delivery`` timer that retries with backoff."""


TIMERS_DUE = f"{PREFIX}timers:due"
"""Sorted set: timer id → due time (ms). A claimed timer's score is pushed to its lease end."""
TIMERS_PAYLOAD = f"{PREFIX}timers:payload"
"""Hash: timer id → JSON payload (kind and arguments)."""
TIMERS_LEASE = f"{PREFIX}timers:lease"
"""Hash: timer id → token of the worker holding its lease."""


def timer_claim(call_id: str) -> str:
    """List (PEXPIRE: one lease): what one claim call took, so the same call retried after its
    reply was lost gets the same timers back."""
    return f"{PREFIX}timers:claim:{call_id}"


# The routing policy (gateway.policy.service). One hash tag, so its commit script is atomic on
# one slot. Documents are immutable once written: a version's content never changes.
POLICY_CURRENT = f"{PREFIX}policy:current"
"""String: the live policy version number (0 or absent: none yet; the config files seed 1)."""
POLICY_DOCS = f"{PREFIX}policy:docs"
"""Hash: version → the policy document (JSON)."""
POLICY_VERSIONS = f"{PREFIX}policy:versions"
"""Hash: version → JSON ``{actor, at, summary, action}`` (who made it, when, what changed)."""
POLICY_AUDIT = f"{PREFIX}policy:audit"
"""Stream: one entry per policy change (seed, put, rollback) with its actor and time (``at``)."""


def stats_day(psap_id: str, day: str) -> str:
    """Hash: the PSAP's program counters for one local day (``YYYY-MM-DD``); fields are
    ``<figure>|<caller type>|<destination id>`` (gateway.reports.counters). Outlives transfer
    records."""
    return f"{PREFIX}stats:{psap_id}:{day}"


def answer_times(psap_id: str, day: str) -> str:
    """Sorted set: ``<caller type>|<destination id>|<transfer id>`` → seconds to answer."""
    return f"{PREFIX}stats:{psap_id}:{day}:answer"


def xfer_handback(transfer_id: str) -> str:
    """String (SET NX, set by the handback create script): the id of the transfer's live
    handback. Deleted when that handback ends (its terminal transition), so a transfer has at
    most one handback dialing the PSAP at a time."""
    return f"{PREFIX}xfer:{transfer_id}:handback"


REVOKED_API_KEYS = f"{PREFIX}keys:revoked"
"""Set: ids of revoked API keys (gateway.core.auth), read by every process each second. Never
trimmed: revocations are few and permanent."""

# ---- live events (gateway.events) -------------------------------------------------------------
EVENTS = f"{PREFIX}events"
"""Stream: every change a console may follow (``GET /v1/events``), appended by the transition
scripts in the same call as the change (``gateway.events.entries``). Trimmed to the last
``gateway.events.entries.KEEP_S`` seconds (``MINID ~``) and a hard cap of entries
(``MAXLEN ~``). Entries name ids, states and orgs only: never personal data."""
