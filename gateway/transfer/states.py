"""The life of a transfer, as data.

A transfer moves only along ``TRANSITIONS``. ``apply_event`` is the pure function that reads the
table; the Redis transition script is generated from the same table (see ``gateway.core.scripts``),
so
the process and the store cannot disagree about what is allowed.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class TransferState(StrEnum):
    """Where a transfer stands. DESIGN.md §3 names these; integrators match on the strings."""

    NOT_TRANSFERRED = "not_transferred"
    """The policy kept the call with 911; nothing was dialed. Terminal."""
    AWAITING_BRIDGE = "awaiting_bridge"
    """A bridge code was issued; waiting for the call-taker to conference the caller in."""
    RINGING = "ringing"
    """The caller is in the conference and a destination is being dialed."""
    CONNECTED = "connected"
    """A counselor answered: caller, call-taker and counselor share the conference."""
    COMPLETED = "completed"
    """The conference ended after a connection. Terminal."""
    FAILED = "failed"
    """Every destination in the chain was tried and none answered; the call stays with 911.
    Terminal."""
    ABANDONED = "abandoned"
    """The caller side left while a destination rang. Terminal."""
    CANCELLED = "cancelled"
    """The call-taker cancelled before a counselor answered. Terminal."""
    EXPIRED = "expired"
    """The bridge code was never used in time. Terminal."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


class TransferEvent(StrEnum):
    """What can happen to a transfer. Each maps to at most one next state per state."""

    BRIDGED = "bridged"
    """The bridge code was accepted and the first destination is being dialed."""
    NEXT_DESTINATION = "next_destination"
    """The ringing destination did not answer (busy, no answer, failed, ring timer); the next
    one in the chain is being dialed."""
    ANSWERED = "answered"
    """The ringing destination answered."""
    EXHAUSTED = "exhausted"
    """The ringing destination did not answer and no destination is left."""
    CALLER_LEFT = "caller_left"
    """The PSAP/caller leg left the conference while a destination rang."""
    CONFERENCE_ENDED = "conference_ended"
    """The conference ended after a connection."""
    RELEASED = "released"
    """The call-taker released from the conference; the caller stays with the counselor."""
    CANCEL = "cancel"
    """The call-taker cancelled the transfer."""
    EXPIRE = "expire"
    """The bridge code's time ran out."""
    NEW_CODE = "new_code"
    """The call-taker asked for a new bridge code; the old one stopped working (DESIGN.md §9)."""


S = TransferState
E = TransferEvent

TERMINAL_STATES: frozenset[TransferState] = frozenset(
    {S.NOT_TRANSFERRED, S.COMPLETED, S.FAILED, S.ABANDONED, S.CANCELLED, S.EXPIRED}
)

INITIAL_STATES: frozenset[TransferState] = frozenset({S.NOT_TRANSFERRED, S.AWAITING_BRIDGE})

TRANSITIONS: MappingProxyType[TransferState, MappingProxyType[TransferEvent, TransferState]] = (
    MappingProxyType(
        {
            S.AWAITING_BRIDGE: MappingProxyType(
                {
                    E.BRIDGED: S.RINGING,
                    E.CANCEL: S.CANCELLED,
                    E.EXPIRE: S.EXPIRED,
                    E.NEW_CODE: S.AWAITING_BRIDGE,
                }
            ),
            S.RINGING: MappingProxyType(
                {
                    E.NEXT_DESTINATION: S.RINGING,
                    E.ANSWERED: S.CONNECTED,
                    E.EXHAUSTED: S.FAILED,
                    E.CALLER_LEFT: S.ABANDONED,
                    E.CANCEL: S.CANCELLED,
                }
            ),
            S.CONNECTED: MappingProxyType(
                {E.RELEASED: S.CONNECTED, E.CONFERENCE_ENDED: S.COMPLETED}
            ),
        }
    )
)


class IllegalTransition(Exception):
    """``event`` is not allowed in ``state``."""

    def __init__(self, state: TransferState, event: TransferEvent) -> None:
        super().__init__(f"{event} is not allowed in state {state}")
        self.state = state
        self.event = event


def apply_event(state: TransferState, event: TransferEvent) -> TransferState:
    """The state ``event`` leads to from ``state``; ``IllegalTransition`` if the table says no."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(state, event) from None


def allowed_events(state: TransferState) -> frozenset[TransferEvent]:
    return frozenset(TRANSITIONS.get(state, {}))
