"""``X-Gateway-Signature: t=<unix>,v1=<hex>`` on every notice the gateway sends (DESIGN.md §6).

``v1`` is HMAC-SHA256, keyed by the receiver's shared secret, over ``"<t>." + raw body``: the
timestamp is inside the MAC, so a captured notice cannot be replayed later with a new time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Gateway-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, body, t)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of now."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, body, t), parts.get("v1", ""))
