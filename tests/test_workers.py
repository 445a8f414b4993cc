"""``python -m gateway serve --workers N``: N processes on one port; one SIGTERM stops them all.

Real processes on loopback ports. The workers are the parent's children running the parent's own
command line (gunicorn forks them); which one answered a request is read from the kernel, not
asked of the gateway: the server side of the request's connection is found in /proc/net/tcp, and
the worker holding that socket in /proc/<pid>/fd.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis

from tests.conftest import ROOT, KeyMaker
from tests.telephony import BRIDGE, PSAP, SAFE, free_port, short_ring_timeouts

pytestmark = pytest.mark.slow

STOP_WITHIN_S = 35.0  # gunicorn's graceful timeout (30 s) and the parent's own stop
IDLE_STOP_S = 10.0  # with nothing in flight, well before gunicorn would resort to SIGKILL


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process; None once it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return None if state in ("Z", "X") else (state, int(ppid))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def children(pid: int) -> dict[int, str]:
    """The live children of ``pid`` and their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found[int(entry.name)] = cmdline(int(entry.name))
    return found


def served_by(server_port: int, client_port: int, candidates: set[int]) -> int:
    """The process among ``candidates`` holding the server side of the connection that runs from
    ``client_port`` to ``server_port`` on 127.0.0.1."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote and fields[3] == "01":  # established
            inode = fields[9]
    assert inode, f"no connection from :{client_port} to :{server_port}"
    for pid in candidates:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"no worker among {sorted(candidates)} holds socket {inode}")


class Serve:
    """``python -m gateway serve --workers N`` as its own process, output to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int) -> None:
        self.env = env
        self.port = int(env["GATEWAY_PORT"])
        self.log_path = log_path
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()  # every child ever seen, to check none is left behind

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--workers", str(self.workers)],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    def children(self) -> dict[int, str]:
        found = children(self.pid)
        self.seen |= set(found)
        return found

    def worker_pids(self) -> set[int]:
        own = cmdline(self.pid)
        return {pid for pid, line in self.children().items() if line == own}

    def wait_ready(self, within_s: float = 30.0) -> set[int]:
        """Until /readyz answers 200 and all N workers run; their pids."""
        deadline = time.monotonic() + within_s
        while True:
            assert self.process is not None
            assert self.process.poll() is None, self.log()
            try:
                status, _, _ = self.request("GET", "/readyz")
            except OSError:
                status = 0
            workers = self.worker_pids()
            if status == 200 and len(workers) == self.workers:
                return workers
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.1)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, int]:
        """(status, JSON body, pid of the worker that answered) on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(
                method,
                path,
                body=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json", **(headers or {})},
            )
            answer = conn.getresponse()
            data = json.loads(answer.read() or b"null")
            assert conn.sock is not None  # kept alive: the server still holds its side
            client_port = conn.sock.getsockname()[1]
            candidates = set(children(self.pid))
            pid = served_by(self.port, client_port, candidates) if candidates else 0
            return answer.status, data, pid
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGTERM, within_s: float = STOP_WITHIN_S) -> int:
        assert self.process is not None
        self.children()
        self.process.send_signal(sig)
        return self.process.wait(timeout=within_s)

    def left_behind(self, within_s: float = 5.0) -> dict[int, str]:
        """Children ever seen that still run."""
        deadline = time.monotonic() + within_s
        while True:
            alive = {pid: cmdline(pid) for pid in self.seen if proc_stat(pid) is not None}
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    def kill_all(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.children()
            self.process.kill()
            self.process.wait()
        for pid in self.seen:
            if proc_stat(pid) is not None:
                os.kill(pid, signal.SIGKILL)

    def log(self, tail: int | None = 6000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]


ServeFactory = Callable[..., Serve]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    started: list[Serve] = []

    def start(env: dict[str, str], workers: int = 2) -> Serve:
        server = Serve(env, tmp_path / f"serve-{len(started)}.log", workers)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill_all()


def base_env(tmp_path: Path, config_dir: Path) -> dict[str, str]:
    """This machine's environment without any GATEWAY_ setting, then the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_PORT=str(free_port()),
        GATEWAY_CONFIG_DIR=str(config_dir),
        GATEWAY_STATE_DIR=str(tmp_path / "state"),
    )
    return env


def test_workers_share_one_port_and_the_state_and_stop_together(
    serve: ServeFactory, redis_url: str, tmp_path: Path, config_dir: Path, make_key: KeyMaker
) -> None:
    with SyncRedis.from_url(redis_url) as redis:
        redis.flushdb()
    key = make_key(PSAP, "psap")
    env = base_env(tmp_path, config_dir) | {
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_SANDBOX": "false",
        "GATEWAY_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "GATEWAY_TWILIO_AUTH_TOKEN": "not-a-real-token",
        "GATEWAY_TWILIO_API_BASE_URL": "http://127.0.0.1:9",  # no call is placed here
        "GATEWAY_BRIDGE_NUMBER": BRIDGE,
    }
    server = serve(env)
    workers = server.wait_ready()
    assert len(workers) == 2

    # Both workers accept on the one port.
    answered: set[int] = set()
    for _ in range(100):
        status, body, pid = server.request("GET", "/healthz")
        assert status == 200, body
        answered.add(pid)
        if answered == workers:
            break
    assert answered == workers

    # A transfer opened through one worker is read by whichever answers next.
    auth = {"Authorization": f"Bearer {key}"}
    opened = {"psap_id": PSAP, "caller_type": "first_person", "screening": SAFE}
    status, transfer, opener = server.request("POST", "/v1/transfers", opened, auth)
    assert status == 201, transfer
    readers: set[int] = set()
    for _ in range(100):
        status, read, pid = server.request("GET", f"/v1/transfers/{transfer['id']}", None, auth)
        assert status == 200, read
        assert (read["id"], read["state"]) == (transfer["id"], transfer["state"])
        readers.add(pid)
        if readers == workers:
            break
    assert workers - {opener} <= readers  # read by a worker other than the one that opened it

    # A worker killed outright: the port keeps serving, and gunicorn starts a replacement.
    victim = opener
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while proc_stat(victim) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(20):
        status, body, _ = server.request("GET", "/healthz")
        assert status == 200, body
    replaced = server.wait_ready(within_s=15)
    assert victim not in replaced
    assert len(replaced - workers) == 1
    status, read, _ = server.request("GET", f"/v1/transfers/{transfer['id']}", None, auth)
    assert status == 200, read

    # SIGTERM to the parent: every worker stops gracefully, and the parent exits 0.
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0, server.log()
    assert time.monotonic() - started < IDLE_STOP_S
    assert not server.left_behind()
    log = server.log(tail=None)
    assert "Traceback" not in log
    assert log.count("Worker exiting") == 2  # the survivor and the replacement, each by itself
    assert log.count("was sent SIGKILL") == 1  # only the one the test killed
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "gunicorn.error" for r in records)  # through the JSON handler


def test_workers_with_the_embedded_redis_and_the_sandbox_run_the_demo(
    serve: ServeFactory, tmp_path: Path, config_dir: Path
) -> None:
    """``make run`` with workers: one embedded Redis and one sandbox, started by the parent."""
    short_ring_timeouts(config_dir)
    env = base_env(tmp_path, config_dir)
    env |= {
        "GATEWAY_SANDBOX_PORT": str(free_port()),
        "GATEWAY_PUBLIC_BASE_URL": f"http://127.0.0.1:{env['GATEWAY_PORT']}",
    }
    server = serve(env)
    workers = server.wait_ready()
    others = {pid: line for pid, line in server.children().items() if pid not in workers}
    assert sorted("redis-server" in line for line in others.values()) == [False, True], others
    assert sorted("gateway.cli.devsandbox" in line for line in others.values()) == [False, True]

    demo = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--hold", "0.5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr + server.log()
    assert "connected to wa-988-backup" in demo.stdout
    assert "transfer completed" in demo.stdout

    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0, server.log()
    assert time.monotonic() - started < IDLE_STOP_S
    assert not server.left_behind(), server.log()
    assert "Traceback" not in server.log(tail=None)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "0"], {}, "argument --workers: must be 1 or more"),
        (["--workers", "-3"], {}, "argument --workers: must be 1 or more"),
        ([], {"GATEWAY_WORKERS": "0"}, "GATEWAY_WORKERS:"),
    ],
)
def test_no_workers_is_refused(args: list[str], env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
