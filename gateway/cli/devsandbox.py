"""``make run`` without Twilio credentials: the built-in Twilio sandbox, wired to this gateway.

The sandbox listens on ``GATEWAY_SANDBOX_PORT`` and owns the bridge number; the gateway's Twilio
settings point at it, and it signs its webhooks with its own auth token, as Twilio would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from pydantic import SecretStr

from adapters.twilio_sandbox import SandboxConfig, run_sandbox
from adapters.twilio_sandbox.config import NumberConfig
from gateway.core.settings import Settings

SANDBOX_BRIDGE_NUMBER = "+12065550199"


def with_sandbox(
    settings: Settings,
) -> tuple[Settings, Callable[[web.Application], AsyncIterator[None]]]:
    """Settings that point the gateway at the sandbox, and the cleanup context that runs it."""
    bridge = settings.bridge_number or SANDBOX_BRIDGE_NUMBER
    local_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    local = f"http://{local_host}:{settings.port}"
    public = str(settings.public_base_url).rstrip("/")
    config = SandboxConfig(
        numbers={
            bridge: NumberConfig(
                voice_url=settings.public_url("/twilio/voice"),
                voice_fallback_url=settings.public_url("/twilio/fallback"),
            )
        },
        deliver_via={public: local} if public != local else {},
    )
    wired = settings.model_copy(
        update={
            "twilio_account_sid": config.account_sid,
            "twilio_auth_token": SecretStr(config.auth_token),
            "twilio_api_base_url": f"http://127.0.0.1:{settings.sandbox_port}",
            "bridge_number": bridge,
        }
    )

    async def sandbox_ctx(app: web.Application) -> AsyncIterator[None]:
        async with run_sandbox(config, host="127.0.0.1", port=settings.sandbox_port):
            yield

    return wired, sandbox_ctx
