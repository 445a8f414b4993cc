"""Browser-test helpers: Debian's Chromium driven by Playwright, axe-core, screenshots.

Playwright's own browser download is not used: the tests launch the system's Chromium by path
(``/usr/bin/chromium``, or ``GATEWAY_TEST_CHROMIUM``). Without it they are skipped with how to get
it (``apt-get install -y chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SCREENSHOTS = Path(
    os.environ.get("GATEWAY_TEST_SCREENSHOTS")
    or Path(os.environ.get("TMPDIR", "/tmp")) / "gateway-console-screenshots"
)
"""Where the browser tests save what each console looks like: a scratch folder, or the README's
``docs/screenshots`` with ``make screenshots`` (so a test run leaves the checkout as it was)."""
VIEWPORT = {"width": 1280, "height": 720}


def chromium_path() -> str | None:
    named = os.environ.get("GATEWAY_TEST_CHROMIUM")
    for candidate in (named, "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def need_chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium: install Debian's (`apt-get install -y chromium`) or set "
            "GATEWAY_TEST_CHROMIUM to a Chromium binary; .ci/run installs it"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    return path


@pytest.fixture(autouse=True)
def chromium() -> str:
    """Imported into a module of browser tests: each one skips without Chromium or Playwright."""
    return need_chromium()


@asynccontextmanager
async def browser_page(**context: Any) -> AsyncIterator[Any]:
    """A fresh Chromium page at 1280x720 (one browser, one context)."""
    from playwright.async_api import async_playwright

    executable = need_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            # bypass_csp: axe-core is injected as an inline script the console CSP forbids.
            ctx = await browser.new_context(viewport=VIEWPORT, bypass_csp=True, **context)
            page = await ctx.new_page()
            yield page
            await ctx.close()
        finally:
            await browser.close()


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it stands (WCAG 2.1 AA)."""
    await page.add_script_tag(content=AXE.read_text())
    result: dict[str, Any] = await page.evaluate(
        """async () => await axe.run(document, {
              runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def no_horizontal_scroll(page: Any) -> bool:
    width: bool = await page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return width


async def screenshot(page: Any, name: str) -> None:
    await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


class BlipProxy:
    """A TCP relay between the browser and the gateway whose connections can be cut: ``down()``
    drops every open connection and refuses new ones, ``up()`` accepts again (a network blip)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._relay(reader, up_writer), self._relay(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}

    @staticmethod
    async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
