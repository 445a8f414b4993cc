"""The Lua scripts, loaded once per Redis client.

Each script is ``lib.lua`` + a header generated from ``gateway.states`` + its own file, so the
transition table exists once, in Python, and Redis enforces exactly that table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway.states import TERMINAL_STATES, TRANSITIONS


def _lua_string(value: str) -> str:
    if not value.replace("_", "").isalnum():
        raise ValueError(f"not a plain identifier: {value!r}")
    return f"'{value}'"


Table = Mapping[Any, Mapping[Any, str]]
"""state → event → next state; states and events are str enums (or plain strings)."""


def table_header(
    transitions: Table = TRANSITIONS, terminal: Iterable[str] = TERMINAL_STATES
) -> str:
    """Lua definitions of ``TRANSITIONS`` and ``TERMINAL`` generated from a Python table."""
    rows = []
    for state, events in transitions.items():
        cells = ", ".join(f"[{_lua_string(e)}] = {_lua_string(s)}" for e, s in events.items())
        rows.append(f"  [{_lua_string(state)}] = {{{cells}}},")
    ends = ", ".join(f"[{_lua_string(s)}] = true" for s in sorted(terminal))
    return "local TRANSITIONS = {\n" + "\n".join(rows) + "\n}\n" + f"local TERMINAL = {{{ends}}}\n"


def source(
    name: str, transitions: Table = TRANSITIONS, terminal: Iterable[str] = TERMINAL_STATES
) -> str:
    """A script's full text, for the state machine given by ``transitions`` and ``terminal``
    (the transfer's by default; the create and transition scripts serve any machine)."""
    files = resources.files("gateway") / "lua"
    lib = (files / "lib.lua").read_text()
    header = table_header(transitions, terminal)
    return lib + "\n" + header + "\n" + (files / f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Scripts:
    """The transfer store's and the timers' scripts. Every one is safe to repeat: a call that
    redis-py retries on a fresh connection (its reply lost) changes nothing twice — the writes
    carry a token the script recognises (``gateway.store``)."""

    create: AsyncScript
    transition: AsyncScript
    timer_claim: AsyncScript
    timer_ack: AsyncScript
    claim: AsyncScript
    release: AsyncScript
    dial_claim: AsyncScript
    redeem_code: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(
            create=redis.register_script(source("create")),
            transition=redis.register_script(source("transition")),
            timer_claim=redis.register_script(source("timer_claim")),
            timer_ack=redis.register_script(source("timer_ack")),
            claim=redis.register_script(source("claim")),
            release=redis.register_script(source("release")),
            dial_claim=redis.register_script(source("dial_claim")),
            redeem_code=redis.register_script(source("redeem_code")),
        )
