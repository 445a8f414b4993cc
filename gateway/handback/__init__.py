"""Handbacks 988 → 911: the state machine, the store, the service (DESIGN.md §4)."""

from gateway.handback.models import ContactRequest, Handback, HandbackRequest, HandbackView
from gateway.handback.service import HandbackService, is_handback_id
from gateway.handback.states import HandbackEvent, HandbackState
from gateway.handback.store import HandbackStore

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
