"""The life of a handback (988 → 911), as data — the same shape as ``gateway.transfer.states``.

A handback's state follows its phone leg: the PSAP's handback line dialed into the caller's
conference (live), or first the 988 center's own call into the bridge line (data-only). The
incident itself goes to the PSAP as an EIDO whatever happens to the phone leg, and contact
confirmation is recorded beside the state, not as one (a PSAP may confirm contact while its
line is still being dialed). The Redis scripts are generated from ``TRANSITIONS`` and
``TERMINAL_STATES`` by ``gateway.core.scripts.source``.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class HandbackState(StrEnum):
    """Where a handback's phone leg stands. Integrators match on the strings."""

    AWAITING_BRIDGE = "awaiting_bridge"
    """Data-only: a bridge code was issued; waiting for the 988 center's phone system to
    conference into the bridge line. The EIDO has gone to the PSAP already."""
    DIALING = "dialing"
    """The PSAP's handback line is being dialed into the conference (or redialed after a busy
    or unanswered attempt). The counselor stays on until a call-taker answers."""
    CONNECTED = "connected"
    """A call-taker answered: the caller (or the center) is with 911."""
    COMPLETED = "completed"
    """The call-taker's leg ended after the connection. Terminal."""
    FAILED = "failed"
    """The handback line never answered after every attempt; the 988 center was told so its
    supervisor acts. Nobody's leg was ended. Terminal."""
    EXPIRED = "expired"
    """Data-only: the bridge code was never used in time (the EIDO still reached the PSAP).
    Terminal."""
    ABANDONED = "abandoned"
    """Data-only: the center's leg left the bridge before a call-taker answered. Terminal."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


class HandbackEvent(StrEnum):
    BRIDGED = "bridged"
    """The center keyed the handback's bridge code in; the handback line is being dialed."""
    RETRY = "retry"
    """An attempt ended busy / unanswered / failed and another one is scheduled."""
    ANSWERED = "answered"
    """A call-taker answered the handback line."""
    EXHAUSTED = "exhausted"
    """An attempt ended without an answer and none is left."""
    LEG_ENDED = "leg_ended"
    """The call-taker's leg ended after it had answered."""
    EXPIRE = "expire"
    """The bridge code's time ran out."""
    CALLER_LEFT = "caller_left"
    """Data-only: the center's bridge-line leg left while the handback line rang."""


S = HandbackState
E = HandbackEvent

TERMINAL_STATES: frozenset[HandbackState] = frozenset(
    {S.COMPLETED, S.FAILED, S.EXPIRED, S.ABANDONED}
)

INITIAL_STATES: frozenset[HandbackState] = frozenset({S.AWAITING_BRIDGE, S.DIALING})

TRANSITIONS: MappingProxyType[HandbackState, MappingProxyType[HandbackEvent, HandbackState]] = (
    MappingProxyType(
        {
            S.AWAITING_BRIDGE: MappingProxyType({E.BRIDGED: S.DIALING, E.EXPIRE: S.EXPIRED}),
            S.DIALING: MappingProxyType(
                {
                    E.RETRY: S.DIALING,
                    E.ANSWERED: S.CONNECTED,
                    E.EXHAUSTED: S.FAILED,
                    E.CALLER_LEFT: S.ABANDONED,
                }
            ),
            S.CONNECTED: MappingProxyType({E.LEG_ENDED: S.COMPLETED}),
        }
    )
)


def apply_event(state: HandbackState, event: HandbackEvent) -> HandbackState:
    """The state ``event`` leads to from ``state``; ``KeyError`` if the table says no."""
    return TRANSITIONS[state][event]
