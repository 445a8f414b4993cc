"""Handbacks 988 → 911: the state machine, the store, the service (DESIGN.md §4).

The service is imported on first use: it builds EIDOs (``gateway.handback.eido``), and the EIDO
module needs this package's models, so importing it first must not pull the service in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.handback.models import ContactRequest, Handback, HandbackRequest, HandbackView
from gateway.handback.states import HandbackEvent, HandbackState
from gateway.handback.store import HandbackStore

if TYPE_CHECKING:
    from gateway.handback.service import HandbackService, is_handback_id

_FROM_SERVICE = frozenset({"HandbackService", "is_handback_id"})


def __getattr__(name: str) -> Any:
    if name in _FROM_SERVICE:
        from gateway.handback import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ContactRequest",
    "Handback",
    "HandbackEvent",
    "HandbackRequest",
    "HandbackService",
    "HandbackState",
    "HandbackStore",
    "HandbackView",
    "is_handback_id",
]
