"""``make run`` without Twilio credentials: the built-in Twilio sandbox, wired to this gateway.

The sandbox listens on ``GATEWAY_SANDBOX_PORT`` and owns the bridge number; the gateway's Twilio
settings point at it, and it signs its webhooks with its own auth token, as Twilio would.

One ``serve`` process runs it inside the app (``with_sandbox``). ``serve --workers N`` must run it
once, not once per worker: the parent runs it as a process of its own (``sandbox_process``,
which starts ``python -m gateway.cli.devsandbox`` with the config on its standard input).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator

from aiohttp import web
from pydantic import SecretStr

from adapters.twilio_sandbox import SandboxConfig, run_sandbox
from adapters.twilio_sandbox.config import NumberConfig
from gateway.core.logs import configure_logging
from gateway.core.settings import Settings

SANDBOX_BRIDGE_NUMBER = "+12065550199"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0

log = logging.getLogger("gateway")


class SandboxStartError(RuntimeError):
    """The sandbox process did not come up (its port taken, most likely; its log says)."""


def sandbox_wiring(settings: Settings) -> tuple[Settings, SandboxConfig]:
    """Settings that point the gateway at the sandbox, and the sandbox's config for them."""
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
    return wired, config


def with_sandbox(
    settings: Settings,
) -> tuple[Settings, Callable[[web.Application], AsyncIterator[None]]]:
    """Settings that point the gateway at the sandbox, and the cleanup context that runs it."""
    wired, config = sandbox_wiring(settings)

    async def sandbox_ctx(app: web.Application) -> AsyncIterator[None]:
        async with run_sandbox(config, host="127.0.0.1", port=settings.sandbox_port):
            yield

    return wired, sandbox_ctx


@contextlib.contextmanager
def sandbox_process(settings: Settings) -> Iterator[Settings]:
    """Run the sandbox as a child process until the block exits; yields the wired settings."""
    wired, config = sandbox_wiring(settings)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway.cli.devsandbox",
         "--port", str(settings.sandbox_port), "--log-level", settings.log_level],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        # The config (with the sandbox's auth token) goes through a pipe, never to a disk.
        with contextlib.suppress(BrokenPipeError), process.stdin:
            process.stdin.write(config.model_dump_json().encode())  # a dead child: see below
        with process.stdout:  # one line once it listens; nothing after that
            readable, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
            if not readable or not process.stdout.readline():
                raise SandboxStartError(
                    f"the Twilio sandbox did not start on 127.0.0.1:{settings.sandbox_port} "
                    "(GATEWAY_SANDBOX_PORT); see its log above"
                )
        yield wired
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _serve(config: SandboxConfig, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with run_sandbox(config, host="127.0.0.1", port=port) as sandbox:
        print(sandbox.base_url, flush=True)  # the parent's cue: listening
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """The sandbox process ``sandbox_process`` starts: a ``SandboxConfig`` as JSON on standard
    input, logs through the gateway's redacting JSON handler, stopped by SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m gateway.cli.devsandbox")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    config = SandboxConfig.model_validate_json(sys.stdin.buffer.read())
    try:
        asyncio.run(_serve(config, args.port))
    except OSError as exc:
        log.error("twilio sandbox could not start", extra={"port": args.port, "error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
