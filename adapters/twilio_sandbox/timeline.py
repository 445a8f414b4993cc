"""The sandbox's record of everything that happened, in order, with a monotonic clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class Timeline:
    """An append-only list of events ``{"seq", "t", "kind", "details"}``; ``t`` is seconds since
    the sandbox started (monotonic). ``wait_for`` lets a test block until an event appears."""

    def __init__(self, max_events: int = 100_000) -> None:
        self._start = time.monotonic()
        self._events: list[Event] = []
        self._seq = 0
        self._max = max_events
        self._changed = asyncio.Event()

    def now(self) -> float:
        return round(time.monotonic() - self._start, 4)

    def record(self, kind: str, **details: Any) -> Event:
        self._seq += 1
        event: Event = {"seq": self._seq, "t": self.now(), "kind": kind, "details": details}
        self._events.append(event)
        if len(self._events) > self._max:
            del self._events[: len(self._events) - self._max]
        self._changed.set()
        self._changed = asyncio.Event()
        return event

    def events(self, kind: str | None = None) -> list[Event]:
        if kind is None:
            return list(self._events)
        return [e for e in self._events if e["kind"] == kind or e["kind"].startswith(kind + ".")]

    def clear(self) -> None:
        self._events.clear()

    async def wait_for(self, predicate: Predicate, timeout: float = 5.0) -> Event:  # noqa: ASYNC109
        """The first event (already recorded or yet to come) that satisfies ``predicate``."""
        last_seq = 0
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                for event in self._events:
                    if event["seq"] > last_seq and predicate(event):
                        return event
                last_seq = self._seq
                await changed.wait()
