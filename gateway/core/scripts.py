"""The Lua scripts' text, for any state machine.

Each script is ``lib.lua`` + a header generated from a state machine's transition table + its
own file, so a table exists once, in Python, and Redis enforces exactly that table. Each store
registers the scripts it uses with its own table (``gateway.transfer.store``,
``gateway.handback.store``); the timers' scripts need none (``gateway.core.timers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any


def _lua_string(value: str) -> str:
    if not value.replace("_", "").isalnum():
        raise ValueError(f"not a plain identifier: {value!r}")
    return f"'{value}'"


Table = Mapping[Any, Mapping[Any, str]]
"""state → event → next state; states and events are str enums (or plain strings)."""


def table_header(transitions: Table, terminal: Iterable[str]) -> str:
    """Lua definitions of ``TRANSITIONS`` and ``TERMINAL`` generated from a Python table."""
    rows = []
    for state, events in transitions.items():
        cells = ", ".join(f"[{_lua_string(e)}] = {_lua_string(s)}" for e, s in events.items())
        rows.append(f"  [{_lua_string(state)}] = {{{cells}}},")
    ends = ", ".join(f"[{_lua_string(s)}] = true" for s in sorted(terminal))
    return "local TRANSITIONS = {\n" + "\n".join(rows) + "\n}\n" + f"local TERMINAL = {{{ends}}}\n"


def source(name: str, transitions: Table | None = None, terminal: Iterable[str] = ()) -> str:
    """A script's full text, for the state machine given by ``transitions`` and ``terminal``
    (the create and transition scripts serve any machine; others need none)."""
    files = resources.files("gateway.core") / "lua"
    lib = (files / "lib.lua").read_text()
    header = table_header(transitions or {}, terminal)
    return lib + "\n" + header + "\n" + (files / f"{name}.lua").read_text()
