"""The sandbox as an aiohttp application, and as a running server for tests and ``make run``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web

from . import control, rest
from .appkeys import ENGINE
from .config import Behaviour, ConfigUpdate, InboundCall, NumberConfig, PartyConfig, SandboxConfig
from .engine import SandboxEngine
from .timeline import Event, Predicate


def create_sandbox_app(config: SandboxConfig | None = None) -> web.Application:
    """The Twilio REST subset under ``/2010-04-01/`` and the control API under ``/sandbox/``."""
    engine = SandboxEngine(config or SandboxConfig())
    app = web.Application(middlewares=[rest.twilio_api_middleware, control.control_middleware])
    app[ENGINE] = engine
    rest.register(app)
    control.register(app)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await engine.start()
        yield
        await engine.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app


class Sandbox:
    """A running sandbox, as tests see it: its address and credentials, and helpers that act
    as the scripted parties and read what happened."""

    def __init__(self, engine: SandboxEngine, base_url: str) -> None:
        self.engine = engine
        self.base_url = base_url

    @property
    def account_sid(self) -> str:
        return self.engine.config.account_sid

    @property
    def auth_token(self) -> str:
        return self.engine.config.auth_token

    def timeline(self, kind: str | None = None) -> list[Event]:
        """Events in order; ``kind`` filters by kind or kind prefix (``webhook`` matches
        ``webhook.sent`` and ``webhook.failed``)."""
        return self.engine.timeline.events(kind)

    def call(self, sid: str) -> dict[str, Any]:
        return self.engine.call_view(sid)

    def conferences(self) -> list[dict[str, Any]]:
        return [self.engine.conference_view(c) for c in self.engine.conferences.values()]

    def start_call(
        self,
        from_: str,
        to: str | None = None,
        *,
        digits: Iterable[str] = (),
        hangup_after_s: float | None = None,
    ) -> str:
        """A scripted caller dials a sandbox number (the only one configured when ``to`` is
        omitted); returns the CallSid."""
        if to is None:
            numbers = list(self.engine.config.numbers)
            if len(numbers) != 1:
                raise ValueError("name the number to call: the sandbox has " + str(len(numbers)))
            to = numbers[0]
        request = InboundCall.model_validate(
            {"from": from_, "to": to, "digits": list(digits), "hangup_after_s": hangup_after_s}
        )
        return self.engine.start_inbound(request).sid

    def hang_up(self, sid: str) -> None:
        """The scripted party on this call hangs up now."""
        self.engine.end_call(self.engine.get_call(sid), ended_by="party")

    def set_party(
        self,
        number: str,
        behaviour: Behaviour | str = Behaviour.ANSWER,
        *,
        answer_after_s: float = 1.0,
        hangup_after_s: float | None = None,
        digits: Iterable[str] = (),
    ) -> None:
        self.engine.set_party(
            number,
            PartyConfig(
                behaviour=Behaviour(behaviour),
                answer_after_s=answer_after_s,
                hangup_after_s=hangup_after_s,
                digits=list(digits),
            ),
        )

    def set_number(
        self, number: str, voice_url: str, voice_fallback_url: str | None = None
    ) -> None:
        self.engine.set_number(
            number, NumberConfig(voice_url=voice_url, voice_fallback_url=voice_fallback_url)
        )

    def configure(self, **changes: Any) -> None:
        """Change delivery modes at run time (see ``ConfigUpdate``)."""
        self.engine.update_config(ConfigUpdate.model_validate(changes))

    async def wait_for(self, predicate: Predicate, timeout: float = 5.0) -> Event:  # noqa: ASYNC109
        return await self.engine.timeline.wait_for(predicate, timeout)

    async def wait_for_kind(self, kind: str, timeout: float = 5.0, **details: Any) -> Event:  # noqa: ASYNC109
        """The first event of ``kind`` whose details include all of ``details``."""
        return await self.wait_for(
            lambda e: (
                e["kind"] == kind and all(e["details"].get(k) == v for k, v in details.items())
            ),
            timeout,
        )

    async def wait_for_call_end(self, sid: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        await self.wait_for_kind("call.ended", timeout, call_sid=sid)
        return self.call(sid)

    async def reset(self) -> None:
        await self.engine.reset()


@contextlib.asynccontextmanager
async def run_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Sandbox]:
    """Serve the sandbox on ``host:port`` (0: a free port) for the duration of the block."""
    app = create_sandbox_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield Sandbox(app[ENGINE], f"http://{host}:{bound_port}")
    finally:
        await runner.cleanup()
