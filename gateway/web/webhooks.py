"""The notices the gateway POSTs to partners, declared for ``/openapi.json`` (``webhooks``).

Each names the model its body is built from — the same model the sending code uses — so the
document cannot drift from the bytes sent. Every one is signed (``gateway.core.signing``) and
sent by ``adapters.signed_http.SignedPoster``; ``examples/receiver.py`` is a receiver.
"""

from __future__ import annotations

from gateway.handback.eido import EidoDocument
from gateway.handback.notices import HandbackContact, HandbackFailed, HandbackUnconfirmed
from gateway.handback.service import NOTICE_RETRY_DELAYS_S
from gateway.transfer.notices import ScreenPop
from gateway.web.routes import Webhook

_CENTER = (
    "The destination's `notify_url` in the routing policy (`destinations.yaml`); the secret is "
    "the value of the environment variable named by its `notify_secret_env`, shared with the "
    "center out of band."
)
_HANDBACK_CENTER = (
    "The `notify_url` of the center's destination involved in the handback (else another "
    "destination of the same org that has one); the secret is the value of the environment "
    "variable named by that destination's `notify_secret_env`."
)
_RETRIES = ", ".join(f"{s:g}" for s in NOTICE_RETRY_DELAYS_S)
_NOTICE_DELIVERY = (
    "A 2xx answer is delivery. Any other answer, or none within `GATEWAY_NOTICE_TIMEOUT_S` "
    f"(default 3 s), is retried after {_RETRIES} s; after the last try the handback is flagged "
    "`center_not_notified` (as it is at once when the center has no `notify_url`)."
)

WEBHOOKS: tuple[Webhook, ...] = (
    Webhook(
        "transfer.incoming",
        "Screen pop: a 911 transfer is ringing the destination",
        "The transfer's context for the counselor's screen, sent when the destination's line "
        "is dialed (once per attempt). Contains the caller's number: personal data.",
        ScreenPop,
        "988 centers",
        _CENTER,
        "`<transfer_id>:<attempt>`",
        "Best effort: one try, never retried, never holding up the call. A 2xx answer is "
        "delivery; the answer's body is ignored. The console should also read "
        "`GET /v1/transfers/{id}`.",
    ),
    Webhook(
        "handback.failed",
        "Handback notice: the handback could not connect",
        "The PSAP's handback line never answered (or the caller's call ended first). The "
        "counselor must reach 911 by another line now.",
        HandbackFailed,
        "988 centers",
        _HANDBACK_CENTER,
        "`<handback_id>:failed`",
        _NOTICE_DELIVERY,
    ),
    Webhook(
        "handback.unconfirmed",
        "Handback notice: the PSAP has not confirmed contact",
        "No `POST /v1/handbacks/{id}/contact` from the PSAP within the confirmation window.",
        HandbackUnconfirmed,
        "988 centers",
        _HANDBACK_CENTER,
        "`<handback_id>:unconfirmed`",
        _NOTICE_DELIVERY,
    ),
    Webhook(
        "handback.contact",
        "Handback notice: the PSAP reported contact (or none)",
        "The PSAP said whether emergency services reached the person.",
        HandbackContact,
        "988 centers",
        _HANDBACK_CENTER,
        "`<handback_id>:contact`",
        _NOTICE_DELIVERY,
    ),
    Webhook(
        "eido",
        "EIDO to the PSAP's CAD",
        "The handback's EIDO (NENA-STA-021), exactly as `GET /v1/handbacks/{id}/eido` serves "
        "it, POSTed once per handback from a durable outbox.",
        EidoDocument,
        "CAD",
        "The PSAP's `cad_url` in the routing policy (`psaps.yaml`); the secret is the value of "
        "the environment variable named by its `cad_secret_env`. A PSAP without `cad_url` gets "
        "nothing: the EIDO is kept for `GET /v1/handbacks/{id}/eido`.",
        "the EIDO's incident id (`eido_id`, the document's `$id`): the same on every retry",
        "A 2xx answer is delivery. 408, 425, 429, 5xx or no answer within "
        "`GATEWAY_CAD_TIMEOUT_S` (default 5 s) is retried with doubling delays "
        "(`GATEWAY_CAD_RETRY_BASE_S`, default 2 s, up to `GATEWAY_CAD_RETRY_MAX_S`, 300 s) for "
        "up to `GATEWAY_CAD_MAX_ATTEMPTS` (50) tries; any other answer ends delivery at once. "
        "Undelivered, the handback is flagged `cad_undelivered`.",
    ),
)
