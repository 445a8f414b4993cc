"""CPU per webhook of the gateway, measured in a way a busy machine does not blur.

    .venv/bin/python benchmarks/profile_webhooks.py [--transfers N] [--workers W] [--profile]

The gateway app (``serving_app``, as ``serve`` builds it, with its access log) runs in a thread
of this process with its own event loop; a redis-server, the Twilio REST stub and the load
generator of ``benchmarks/webhooks.py`` run beside it (the generator and the stub in the main
thread). ``N`` whole transfers (12 signed webhooks each, see that file's docstring) are driven
closed loop by ``W`` workers after a warm-up. What is reported is the gateway thread's own CPU
time (its threads' CPU clocks) divided by the webhooks answered: other processes competing for the
cores change the wall clock, not that figure. With ``--profile`` the gateway thread runs under
cProfile (only that thread) and the functions that cost the most CPU per webhook are printed,
by own time and by package; profiling inflates the absolute figures, so compare a run without it.

Also printed: the code step's answer → the stub's Participants create (the dial's delay), p50
and p99, at the concurrency driven.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import io
import logging
import os
import pstats
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import webhooks as bench  # noqa: E402 - after the path fix above
from aiohttp import web  # noqa: E402

from adapters.redis_server import find_redis_server  # noqa: E402
from gateway.cli.main import LISTEN_BACKLOG  # noqa: E402
from gateway.core.logs import RequestIdAccessLogger, configure_logging  # noqa: E402


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's when installed (what ``serve`` runs on), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def gateway_cpu() -> float:
    """CPU seconds of every thread but this one: the gateway's, and those it started (the
    Twilio REST requests' loop)."""
    total = 0.0
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.ident is None:
            continue
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


class GatewayThread:
    """The gateway app served from its own thread and event loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = _new_loop()
        self.profile = cProfile.Profile(time.thread_time)
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the main thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from gateway.core.settings import Settings
        from gateway.web import serving_app

        app = serving_app(Settings())
        runner = web.AppRunner(app, handle_signals=False, access_log_class=RequestIdAccessLogger)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=LISTEN_BACKLOG)
        await site.start()
        self._stop = self.loop.create_future()
        self._ready.set()
        await self._stop
        await runner.cleanup()

    def start(self) -> None:
        self.thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError("the gateway did not start") from self._error

    async def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run in the gateway's thread (between two of its callbacks)."""

        async def inside() -> Any:
            return fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(inside(), self.loop))

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self.thread.join(30)


def _package(filename: str) -> str:
    """A short name for where a function lives: a package, or ``builtin``."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtin / C"
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                rest = rest.split("/", 1)[1] if "/" in rest else rest
                return "stdlib " + rest.split("/", 1)[0].removesuffix(".py")
            return rest.split("/", 1)[0].removesuffix(".py")
    if "/gateway/" in path:
        return "gateway." + path.split("/gateway/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/adapters/" in path:
        return "adapters"
    return path.rsplit("/", 1)[-1]


def print_profile(profile: cProfile.Profile, webhooks: int, top: int) -> None:
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_package: collections.Counter[str] = collections.Counter()
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        by_package[_package(filename)] += tottime
    total = sum(by_package.values())
    calls: int = stats.total_calls  # type: ignore[attr-defined]
    print(f"\nPython function calls per webhook (deterministic): {calls / webhooks:.0f}")
    print(f"\nown CPU by package (profiled), µs per webhook; total {total / webhooks * 1e6:.0f}")
    for name, seconds in by_package.most_common(18):
        share = seconds / total * 100 if total else 0.0
        print(f"  {seconds / webhooks * 1e6:8.1f}  {share:5.1f} %  {name}")
    for key, title in (("tottime", "own time"), ("cumulative", "cumulative")):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(top)
        print(f"\ntop {top} functions by {title} (whole run of {webhooks} webhooks):")
        print(out.getvalue().split("\n", 6)[-1].rstrip().replace(str(ROOT) + "/", ""))


def make_key(config: Path) -> str:
    """A config directory at ``config`` (a copy of this checkout's) with a new PSAP key."""
    shutil.copytree(ROOT / "config", config, ignore=shutil.ignore_patterns("api_keys.yaml"))
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "new", "--org", bench.PSAP, "--role",
         "psap", "--config-dir", str(config)],
        cwd=ROOT, env=bench.clean_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return made.stdout.strip().splitlines()[-1]


async def drive(args: argparse.Namespace, workdir: Path, redis_port: int, key: str) -> None:
    gateway_port = bench.free_port()
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    config = workdir / "config"
    stub = bench.TwilioStub(account_sid, auth_token)
    gateway: GatewayThread | None = None
    try:
        await stub.start()
        for name in [k for k in os.environ if k.startswith("GATEWAY_")]:
            del os.environ[name]
        os.environ.update(
            {
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(gateway_port),
                "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "GATEWAY_CONFIG_DIR": str(config),
                "GATEWAY_STATE_DIR": str(workdir / "state"),
                "GATEWAY_PUBLIC_BASE_URL": bench.PUBLIC,
                "GATEWAY_SANDBOX": "false",
                "GATEWAY_TWILIO_ACCOUNT_SID": account_sid,
                "GATEWAY_TWILIO_AUTH_TOKEN": auth_token,
                "GATEWAY_TWILIO_API_BASE_URL": f"http://127.0.0.1:{stub.port}",
                "GATEWAY_BRIDGE_NUMBER": bench.BRIDGE,
            }
        )
        configure_logging(args.log_level, args.log)
        gateway = GatewayThread(gateway_port)
        gateway.start()
        api = bench.Api(gateway_port, key)
        signer = bench.Signer(account_sid, auth_token, gateway_port)
        warm = await api.open(args.warmup)
        measured = await api.open(args.transfers)
        for t in warm + measured:
            stub.register(t)

        async def run(runs: list[bench.TransferRun]) -> bench.Player:
            player = bench.Player("gateway", bench.HttpPool(gateway_port), signer, stub)
            await player.pool.warm(args.workers)
            await bench.closed_loop(player, iter(runs), args.workers, 3600)
            player.pool.close()
            return player

        await run(warm)
        if args.profile:
            await gateway.call(gateway.profile.enable)
        cpu0 = gateway_cpu()
        wall0 = time.monotonic()
        player = await run(measured)
        wall = time.monotonic() - wall0
        cpu = gateway_cpu() - cpu0
        if args.profile:
            await gateway.call(gateway.profile.disable)
        ok = [r for r in player.records if r.error is None]
        errors = collections.Counter(r.error for r in player.records if r.error is not None)
        dial = [
            t.dialed_at - t.code_answered
            for t in measured
            if t.dialed_at is not None and t.code_answered is not None
        ]
        latency = [r.done - r.sent for r in ok]
        print(
            f"{len(measured)} transfers, {len(player.records)} webhooks ({len(ok)} as expected)"
            f", {args.workers} workers{', PROFILED' if args.profile else ''}"
        )
        print(f"  gateway threads' CPU: {cpu * 1e3:.0f} ms = {cpu / len(ok) * 1e6:.0f} µs/webhook")
        print(f"  wall {wall:.2f} s: {len(ok) / wall:.0f} webhooks/s (load-dependent)")
        print(
            f"  latency p50 {_ms(bench.pct(latency, 50))} ms, p99 {_ms(bench.pct(latency, 99))} ms"
        )
        print(
            f"  code answered → Participants create: p50 {_ms(bench.pct(dial, 50))} ms,"
            f" p99 {_ms(bench.pct(dial, 99))} ms, max {_ms(max(dial, default=None))} ms"
        )
        if errors:
            print(f"  errors: {dict(errors)}")
        if args.profile:
            print_profile(gateway.profile, len(ok), args.top)
        await api.aclose()
    finally:
        if gateway is not None:
            gateway.stop()
        await stub.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--transfers", type=int, default=200, help="measured transfers")
    parser.add_argument("--warmup", type=int, default=40, help="transfers driven first")
    parser.add_argument("--workers", type=int, default=16, help="concurrent transfers")
    parser.add_argument("--profile", action="store_true", help="cProfile the gateway thread")
    parser.add_argument("--log-level", default="INFO", help="the gateway's (serve: INFO)")
    parser.add_argument("--top", type=int, default=40, help="functions listed")
    args = parser.parse_args(argv)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="profile-webhooks-"))
    redis_port = bench.free_port()
    redis = subprocess.Popen(
        [find_redis_server(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with (workdir / "gateway.log").open("w") as args.log:  # as the benchmark keeps them
            asyncio.run(drive(args, workdir, redis_port, make_key(workdir / "config")))
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
