"""Real parts to break on purpose: a redis-server that can be stopped and started, a TCP proxy
that loses a reply, gateway processes to kill, and the load balancer in front of them.

Both listen on loopback ports only, and both are stopped by the fixture that starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from adapters.redis_server import find_redis_server
from tests.telephony import free_port


class RedisProcess:
    """A redis-server on a loopback TCP port with its data in ``data_dir``, AOF on (every write
    fsynced), so a stop and a start keep every key — as a production Redis with AOF would."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--loglevel", "warning",
             "--logfile", str(self.data_dir / "redis.log")],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.wait_ready()

    def wait_ready(self, within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while True:
            client = SyncRedis(host="127.0.0.1", port=self.port, socket_timeout=1)
            try:
                if client.ping():
                    return
            except RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: a clean shutdown; SIGKILL: a crash)."""
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A fresh RedisProcess for one test, stopped after it."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class ReplyDroppingProxy:
    """A TCP proxy in front of Redis that, when armed, forwards the next command containing
    ``pattern`` to the server and then closes the client's connection instead of relaying the
    reply: the command ran, but its caller never heard so — the one case in which a retried
    command may run twice."""

    hold_connection = False  # True: keep the client's connection open, so its socket times out

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.dropped = 0
        self._pattern: bytes | None = None
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def drop_next_reply(self, pattern: bytes) -> None:
        self._pattern = pattern

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._open.update((writer, up_writer))
        upstream = asyncio.create_task(self._relay(up_reader, writer))
        try:
            while chunk := await reader.read(65536):
                up_writer.write(chunk)
                await up_writer.drain()
                if self._pattern is not None and self._pattern in chunk:
                    self._pattern = None
                    upstream.cancel()  # the server runs the command; its reply goes nowhere
                    if self.hold_connection:
                        self.dropped += 1
                        continue
                    await asyncio.sleep(0.2)  # the server runs the command meanwhile
                    self.dropped += 1
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            upstream.cancel()
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    await w.wait_closed()

    @staticmethod
    async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()


class GatewayProcess:
    """``python -m gateway serve`` as its own process, as production runs it: stopped with
    SIGTERM (graceful) or SIGKILL (a crash)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "GATEWAY_PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    async def wait_ready(self, within_s: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + within_s
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.process is not None
                assert self.process.poll() is None, self.log()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/readyz") as answer:
                        if answer.status == 200:
                            return
                assert asyncio.get_running_loop().time() < deadline, self.log()
                await asyncio.sleep(0.1)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, within_s: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=within_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class LoadBalancer:
    """What sits between Twilio and several gateway processes: each request goes to the first
    backend that takes the connection, so a process that died or stopped listening is skipped."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.port = 0
        self.served: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=1024**2)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        for backend in self.backends:
            try:
                async with self._session.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                ) as answer:
                    self.served[backend] = self.served.get(backend, 0) + 1
                    return web.Response(
                        status=answer.status,
                        body=await answer.read(),
                        content_type=answer.content_type,
                    )
            except aiohttp.ClientConnectionError:
                continue  # that process is gone: the next one
        return web.Response(status=502, text="no gateway process answered")


_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
