"""``python -m adapters.twilio_sandbox``: run the sandbox on its own (default port 8081).

    python -m adapters.twilio_sandbox --port 8081 \
        --number +15550100000=http://127.0.0.1:8080/twilio/voice \
        --fallback +15550100000=http://127.0.0.1:8080/twilio/fallback
    python -m adapters.twilio_sandbox --config sandbox.json   # a SandboxConfig as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path

from .app import run_sandbox
from .config import NumberConfig, SandboxConfig


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        number, sep, url = value.partition("=")
        if not sep or not number or not url:
            raise SystemExit(f"{flag} expects NUMBER=URL, got {value!r}")
        pairs[number] = url
    return pairs


def build_config(args: argparse.Namespace) -> SandboxConfig:
    raw = json.loads(Path(args.config).read_text()) if args.config else {}
    config = SandboxConfig.model_validate(raw)
    fallbacks = _pairs(args.fallback, "--fallback")
    for number, url in _pairs(args.number, "--number").items():
        config.numbers[number] = NumberConfig(
            voice_url=url, voice_fallback_url=fallbacks.get(number)
        )
    if args.account_sid:
        config.account_sid = args.account_sid
    if args.auth_token:
        config.auth_token = args.auth_token
    if args.time_scale:
        config.time_scale = args.time_scale
    return SandboxConfig.model_validate(config.model_dump())


async def serve(config: SandboxConfig, host: str, port: int) -> None:
    async with run_sandbox(config, host=host, port=port) as sandbox:
        print(
            f"twilio sandbox on {sandbox.base_url} account_sid={sandbox.account_sid} "
            f"auth_token={sandbox.auth_token}",
            flush=True,
        )
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.twilio_sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--config", help="a SandboxConfig as a JSON file")
    parser.add_argument("--number", action="append", default=[], help="NUMBER=VOICE_URL")
    parser.add_argument("--fallback", action="append", default=[], help="NUMBER=FALLBACK_URL")
    parser.add_argument("--account-sid")
    parser.add_argument("--auth-token")
    parser.add_argument("--time-scale", type=float)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(build_config(args), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
