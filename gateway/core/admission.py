"""Slots for work in one process: at most ``limit`` at once, the rest wait (``web/admission``)."""

from __future__ import annotations

import asyncio


class Admission:
    """``limit`` slots; ``wait_s``: the longest a request waits for one."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)

    @property
    def busy(self) -> bool:
        """Every slot taken, or someone already waiting for one."""
        return self._slots.locked() or self.waiting > 0

    async def acquire(self) -> bool:
        """A slot within ``wait_s`` (True), or none (False)."""
        if not self.busy:
            await self._slots.acquire()
            return True
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await self._slots.acquire()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._slots.release()
