"""``python -m gateway``: serve, and the administrator's commands."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.cli.common import install_uvloop, load_settings, redis_for, running_redis_url
from gateway.core.logs import RequestIdAccessLogger, configure_logging
from gateway.core.settings import Settings

log = logging.getLogger("gateway")

LISTEN_BACKLOG = 2048
"""Connections the kernel queues before the process accepts them (gunicorn's default too).
aiohttp's own default, 128, overflows in a burst of new Twilio connections: the excess SYNs are
dropped and retried a second or more later — a refusal meant to be immediate arrives late."""


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level)
    workers = args.workers or settings.workers
    if workers > 1:
        return serve_workers(settings, workers)
    from gateway.web import serving_app

    with redis_for(settings) as ready:
        sandbox_ctx = None
        if ready.sandbox_enabled:
            from gateway.cli.devsandbox import with_sandbox

            ready, sandbox_ctx = with_sandbox(ready)
        app = serving_app(ready)
        if sandbox_ctx is not None:
            app.cleanup_ctx.append(sandbox_ctx)
            log.info(
                "twilio sandbox running",
                extra={"api": str(ready.twilio_api_base_url), "bridge_line": "sandbox"},
            )
        log.info("gateway listening", extra={"host": ready.host, "port": ready.port})
        install_uvloop()
        web.run_app(
            app,
            host=ready.host,
            port=ready.port,
            print=None,
            access_log_class=RequestIdAccessLogger,
            backlog=LISTEN_BACKLOG,
        )
    return 0


def serve_workers(settings: Settings, workers: int) -> int:
    """``serve --workers N``: what a deployment starts once (the embedded Redis, the sandbox) is
    started here, in the parent, before gunicorn forks the workers, and stopped after them."""
    from gateway.cli.devsandbox import SandboxStartError, sandbox_process
    from gateway.cli.workers import run

    with contextlib.ExitStack() as started:
        ready = started.enter_context(redis_for(settings))
        if ready.sandbox_enabled:
            try:
                ready = started.enter_context(sandbox_process(ready))
            except SandboxStartError as exc:
                print(f"serve: {exc}", file=sys.stderr)
                return 1
            log.info(
                "twilio sandbox running",
                extra={"api": str(ready.twilio_api_base_url), "bridge_line": "sandbox"},
            )
        log.info(
            "gateway listening", extra={"host": ready.host, "port": ready.port, "workers": workers}
        )
        return run(ready, workers)


def worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number of processes, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"must be 1 or more (one per core is typical), got {count}"
        )
    return count


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    import os

    import httpx

    from gateway.cli.demo import DemoError, demo_key, run_demo

    settings = load_settings()
    key = args.key or os.environ.get("GATEWAY_DEMO_KEY", "")
    if not key:
        key = demo_key(Path(args.config_dir) if args.config_dir else settings.config_dir, args.psap)
        print(f"(created a psap key for {args.psap}, named 'demo', in the config directory)")
    gateway_url = args.gateway_url or f"http://127.0.0.1:{settings.port}"
    sandbox_url = args.sandbox_url or f"http://127.0.0.1:{settings.sandbox_port}"
    try:
        final = asyncio.run(
            run_demo(gateway_url, sandbox_url, key, args.psap, hold_s=args.hold, out=sys.stdout)
        )
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except (OSError, httpx.HTTPError) as exc:
        print(f"demo failed: is the gateway running (make run)? {exc}", file=sys.stderr)
        return 1
    return 0 if final["state"] == "completed" else 1


def cmd_report(args: argparse.Namespace) -> int:
    import asyncio

    from redis.exceptions import RedisError

    from gateway.cli.report import render
    from gateway.core.errors import GatewayError
    from gateway.core.redis_client import connect
    from gateway.policy.service import PolicyService
    from gateway.reports.figures import build_summary
    from gateway.transfer.store import TransferStore

    settings = load_settings()
    url = running_redis_url(settings)

    async def summary() -> dict[str, object]:
        redis = connect(url, socket_timeout_s=settings.redis_socket_timeout_s)
        try:
            store = TransferStore(redis)
            loaded = await PolicyService(
                redis, settings.config_dir, store.destination_load
            ).current()
            return await build_summary(loaded, redis, args.psap, args.from_, args.to)
        finally:
            await redis.aclose()

    try:
        result = asyncio.run(summary())
    except GatewayError as exc:
        print(f"report: {exc.message}", file=sys.stderr)
        return 2
    except (RedisError, OSError) as exc:
        print(f"report: cannot reach Redis ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(render(result, args.format))
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    import asyncio

    from redis.exceptions import RedisError

    from gateway.core.errors import GatewayError
    from gateway.core.redis_client import connect
    from gateway.policy.service import PolicyService
    from gateway.reports.audit import export
    from gateway.reports.figures import parse_day, period
    from gateway.transfer.store import TransferStore

    settings = load_settings()
    url = running_redis_url(settings)

    async def run(out: Any) -> int:
        redis = connect(url, socket_timeout_s=settings.redis_socket_timeout_s)
        try:
            store = TransferStore(redis)
            loaded = await PolicyService(
                redis, settings.config_dir, store.destination_load
            ).current()
            psaps = [loaded.psap(args.psap)] if args.psap else list(loaded.document.psaps)
            start = parse_day(args.from_, "from", datetime.now(UTC).date())
            end = parse_day(args.to, "to", start)
            period(start, end)
            return await export(redis, psaps, start, end, out)
        finally:
            await redis.aclose()

    try:
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                count = asyncio.run(run(out))
        else:
            count = asyncio.run(run(sys.stdout))
    except GatewayError as exc:
        print(f"audit export: {exc.message}", file=sys.stderr)
        return 2
    except (RedisError, OSError) as exc:
        print(f"audit export: cannot reach Redis ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(f"{count} audit events exported", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (settings from GATEWAY_* variables)")
    serve.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help="processes serving the one port, kept by gunicorn (default: $GATEWAY_WORKERS, or 1)",
    )
    serve.set_defaults(func=cmd_serve)

    from gateway.cli.keys import add_parser as add_keys_parser

    add_keys_parser(sub)

    from gateway.cli.rules import add_parser as add_rules_parser

    add_rules_parser(sub)

    from gateway.cli.handbacks import add_parser as add_handbacks_parser

    add_handbacks_parser(sub)

    demo = sub.add_parser(
        "demo", help="watch a warm transfer with a fallback, against `make run` (sandbox)"
    )
    demo.add_argument("--gateway-url", help="default http://127.0.0.1:$GATEWAY_PORT")
    demo.add_argument("--sandbox-url", help="default http://127.0.0.1:$GATEWAY_SANDBOX_PORT")
    demo.add_argument("--psap", default="kc-valleycom")
    demo.add_argument("--key", help="a psap API key (default: $GATEWAY_DEMO_KEY, else a new one)")
    demo.add_argument("--config-dir", help="where a new demo key is recorded")
    demo.add_argument("--hold", type=float, default=3.0, help="seconds connected before hang-up")
    demo.set_defaults(func=cmd_demo)

    report = sub.add_parser("report", help="program figures for a period")
    report.add_argument("--from", dest="from_", help="first PSAP-local date (default: --to)")
    report.add_argument("--to", help="last PSAP-local date, inclusive (default: today)")
    report.add_argument("--psap", help="one PSAP (default: all of the policy)")
    report.add_argument("--format", choices=["table", "json", "csv"], default="table")
    report.set_defaults(func=cmd_report)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    exporter = audit_sub.add_parser(
        "export", help="audit events as JSON lines (no personal fields), to keep past retention"
    )
    exporter.add_argument("--from", dest="from_", required=True, help="first PSAP-local date")
    exporter.add_argument("--to", help="last PSAP-local date, inclusive (default: --from)")
    exporter.add_argument("--psap", help="one PSAP (default: all of the policy)")
    exporter.add_argument("--output", help="a file (default: standard output)")
    exporter.set_defaults(func=cmd_audit_export)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
        sys.stdout.flush()  # inside the try: a reader gone shows here, not at exit
    except BrokenPipeError:
        # The reader went away (``… | head``): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result
