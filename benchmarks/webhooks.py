"""Signed Twilio webhooks end to end: the gateway process driven as Twilio drives it, against a
bare aiohttp + one-Redis-round-trip baseline measured in the same run.

    .venv/bin/python benchmarks/webhooks.py [--quick | --full | --smoke] [--soak] [--json FILE]
    make bench-webhooks                       # --quick: about 90 s
    make bench-webhooks BENCH_ARGS=--full     # longer phases, more concurrencies, the soak

``--smoke`` (the test suite's): a few transfers at a low rate, no pinning, no overload.

**What runs.** Everything on loopback, started here and stopped at the end (also on Ctrl-C or an
error): a redis-server on a TCP port (``--save "" --appendonly no``); the gateway as a real
process (``python -m gateway serve``, configured only through ``GATEWAY_*`` variables: this run's
Twilio credentials, ``GATEWAY_SANDBOX=false``, ``GATEWAY_TWILIO_API_BASE_URL`` at the REST stub,
a copy of ``config/`` with a fresh PSAP key); the baseline (this file with ``--serve-baseline``:
one aiohttp POST handler that reads the form, does one Redis ``INCR`` and answers 204); a null
server (``--serve-null``: a canned 204 per request, the load generator's own ceiling). In this
process: the load generator (raw asyncio HTTP/1.1 keep-alive connections; requests built ahead
where nothing in them is learned at run time), the Twilio REST stub (aiohttp) and, in one phase,
a counting TCP proxy in front of Redis. With two cores or more, the server under test (gateway,
baseline, null) runs on core 0 and Redis, the generator, the stub and the proxy on core 1.

**A transfer, as Twilio plays it.** Opened with ``POST /v1/transfers`` before its phase starts
(first-person caller, all-clear screening, consent), then 12 webhooks, each a form POST signed as
Twilio signs (``X-Twilio-Signature`` over ``GATEWAY_PUBLIC_BASE_URL`` + path + query):

    1 voice            /twilio/voice, the PSAP leg calling the bridge line
    2 code             the <Gather> action of the voice TwiML, Digits = the bridge code
    3 join-psap        conference participant-join of the PSAP leg, to the <Conference
    4 conference-start   statusCallback> of the code TwiML
      (the REST stub must have received this transfer's Participants create)
    5 initiated        counselor leg progress, to the create's StatusCallback
    6 ringing
    7 in-progress      the counselor answers
    8 join-counselor   conference events again: participant-join, participant-leave (PSAP leg,
    9 leave-psap       then counselor), conference-end
   10 leave-counselor
   11 conference-end
   12 completed        the counselor leg's call ends

Within one transfer a webhook is never sent before the previous one was answered (Twilio's order
within a call); a failed voice or code step ends the transfer (Twilio turns to the fallback URL
or ends the call); a failed status callback does not (Twilio does not retry it; the call goes on).

**Load.** Open loop: a fixed rate, transfers interleaved in waves so every 1/rate s one webhook
is due and one transfer's steps are 0.1 s apart; latency is measured from the scheduled time, so
queueing (in the gateway, or behind a late predecessor) counts, and the generator's own lateness
is reported. Closed loop: N workers, each driving whole transfers back to back, as fast as
answers come; the gateway's is run at a few concurrencies (more is not always faster) and its
maximum is the best of them. Throughput counts webhooks answered as expected (2xx, and for the
voice and code steps the TwiML that continues the call). The baseline gets the same signed
requests at the same rates; the ratio to it is measured in the same run. After each gateway
phase, ``GET /v1/transfers/{id}`` must show every driven transfer in a state its accepted
callbacks imply (``completed`` when all were accepted; a callback that failed may or may not
have been applied).

**Redis round trips per webhook.** Real round trips, not commands: a MULTI/EXEC pipeline or an
EVALSHA is one. Two independent counts:

- *Counting proxy* (its own phase, a second gateway process whose ``GATEWAY_REDIS_URL`` is a TCP
  proxy in this process): a round trip is a burst of client→server bytes on one connection that
  starts after the previous burst was answered. Background traffic (the timer worker's polls) is
  measured idle first and subtracted. Whole transfer: an open-loop run at a moderate rate, every
  burst from its start to 3 s after its last answer (the timers a transfer armed fire within
  that), minus background, divided by the webhooks sent. Per step: transfers driven one step at
  a time, each step's window lasting until Redis has been quiet for 30 ms after its answer (for
  the code step, after the Participants create too), median over the transfers; "later" is the
  whole transfer's count less the steps' own (timers the transfer armed).
- *Redis's own* ``total_reads_processed`` (``INFO stats``), for every table row: each read event
  of a client connection is one request burst. Sampled over the steady part of each phase (after
  its first 2.4 s; webhooks answered in that window), minus the idle rate; the baseline row's
  figure (exactly 1 by construction) and the proxy phase's cross-check show it counts what the
  proxy counts.

**Overload.** At twice the gateway's measured maximum for 10 s: status callbacks answered 2xx
are checked against the transfers' states afterwards (none may be lost); every ``/twilio/voice``
answered non-2xx (refused) is timed from its send. The same process is run at half its maximum
right before and right after (once Redis is back to idle): does it serve as it did?

**Memory.** ``--soak`` (and ``--full``) adds 5 minutes at 500 webhooks/s on a fresh gateway, its
RSS sampled every 5 s; flat means within 10 % of its value after the first 30 s. Transfers are
opened alongside, a little ahead of their use.

The gateway's stderr of every process is kept (``--logs DIR``, default
``.state/bench-webhooks``) and summarized at the end: warnings and errors by message, tracebacks,
5xx answers in its access log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import email.utils
import itertools
import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from multidict import MultiDictProxy
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

SELF = Path(__file__).resolve()
ROOT = SELF.parents[1]
if __name__ == "__main__":
    # Run as a script: the adapters of this checkout, whatever else is installed.
    sys.path.insert(0, str(ROOT))

from adapters.redis_server import find_redis_server  # noqa: E402 - after the path fix above
from gateway.cli.common import install_uvloop  # noqa: E402 - after the path fix above

# --- the world --------------------------------------------------------------------------------

PUBLIC = "https://bridge.bench.invalid"
"""GATEWAY_PUBLIC_BASE_URL: Twilio signs for it; requests go to the gateway's loopback port."""
BRIDGE = "+12065550199"
PSAP = "kc-valleycom"
PSAP_LINE = "+12065550111"
PRIMARY = "+12065550188"  # crisis-connections-988, the first destination for a first-person call
SAFE = {
    "weapons": False,
    "violence": False,
    "medical_emergency": False,
    "attempt_in_progress": False,
    "severe_intoxication": False,
    "officer_requested": False,
    "imminent_risk": False,
    "consent_to_transfer": True,
}
API_VERSION = "2010-04-01"

STEPS = (
    "voice",
    "code",
    "join-psap",
    "conference-start",
    "initiated",
    "ringing",
    "in-progress",
    "join-counselor",
    "leave-psap",
    "leave-counselor",
    "conference-end",
    "completed",
)
(
    VOICE,
    CODE,
    JOIN_PSAP,
    CONF_START,
    INITIATED,
    RINGING,
    IN_PROGRESS,
    JOIN_COUNSELOR,
    LEAVE_PSAP,
    LEAVE_COUNSELOR,
    CONF_END,
    COMPLETED,
) = range(12)
PROGRESS = {
    INITIATED: "initiated",
    RINGING: "ringing",
    IN_PROGRESS: "in-progress",
    COMPLETED: "completed",
}
CONFERENCE_SEQ = {
    JOIN_PSAP: 1,
    CONF_START: 2,
    JOIN_COUNSELOR: 3,
    LEAVE_PSAP: 4,
    LEAVE_COUNSELOR: 5,
    CONF_END: 6,
}

TWILIO_TIMEOUT_S = 15.0
"""Twilio gives up on a webhook after 15 s: so does the generator."""
STEP_GAP_S = 0.1
"""Open loop: one transfer's consecutive steps are this far apart (a wave of transfers)."""
DIAL_WAIT_S = 5.0
"""How long a transfer waits for its Participants create before it is given up (counted as
bridged but not dialed: the call-taker and caller sit in a silent conference meanwhile)."""
CLOSED_LOOP_POOL_PER_S = 1000
"""Transfers opened for a closed loop: enough for this many webhooks/s (fewer end it early)."""
OVERLOAD_GRACE_S = 20.0
"""Overload: no new step is started this long after the schedule's end."""
TAIL_S = 3.0
"""Round trips: counting goes on this long after the last answer, so the timers a transfer
armed (the gateway's dial backup fires 2 s after the code step) are counted."""
QUIET_S = 0.03
"""Round trips per step: a step's window ends once Redis has been quiet this long."""
STOP_S = 15.0
"""A process that has not exited this long after SIGTERM is killed."""
MAX_CONNECTIONS = 4096

now = time.monotonic


# --- small helpers ----------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) of ``values``, None when empty."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if q == 50:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def rfc2822_now() -> str:
    return email.utils.format_datetime(datetime.now(UTC))


async def sleep_until(moment: float) -> None:
    delay = moment - now()
    if delay > 0:
        await asyncio.sleep(delay)


def public_path(url: str) -> str:
    """The path + query of a public URL the gateway handed out (its own base stripped)."""
    if not url.startswith(PUBLIC):
        raise ValueError(f"not under {PUBLIC}: {url[:80]}")
    return url[len(PUBLIC) :] or "/"


# --- a raw HTTP/1.1 client: keep-alive connections, no per-request allocation beyond the answer --


def parse_response(buffer: bytearray) -> tuple[int, bytes, bool] | None:
    """One whole response off the front of ``buffer``: (status, body, keep-alive), or None when
    more bytes are needed. Content-Length and chunked bodies."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    keep = b"\r\nconnection: close" not in head
    start = end + 4
    if b"\r\ntransfer-encoding: chunked" in head:
        body = bytearray()
        pos = start
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                if len(buffer) < pos + 2:
                    return None
                pos += 2
                break
            if len(buffer) < pos + size + 2:
                return None
            body += buffer[pos : pos + size]
            pos += size + 2
        del buffer[:pos]
        return status, bytes(body), keep
    length = 0
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    if len(buffer) < start + length:
        return None
    body_bytes = bytes(buffer[start : start + length])
    del buffer[: start + length]
    return status, body_bytes, keep


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            parsed = parse_response(self.buffer)
            if parsed is not None:
                waiter.set_result(parsed)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("closed by the server"))

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class HttpPool:
    """Keep-alive connections to one server, up to ``limit`` open; one request per connection
    at a time (no pipelining), as Twilio's webhook client does."""

    def __init__(
        self, port: int, *, limit: int = MAX_CONNECTIONS, timeout_s: float = TWILIO_TIMEOUT_S
    ):
        self.port = port
        self.limit = limit
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._waiting: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._open = 0
        self.opened = 0
        self.waited = 0
        """Requests that found every one of the ``limit`` connections busy and waited for one
        (their latency counts that wait: Twilio would open another connection instead)."""

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, "127.0.0.1", self.port)
        self.opened += 1
        return conn

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost:
                return conn
            self._open -= 1
        if self._open >= self.limit:
            self.waited += 1
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            handed = await waiter
            if handed is not None:
                return handed
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._release(None)
            raise

    def _release(self, conn: _Connection | None) -> None:
        """Give ``conn`` back, or (None) account for one closed: a waiter gets either."""
        if conn is None:
            self._open -= 1
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # None: the waiter opens one in the slot freed
                return
        if conn is not None:
            self._idle.append(conn)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        conn = await self._acquire()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes, bool]] = loop.create_future()
        conn.waiter = waiter
        assert conn.transport is not None
        conn.transport.write(data)
        timer = loop.call_later(self.timeout_s, _expire, waiter)
        try:
            status, body, keep = await waiter
        except BaseException:
            conn.waiter = None
            conn.close()
            self._release(None)
            raise
        finally:
            timer.cancel()
        conn.waiter = None
        if keep and not conn.lost and not conn.buffer:
            self._release(conn)
        else:
            conn.close()
            self._release(None)
        return status, body

    async def warm(self, count: int) -> None:
        count = min(count, self.limit)
        conns = await asyncio.gather(*(self._connect() for _ in range(count)))
        self._open += len(conns)
        for conn in conns:
            self._release(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


# --- webhooks as Twilio sends them ------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    """One webhook: when it was due, sent and answered; its status (None: no answer) and what
    was wrong with the answer (None: as expected)."""

    step: int
    due: float
    ready: float
    """When it could be sent: its due time, or later its predecessor's answer (or the dial)."""
    sent: float
    done: float
    status: int | None
    error: str | None


@dataclass(slots=True)
class TransferRun:
    """One transfer as the generator plays it, and what it learned from the gateway."""

    id: str
    code: str
    psap_sid: str = field(default_factory=lambda: new_sid("CA"))
    conference_sid: str = field(default_factory=lambda: new_sid("CF"))
    counselor_sid: str = field(default_factory=lambda: new_sid("CA"))
    code_path: str = "/twilio/voice/code"
    conference_path: str = ""
    participant_path: str = ""
    label: str = "attempt-1"
    counselor_to: str = PRIMARY
    counselor_from: str = BRIDGE
    outcomes: list[Sent | None] = field(default_factory=lambda: [None] * len(STEPS))
    code_sent: float | None = None
    code_answered: float | None = None
    dialed_at: float | None = None
    stopped: str | None = None
    requests: list[bytes] | None = None
    """Prebuilt requests (baseline and null server: nothing is learned at run time)."""

    def __post_init__(self) -> None:
        self.conference_path = self.conference_path or f"/twilio/conference/{self.id}"
        self.participant_path = self.participant_path or f"/twilio/participant/{self.id}?attempt=1"


class Signer:
    """Twilio's side of the signature: builds each step's form and signs it for the public URL."""

    def __init__(self, account_sid: str, auth_token: str, port: int) -> None:
        self.account_sid = account_sid
        self.validator = RequestValidator(auth_token)
        self.host = f"127.0.0.1:{port}"

    def _call(self, sid: str, from_: str, to: str, direction: str, status: str) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": sid,
            "CallStatus": status,
            "Called": to,
            "CalledCountry": "US",
            "Caller": from_,
            "CallerCountry": "US",
            "Direction": direction,
            "From": from_,
            "FromCountry": "US",
            "To": to,
            "ToCountry": "US",
        }

    def params(self, t: TransferRun, step: int) -> tuple[str, dict[str, str]]:
        """The path (with query) and form of ``step`` of ``t``, as Twilio would send them."""
        if step in (VOICE, CODE):
            status = "ringing" if step == VOICE else "in-progress"
            params = self._call(t.psap_sid, PSAP_LINE, BRIDGE, "inbound", status)
            if step == VOICE:
                return "/twilio/voice", params
            params.update(Digits=t.code, FinishedOnKey="", msg="Gather End")
            return t.code_path, params
        if step in PROGRESS:
            params = self._call(
                t.counselor_sid, t.counselor_from, t.counselor_to, "outbound-api", PROGRESS[step]
            )
            params.update(
                CallbackSource="call-progress-events",
                SequenceNumber=str(sorted(PROGRESS).index(step)),
                Timestamp=rfc2822_now(),
                ConferenceSid=t.conference_sid,
            )
            if step == COMPLETED:
                params.update(CallDuration="30", Duration="1")
            return t.participant_path, params
        event = {
            JOIN_PSAP: "participant-join",
            CONF_START: "conference-start",
            JOIN_COUNSELOR: "participant-join",
            LEAVE_PSAP: "participant-leave",
            LEAVE_COUNSELOR: "participant-leave",
            CONF_END: "conference-end",
        }[step]
        params = {
            "AccountSid": self.account_sid,
            "ConferenceSid": t.conference_sid,
            "FriendlyName": t.id,
            "SequenceNumber": str(CONFERENCE_SEQ[step]),
            "StatusCallbackEvent": event,
            "Timestamp": rfc2822_now(),
        }
        participant = {
            "Muted": "false",
            "Hold": "false",
            "Coaching": "false",
            "EndConferenceOnExit": "false",
            "StartConferenceOnEnter": "true",
        }
        if step in (JOIN_PSAP, LEAVE_PSAP):
            params.update(participant, CallSid=t.psap_sid)
        elif step in (JOIN_COUNSELOR, LEAVE_COUNSELOR):
            params.update(participant, CallSid=t.counselor_sid, ParticipantLabel=t.label)
        if step in (LEAVE_PSAP, LEAVE_COUNSELOR):
            params.update(
                ReasonParticipantLeft="participant_hung_up", ParticipantCallStatus="completed"
            )
        if step == CONF_END:
            params.update(
                ReasonConferenceEnded="last-participant-left",
                Reason="Last participant left the conference",
                CallSidEndingConference=t.counselor_sid,
                ParticipantLabelEndingConference=t.label,
            )
        return t.conference_path, params

    def request(self, path: str, params: dict[str, str]) -> bytes:
        body = urlencode(params)
        signature = self.validator.compute_signature(PUBLIC + path, params)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: TwilioProxy/1.1\r\n"
            "Accept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {signature}\r\nI-Twilio-Idempotency-Token: {uuid.uuid4()}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return (head + body).encode()

    def webhook(self, t: TransferRun, step: int) -> bytes:
        return self.request(*self.params(t, step))


def _twiml(body: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(body)  # noqa: S314 - TwiML from the local process under test
    except ET.ParseError:
        return None


def voice_action(body: bytes) -> str | None:
    """The <Gather> action of a voice answer, as a path; None when the TwiML has none."""
    root = _twiml(body)
    if root is None:
        return None
    gather = root.find("Gather")
    action = gather.get("action") if gather is not None else None
    return public_path(action) if action else None


def conference_of(body: bytes) -> tuple[str, str] | None:
    """(conference name, statusCallback path) of a code answer that puts the leg in a
    conference; None for any other TwiML."""
    root = _twiml(body)
    if root is None:
        return None
    conference = root.find("Dial/Conference")
    if conference is None or not conference.text:
        return None
    callback = conference.get("statusCallback")
    return conference.text.strip(), public_path(callback) if callback else ""


def twiml_kind(body: bytes) -> str:
    """A short name for what an unexpected TwiML answer does."""
    root = _twiml(body)
    if root is None:
        return "not TwiML"
    dial = root.find("Dial")
    if dial is not None and (dial.find("Number") is not None or (dial.text or "").strip()):
        return "fallback dial"
    if root.find("Gather") is not None:
        return "gather again (code refused)"
    return "other TwiML: " + ",".join(child.tag for child in root)[:40]


# --- the Twilio REST stub ---------------------------------------------------------------------


@dataclass(slots=True)
class Create:
    call_sid: str
    arrived: float
    form: dict[str, str]


class TwilioStub:
    """The REST calls the gateway makes, answered at once: Participants create (recorded per
    conference, with its arrival time), Calls fetch / update, Conferences list / fetch /
    update, Participants fetch. Call statuses are what the generator last reported."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.transfers: dict[str, TransferRun] = {}
        self.by_conference_sid: dict[str, TransferRun] = {}
        self.creates: dict[str, list[Create]] = collections.defaultdict(list)
        self.calls: dict[str, str] = {}
        self.conference_status: dict[str, str] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self._dialed: dict[str, asyncio.Future[Create]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # the generator's side

    def register(self, t: TransferRun) -> None:
        self.transfers[t.id] = t
        self.by_conference_sid[t.conference_sid] = t

    def reported(self, t: TransferRun, step: int) -> None:
        """The generator is about to report ``step``: the stub's world moves with it."""
        if step == VOICE:
            self.calls[t.psap_sid] = "ringing"
        elif step == CODE:
            self.calls[t.psap_sid] = "in-progress"
        elif step in PROGRESS:
            self.calls[t.counselor_sid] = PROGRESS[step]
        elif step == CONF_START:
            self.conference_status[t.id] = "in-progress"
        elif step == LEAVE_PSAP:
            self.calls[t.psap_sid] = "completed"
        elif step == CONF_END:
            self.conference_status[t.id] = "completed"

    async def dialed(self, transfer_id: str, timeout_s: float) -> Create | None:
        found = self.creates.get(transfer_id)
        if found:
            return found[0]
        waiter = self._dialed.setdefault(transfer_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), max(0.0, timeout_s))
        except TimeoutError:
            return None

    # the server

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        prefix = f"/{API_VERSION}/Accounts/{{account}}"
        conferences = f"{prefix}/Conferences"
        app.router.add_post(f"{conferences}/{{conference}}/Participants.json", self._create)
        app.router.add_get(
            f"{conferences}/{{conference}}/Participants/{{who}}.json", self._participant
        )
        app.router.add_get(f"{conferences}.json", self._list_conferences)
        app.router.add_route("*", f"{conferences}/{{conference}}.json", self._conference)
        app.router.add_route("*", f"{prefix}/Calls/{{sid}}.json", self._call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != self.auth:
            self.requests["unauthorized"] += 1
            return web.json_response(_error(401, 20003, "Authenticate"), status=401)
        if request.match_info.get("account") != self.account_sid:
            return self._not_found(request, "wrong account")
        return await handler(request)

    def _not_found(self, request: web.Request, what: str) -> web.Response:
        self.requests[f"404 {what}"] += 1
        return web.json_response(_error(404, 20404, f"not found: {request.path}"), status=404)

    def _transfer(self, ref: str) -> TransferRun | None:
        return self.transfers.get(ref) or self.by_conference_sid.get(ref)

    async def _create(self, request: web.Request) -> web.Response:
        arrived = now()
        name = request.match_info["conference"]
        form: MultiDictProxy[Any] = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        t = self._transfer(name)
        if t is None:
            return self._not_found(request, "participants create, unknown conference")
        earlier = self.creates[t.id]
        sid = t.counselor_sid if not earlier else new_sid("CA")
        self.requests["participants create" if not earlier else "participants create (again)"] += 1
        create = Create(sid, arrived, fields)
        earlier.append(create)
        self.calls[sid] = "queued"
        waiter = self._dialed.pop(t.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(create)
        return web.json_response(self._participant_json(t, sid, fields.get("Label")), status=201)

    def _participant_json(self, t: TransferRun, sid: str, label: str | None) -> dict[str, Any]:
        return {
            "account_sid": self.account_sid,
            "call_sid": sid,
            "conference_sid": t.conference_sid,
            "label": label,
            "status": "queued",
            "coaching": False,
            "end_conference_on_exit": False,
            "start_conference_on_enter": True,
            "hold": False,
            "muted": False,
            "date_created": None,
            "date_updated": None,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/"
            f"{t.conference_sid}/Participants/{sid}.json",
        }

    async def _participant(self, request: web.Request) -> web.Response:
        self.requests["participant fetch"] += 1
        t = self._transfer(request.match_info["conference"])
        who = request.match_info["who"]
        if t is None:
            return self._not_found(request, "participant fetch")
        for create in self.creates.get(t.id, []):
            if who in (create.call_sid, create.form.get("Label")):
                return web.json_response(
                    self._participant_json(t, create.call_sid, create.form.get("Label"))
                )
        return self._not_found(request, "participant fetch")

    def _conference_json(self, t: TransferRun) -> dict[str, Any]:
        return {
            "account_sid": self.account_sid,
            "sid": t.conference_sid,
            "friendly_name": t.id,
            "status": self.conference_status.get(t.id, "init"),
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/"
            f"{t.conference_sid}.json",
        }

    async def _list_conferences(self, request: web.Request) -> web.Response:
        self.requests["conferences list"] += 1
        name, status = request.query.get("FriendlyName"), request.query.get("Status")
        t = self.transfers.get(name or "")
        items = [self._conference_json(t)] if t is not None else []
        items = [c for c in items if status is None or c["status"] == status]
        return web.json_response(
            {
                "conferences": items,
                "end": max(0, len(items) - 1),
                "first_page_uri": request.path_qs,
                "next_page_uri": None,
                "page": 0,
                "page_size": 50,
                "previous_page_uri": None,
                "start": 0,
                "uri": request.path_qs,
            }
        )

    async def _conference(self, request: web.Request) -> web.Response:
        self.requests[f"conference {request.method.lower()}"] += 1
        t = self._transfer(request.match_info["conference"])
        if t is None:
            return self._not_found(request, "conference")
        return web.json_response(self._conference_json(t))

    async def _call(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        if sid not in self.calls:
            return self._not_found(request, "call")
        if request.method == "POST":
            form = await request.post()
            wanted = str(form.get("Status", ""))
            self.requests[f"call update {wanted}"] += 1
            current = self.calls[sid]
            if wanted == "canceled" and current in ("queued", "initiated", "ringing"):
                self.calls[sid] = "canceled"
            elif wanted == "completed" and current == "in-progress":
                self.calls[sid] = "completed"
        else:
            self.requests["call fetch"] += 1
        return web.json_response(
            {"account_sid": self.account_sid, "sid": sid, "status": self.calls[sid]}
        )


def _error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": "", "status": status}


# --- the counting proxy -----------------------------------------------------------------------


class CountingProxy:
    """A TCP proxy in front of Redis that counts round trips: on each connection, a burst of
    client→server bytes that starts after the previous burst was answered is one."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.bursts = 0
        self.last_activity = now()
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def quiet(self, quiet_s: float = QUIET_S, limit_s: float = 2.0) -> None:
        """Return once no byte has crossed for ``quiet_s`` (at most ``limit_s``)."""
        deadline = now() + limit_s
        while now() < deadline:
            idle = now() - self.last_activity
            if idle >= quiet_s:
                return
            await asyncio.sleep(quiet_s - idle)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        answered = [True]

        async def upstream() -> None:
            while chunk := await reader.read(65536):
                if answered[0]:
                    self.bursts += 1
                    answered[0] = False
                self.last_activity = now()
                up_writer.write(chunk)
                await up_writer.drain()

        async def downstream() -> None:
            while chunk := await up_reader.read(65536):
                answered[0] = True
                self.last_activity = now()
                writer.write(chunk)
                await writer.drain()

        try:
            both = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
            _, pending = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            for other in pending:
                other.cancel()
            await asyncio.gather(*both, return_exceptions=True)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()


# --- processes --------------------------------------------------------------------------------


class ServerProcess:
    """A child process with its output in ``log``, optionally pinned to one core."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        *,
        core: int | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.core = core
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = list(self.argv)
        taskset = shutil.which("taskset")
        if self.core is not None and taskset:
            argv = [taskset, "-c", str(self.core), *argv]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env, cwd=ROOT
            )
        if self.core is not None and not taskset:
            os.sched_setaffinity(self.process.pid, {self.core})

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, chars: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def rss_kb(self) -> int | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) if found else None

    def terminate(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def reap(self, deadline: float) -> bool:
        """Wait for the process to exit until ``deadline`` (monotonic); kill it then."""
        if self.process is None:
            return True
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=max(0.0, deadline - now()))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        return True

    async def stop(self, within_s: float = STOP_S) -> None:
        """SIGTERM, then SIGKILL after ``within_s``; the event loop keeps running meanwhile
        (the gateway may still call the REST stub while it shuts down)."""
        self.terminate()
        await asyncio.to_thread(self.reap, now() + within_s)


class Processes:
    """Every process this run started; all stopped at the end, whatever happened."""

    def __init__(self) -> None:
        self.started: list[ServerProcess] = []

    def add(self, process: ServerProcess) -> ServerProcess:
        self.started.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.terminate()
        deadline = now() + STOP_S
        for process in reversed(self.started):
            process.reap(deadline)


async def wait_for(
    ready: Callable[[], Awaitable[bool]], process: ServerProcess, within_s: float = 30
) -> None:
    deadline = now() + within_s
    while True:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited at start:\n{process.tail()}")
        with contextlib.suppress(OSError, aiohttp.ClientError, asyncio.TimeoutError):
            if await ready():
                return
        if now() > deadline:
            raise RuntimeError(f"{process.name} not ready in {within_s} s:\n{process.tail()}")
        await asyncio.sleep(0.05)


def tcp_ready(port: int) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        return True

    return ready


def http_ready(url: str) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as answer,
        ):
            return answer.status == 200

    return ready


def clean_env() -> dict[str, str]:
    """This environment without any GATEWAY_* setting of the developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


# --- the servers started from this file -------------------------------------------------------

NULL_ANSWER = b"HTTP/1.1 204 No Content\r\nServer: null\r\n\r\n"


class _NullProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio's classes.
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(NULL_ANSWER)


async def _serve_until_terminated(start: Callable[[], Awaitable[Any]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await start()
    await stop.wait()


def serve_null(port: int) -> None:
    install_uvloop()

    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            _NullProtocol, "127.0.0.1", port, backlog=1024
        )

    asyncio.run(_serve_until_terminated(start))


BASELINE_REDIS = web.AppKey("redis", Redis)


def serve_baseline(port: int, redis_url: str) -> None:
    """The bare baseline: read the form, one Redis round trip, 204."""

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        app[BASELINE_REDIS] = Redis.from_url(redis_url, socket_timeout=5)
        yield
        await app[BASELINE_REDIS].aclose()

    async def webhook(request: web.Request) -> web.Response:
        await request.post()
        await request.app[BASELINE_REDIS].incr("bench:baseline")
        return web.Response(status=204)

    app = web.Application()
    app.cleanup_ctx.append(redis_ctx)
    app.router.add_post("/{tail:.*}", webhook)
    # The same event loop the gateway serves on (uvloop where installed): the comparison is
    # of the work each does per webhook, not of two event loops.
    install_uvloop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024)


# --- the generator ----------------------------------------------------------------------------


class Player:
    """Plays Twilio against one target (``gateway``, ``baseline`` or ``null``)."""

    def __init__(self, kind: str, pool: HttpPool, signer: Signer, stub: TwilioStub | None) -> None:
        self.kind = kind
        self.pool = pool
        self.signer = signer
        self.stub = stub
        self.records: list[Sent] = []

    async def send(self, t: TransferRun, step: int, due: float, after: float = 0.0) -> Sent:
        """Send ``step`` now; ``due`` is its scheduled time, ``after`` when what it waited on
        (its predecessor's answer, the dial) arrived."""
        ready = max(due, after)
        data = t.requests[step] if t.requests is not None else self.signer.webhook(t, step)
        if self.stub is not None:
            self.stub.reported(t, step)
        sent = now()
        if step == CODE:
            t.code_sent = sent
        status: int | None = None
        body = b""
        error: str | None = None
        try:
            status, body = await self.pool.request(data)
        except TimeoutError:
            error = "no answer in 15 s"
        except OSError as exc:
            error = f"connection: {type(exc).__name__}"
        done = now()
        if status is not None:
            error = self._check(t, step, status, body, done)
        record = Sent(step, due, ready, sent, done, status, error)
        self.records.append(record)
        if self.kind == "gateway":
            t.outcomes[step] = record
        return record

    def _check(
        self, t: TransferRun, step: int, status: int, body: bytes, done: float
    ) -> str | None:
        if not 200 <= status < 300:
            return f"HTTP {status}"
        if self.kind != "gateway":
            return None
        if step == VOICE:
            action = voice_action(body)
            if action is None:
                return f"voice: {twiml_kind(body)}"
            t.code_path = action
        elif step == CODE:
            found = conference_of(body)
            if found is None:
                return f"code: {twiml_kind(body)}"
            name, callback = found
            if name != t.id:
                return "code: conference named for another transfer"
            t.code_answered = done
            t.conference_path = callback or t.conference_path
        return None

    async def await_dial(self, t: TransferRun, stop_at: float | None) -> bool:
        assert self.stub is not None
        limit = DIAL_WAIT_S if stop_at is None else min(DIAL_WAIT_S, stop_at - now())
        create = await self.stub.dialed(t.id, limit)
        if create is None:
            t.stopped = "no Participants create"
            return False
        t.dialed_at = create.arrived
        t.counselor_sid = create.call_sid
        form = create.form
        if form.get("StatusCallback"):
            t.participant_path = public_path(form["StatusCallback"])
        t.label = form.get("Label") or t.label
        t.counselor_to = form.get("To") or t.counselor_to
        t.counselor_from = form.get("From") or t.counselor_from
        return True

    async def drive(
        self, t: TransferRun, due: Sequence[float] | None, stop_at: float | None = None
    ) -> None:
        """The transfer's 12 webhooks in order: at ``due`` times (open loop) or back to back."""
        after = 0.0
        for step in range(len(STEPS)):
            if due is not None:
                await sleep_until(due[step])
            if stop_at is not None and now() > stop_at:
                t.stopped = "phase deadline"
                return
            if step == INITIATED and self.kind == "gateway":
                if not await self.await_dial(t, stop_at):
                    return
                after = max(after, t.dialed_at or 0.0)
            record = await self.send(t, step, due[step] if due is not None else now(), after)
            after = record.done
            if step in (VOICE, CODE) and record.error is not None:
                t.stopped = f"{STEPS[step]} failed"
                return


def wave_width(rate: float) -> int:
    return max(1, round(rate * STEP_GAP_S))


def wave_count(rate: float, seconds: float) -> int:
    return max(1, math.ceil(rate * seconds / (wave_width(rate) * len(STEPS)) - 1e-9))


def schedule(index: int, rate: float, start: float) -> list[float]:
    """The due times of transfer ``index``'s steps: waves of ``wave_width`` transfers, one
    webhook every 1/rate s, one transfer's steps ``STEP_GAP_S`` apart."""
    width = wave_width(rate)
    wave, column = divmod(index, width)
    first = wave * width * len(STEPS) + column
    return [start + (first + step * width) / rate for step in range(len(STEPS))]


async def open_loop(
    player: Player,
    count: int,
    rate: float,
    get: Callable[[int], Awaitable[TransferRun]],
    *,
    stop_at: Callable[[float], float | None] = lambda end: None,
) -> tuple[float, float, list[TransferRun]]:
    """Drive ``count`` transfers at ``rate`` webhooks/s: (start, scheduled end, transfers)."""
    start = now() + 0.2
    end = start + count * len(STEPS) / rate
    limit = stop_at(end)
    runs: list[TransferRun | None] = [None] * count

    async def one(index: int) -> None:
        due = schedule(index, rate, start)
        await sleep_until(due[0] - 0.05)
        t = await get(index)
        runs[index] = t
        await player.drive(t, due, limit)

    await asyncio.gather(*(one(i) for i in range(count)))
    return start, end, [t for t in runs if t is not None]


async def closed_loop(
    player: Player, transfers: Iterator[TransferRun], workers: int, seconds: float
) -> tuple[float, float, list[TransferRun], bool]:
    """``workers`` drive whole transfers back to back for ``seconds`` (each finishes the one in
    hand): (start, end, transfers driven, ran out of transfers)."""
    start = now()
    deadline = start + seconds
    driven: list[TransferRun] = []
    exhausted = False

    async def worker() -> None:
        nonlocal exhausted
        while now() < deadline:
            t = next(transfers, None)
            if t is None:
                exhausted = True
                return
            driven.append(t)
            await player.drive(t, None)

    await asyncio.gather(*(worker() for _ in range(workers)))
    end = deadline if not exhausted else max((r.done for r in player.records), default=deadline)
    return start, min(end, deadline), driven, exhausted


# --- the gateway's API ------------------------------------------------------------------------


class Api:
    """``/v1`` calls with the PSAP key, outside any measured window."""

    def __init__(self, port: int, key: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def aclose(self) -> None:
        await self.session.close()

    async def open_one(self) -> TransferRun:
        body = {
            "psap_id": PSAP,
            "caller_type": "first_person",
            "screening": SAFE,
            "callback_number": "+12065550123",
        }
        async with self.session.post(f"{self.base}/v1/transfers", json=body) as answer:
            opened = await answer.json()
            if answer.status != 201 or opened.get("state") != "awaiting_bridge":
                raise RuntimeError(f"POST /v1/transfers answered {answer.status}: {opened}")
            return TransferRun(str(opened["id"]), str(opened["bridge_code"]))

    async def open(self, count: int, concurrency: int = 16) -> list[TransferRun]:
        results: list[TransferRun] = []
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                results.append(await self.open_one())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results

    async def states(self, ids: Sequence[str], concurrency: int = 32) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        queue = iter(ids)

        async def worker() -> None:
            for transfer_id in queue:
                async with self.session.get(f"{self.base}/v1/transfers/{transfer_id}") as answer:
                    body = await answer.json()
                    found[transfer_id] = (
                        body if answer.status == 200 else {"state": f"HTTP {answer.status}"}
                    )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return found


class OnTheFly:
    """Transfers opened while a long phase runs, a little ahead of their use (the soak)."""

    def __init__(self, api: Api, stub: TwilioStub, ahead: int) -> None:
        self.api = api
        self.stub = stub
        self.ahead = ahead
        self.ready: dict[int, asyncio.Future[TransferRun]] = {}
        self.wanted = 0
        self._wake = asyncio.Event()

    def _future(self, index: int) -> asyncio.Future[TransferRun]:
        if index not in self.ready:
            self.ready[index] = asyncio.get_running_loop().create_future()
        return self.ready[index]

    async def get(self, index: int) -> TransferRun:
        self.wanted = max(self.wanted, index + 1)
        self._wake.set()
        t = await self._future(index)
        del self.ready[index]
        return t

    async def run(self, count: int) -> None:
        async def one(index: int) -> None:
            t = await self.api.open_one()
            self.stub.register(t)
            self._future(index).set_result(t)

        index = 0
        while index < count:
            target = min(count, self.wanted + self.ahead)
            if index >= target:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = range(index, min(target, index + 16))
            await asyncio.gather(*(one(i) for i in batch))
            index = batch.stop


# --- checking the transfers -------------------------------------------------------------------

MEANINGFUL = (CODE, IN_PROGRESS, JOIN_COUNSELOR, LEAVE_PSAP, CONF_END)
"""The steps that move a transfer: the code bridges it, an answer connects it, the PSAP leg
leaving (or the conference ending) completes it, or abandons it while it rings."""
CALLBACKS = frozenset(MEANINGFUL) - {CODE}


def _simulate(applied: set[int]) -> str:
    state = "awaiting_bridge"
    for step in sorted(applied):
        if step == CODE and state == "awaiting_bridge":
            state = "ringing"
        elif step in (IN_PROGRESS, JOIN_COUNSELOR) and state == "ringing":
            state = "connected"
        elif step in (LEAVE_PSAP, CONF_END):
            state = {"ringing": "abandoned", "connected": "completed"}.get(state, state)
    return state


def possible_states(t: TransferRun, doubt: frozenset[int] = frozenset()) -> set[str]:
    """States the gateway may show once ``t``'s webhooks were handled: accepted ones applied
    (unless in ``doubt``), failed ones (refused, unanswered, unexpected TwiML) maybe, unsent
    ones not."""
    sent = [(s, r) for s in MEANINGFUL if (r := t.outcomes[s]) is not None]
    sure = {s for s, r in sent if r.error is None and s not in doubt}
    unsure = [s for s, _ in sent if s not in sure]
    return {
        _simulate(sure | {s for s, on in zip(unsure, combo, strict=True) if on})
        for combo in itertools.product((False, True), repeat=len(unsure))
    }


@dataclass
class StateCheck:
    driven: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    as_implied: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    callbacks_not_applied: int = 0
    """Transfers in a state explained only by a 2xx-answered status callback not applied."""
    code_not_applied: int = 0
    """... only by a code answered with the conference TwiML and not bridged."""
    moved_on: int = 0
    """Transfers the gateway moved to a later destination by itself (its ring timer)."""
    unexplained: int = 0
    bridged_not_dialed: int = 0
    dialed_twice: int = 0
    stopped: dict[str, int] = field(default_factory=dict)

    @property
    def all_completed(self) -> bool:
        return self.driven > 0 and self.by_state.get("completed", 0) == self.driven


async def check_states(api: Api, stub: TwilioStub, transfers: Sequence[TransferRun]) -> StateCheck:
    seen = await api.states([t.id for t in transfers])
    check = StateCheck(driven=len(transfers))
    by_state: collections.Counter[str] = collections.Counter()
    stopped: collections.Counter[str] = collections.Counter()
    for t in transfers:
        record = seen.get(t.id, {})
        state = str(record.get("state", "missing"))
        by_state[state] += 1
        if t.stopped:
            stopped[t.stopped] += 1
        creates = len(stub.creates.get(t.id, []))
        if state not in ("awaiting_bridge", "expired") and creates == 0:
            check.bridged_not_dialed += 1
        if creates > 1:
            check.dialed_twice += 1
        possible = possible_states(t)
        attempts = record.get("attempts") or []
        if state in possible and len(attempts) <= 1:
            check.as_implied += 1
            continue
        if len(attempts) > 1:
            check.moved_on += 1
        elif state in possible_states(t, CALLBACKS):
            check.callbacks_not_applied += 1
        elif state in possible_states(t, frozenset(MEANINGFUL)):
            check.code_not_applied += 1
        else:
            check.unexplained += 1
        if len(check.mismatches) < 200:
            check.mismatches.append(
                {
                    "id": t.id,
                    "state": state,
                    "expected": sorted(possible),
                    "attempts": [a.get("outcome") for a in attempts],
                    "steps": {
                        STEPS[i]: (r.status if r.error is None else f"{r.status}: {r.error}")
                        for i, r in enumerate(t.outcomes)
                        if r is not None
                    },
                    "stopped": t.stopped,
                }
            )
    check.by_state = dict(by_state)
    check.stopped = dict(stopped)
    return check


# --- phases and figures -----------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    target: str
    mode: str
    offered: float | None
    seconds: float
    webhooks: int
    ok: int
    achieved: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: dict[str, int]
    round_trips: float | None = None
    vs_baseline: float | None = None
    lag_p99_ms: float | None = None
    generator_cpu_s: float = 0.0
    dial_p50_ms: float | None = None
    dial_p99_ms: float | None = None
    dial_max_ms: float | None = None
    transfers: int = 0
    drain_s: float | None = None
    step_p99_ms: dict[str, float | None] = field(default_factory=dict)
    """p99 latency of each step of a transfer (which webhook is slow)."""
    """Open loop: the last answer came this long after the schedule's end."""
    states: StateCheck | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def summarize(
    name: str,
    target: str,
    mode: str,
    records: Sequence[Sent],
    start: float,
    end: float,
    *,
    offered: float | None = None,
    transfers: Sequence[TransferRun] = (),
    cpu_s: float = 0.0,
) -> Phase:
    ok = [r for r in records if r.error is None]
    if mode == "open":
        latencies = [r.done - r.due for r in records if r.status is not None]
        finish = max((r.done for r in ok), default=end)
        achieved = len(ok) / max(1e-9, finish - start)
        lag = pct([r.sent - r.ready for r in records], 99)
        drain: float | None = finish - end
    else:
        latencies = [r.done - r.sent for r in records if r.status is not None]
        achieved = sum(1 for r in ok if r.done <= end) / max(1e-9, end - start)
        lag = drain = None
    errors = collections.Counter(
        f"{STEPS[r.step]}: {r.error}" for r in records if r.error is not None
    )
    dials = [t.dialed_at - t.code_answered for t in transfers if t.dialed_at and t.code_answered]
    by_step: dict[str, list[float]] = collections.defaultdict(list)
    for r in records:
        if r.status is not None:
            by_step[STEPS[r.step]].append((r.done - r.due) if mode == "open" else (r.done - r.sent))
    step_p99 = {step: ms(pct(values, 99)) for step, values in by_step.items()}
    return Phase(
        name=name,
        target=target,
        mode=mode,
        offered=offered,
        seconds=end - start,
        webhooks=len(records),
        ok=len(ok),
        achieved=achieved,
        p50_ms=ms(pct(latencies, 50)),
        p99_ms=ms(pct(latencies, 99)),
        max_ms=ms(max(latencies, default=None) if latencies else None),
        errors=dict(errors),
        lag_p99_ms=ms(lag),
        generator_cpu_s=cpu_s,
        dial_p50_ms=ms(pct(dials, 50)),
        dial_p99_ms=ms(pct(dials, 99)),
        dial_max_ms=ms(max(dials) if dials else None),
        transfers=len(transfers),
        drain_s=drain,
        step_p99_ms=step_p99,
    )


def answered_in(records: Sequence[Sent], first: tuple[float, int], last: tuple[float, int]) -> int:
    """Webhooks answered between two samples (the work Redis did meanwhile was theirs)."""
    return sum(1 for r in records if r.status is not None and first[0] <= r.done <= last[0])


class ReadsCounter:
    """Redis's ``total_reads_processed``: one per request burst a client sends."""

    def __init__(self, admin: Redis) -> None:
        self.admin = admin
        self.background_per_s = 0.0

    async def value(self) -> int:
        stats = await self.admin.info("stats")
        return int(stats["total_reads_processed"])

    async def at(self, moment: float) -> tuple[float, int]:
        await sleep_until(moment)
        return now(), await self.value()

    async def measure_background(self, seconds: float) -> None:
        t0, r0 = now(), await self.value()
        await asyncio.sleep(seconds)
        t1, r1 = now(), await self.value()
        self.background_per_s = max(0.0, (r1 - r0 - 1) / (t1 - t0))

    def per_webhook(
        self, first: tuple[float, int], last: tuple[float, int], webhooks: int
    ) -> float | None:
        if webhooks <= 0:
            return None
        reads = last[1] - first[1] - 1 - self.background_per_s * (last[0] - first[0])
        return max(0.0, reads) / webhooks

    async def settle(self, limit_s: float = 15.0, window_s: float = 0.5) -> None:
        """Wait until the server is back to its background rate (work a phase left behind)."""
        deadline = now() + limit_s
        previous = await self.value()
        while now() < deadline:
            await asyncio.sleep(window_s)
            current = await self.value()
            if current - previous - 1 <= self.background_per_s * window_s + 3:
                return
            previous = current


@dataclass(frozen=True)
class Plan:
    """How long and how hard each phase runs (seconds are rounded up to whole waves)."""

    name: str
    rates: tuple[int, ...]  # the fixed open-loop rates, baseline and gateway
    fixed_s: float  # each fixed-rate phase
    max_s: float  # each closed-loop maximum
    workers: int  # closed-loop concurrency of the baseline and the null server
    gateway_workers: tuple[int, ...]  # the gateway's closed loops; its maximum is the best
    ceiling_s: float  # the null server (the generator's ceiling)
    warmup_rate: int  # one wave at this rate before the gateway is measured (0: none)
    overload_s: float  # at twice the gateway's maximum (0: no overload phases)
    normal_s: float  # at half the maximum, right before and right after the overload
    rt_rate: int  # whole transfers through the counting proxy
    rt_s: float
    rt_step_transfers: int  # transfers driven one step at a time through the proxy
    background_s: float  # idle Redis traffic measured this long
    tail_s: float  # see TAIL_S (shorter only in the smoke, whose figures are not measurements)
    soak_s: float  # with --soak
    soak_rate: int
    pin: bool  # pin to cores when there are two


PLANS = {
    "quick": Plan(
        name="quick",
        rates=(250, 500, 1000),
        fixed_s=2.4,
        max_s=3.0,
        workers=64,
        gateway_workers=(16, 64),
        ceiling_s=1.5,
        warmup_rate=100,
        overload_s=10.0,
        normal_s=2.4,
        rt_rate=100,
        rt_s=2.4,
        rt_step_transfers=3,
        background_s=1.5,
        tail_s=TAIL_S,
        soak_s=300.0,
        soak_rate=500,
        pin=True,
    ),
    "full": Plan(
        name="full",
        rates=(250, 500, 1000),
        fixed_s=12.0,
        max_s=10.0,
        workers=64,
        gateway_workers=(8, 16, 32, 64),
        ceiling_s=5.0,
        warmup_rate=100,
        overload_s=10.0,
        normal_s=6.0,
        rt_rate=200,
        rt_s=6.0,
        rt_step_transfers=20,
        background_s=3.0,
        tail_s=TAIL_S,
        soak_s=300.0,
        soak_rate=500,
        pin=True,
    ),
    "smoke": Plan(
        name="smoke",
        rates=(50,),
        fixed_s=1.2,
        max_s=1.0,
        workers=8,
        gateway_workers=(4,),
        ceiling_s=0.5,
        warmup_rate=0,
        overload_s=0.0,
        normal_s=1.2,
        rt_rate=50,
        rt_s=1.2,
        rt_step_transfers=1,
        background_s=0.5,
        tail_s=1.0,
        soak_s=30.0,
        soak_rate=100,
        pin=False,
    ),
}


@dataclass
class Report:
    plan: str
    pinning: str
    phases: list[Phase] = field(default_factory=list)
    round_trips: dict[str, Any] = field(default_factory=dict)
    overload: dict[str, Any] = field(default_factory=dict)
    soak: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)
    stub_requests: dict[str, int] = field(default_factory=dict)
    logs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def best(self, target: str) -> Phase | None:
        """The target's maximum: its best closed loop."""
        closed = [p for p in self.phases if p.target == target and p.mode == "closed"]
        return max(closed, key=lambda p: p.achieved, default=None)


class Bench:
    """One run: the processes, the stub, the counters, and the phases in order."""

    def __init__(
        self, plan: Plan, procs: Processes, workdir: Path, logs: Path, cores: tuple[int, int] | None
    ):
        self.plan = plan
        self.procs = procs
        self.workdir = workdir
        self.logs = logs
        self.server_core = cores[0] if cores else None
        self.load_core = cores[1] if cores else None
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.stub = TwilioStub(self.account_sid, self.auth_token)
        self.redis_port = free_port()
        self.report = Report(
            plan.name,
            f"gateway, baseline and null server on core {cores[0]}; redis-server, the load "
            f"generator, the REST stub and the counting proxy on core {cores[1]}"
            if cores
            else "not pinned",
        )
        self.gateway_logs: list[Path] = []
        self.key = ""
        self.config_dir = workdir / "config"
        self._mark = now()

    def mark(self, part: str) -> None:
        """Record how long ``part`` took (since the previous mark)."""
        moment = now()
        self.report.timings[part] = moment - self._mark
        self._mark = moment

    # -- parts

    async def start_redis(self) -> Redis:
        argv = [
            find_redis_server(),
            "--port", str(self.redis_port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--loglevel", "warning",
        ]  # fmt: skip
        redis = self.procs.add(
            ServerProcess("redis-server", argv, self.logs / "redis.log", core=self.load_core)
        )
        admin = Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=10)

        async def ping() -> bool:
            return bool(await admin.ping())

        await wait_for(ping, redis)
        return admin

    def prepare_config(self) -> None:
        shutil.copytree(
            ROOT / "config", self.config_dir, ignore=shutil.ignore_patterns("api_keys.yaml")
        )
        made = subprocess.run(
            [sys.executable, "-m", "gateway", "keys", "new", "--org", PSAP, "--role", "psap",
             "--config-dir", str(self.config_dir)],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        self.key = made.stdout.strip().splitlines()[-1]

    async def start_gateway(self, name: str, redis_url: str) -> tuple[ServerProcess, int]:
        port = free_port()
        env = clean_env() | {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_CONFIG_DIR": str(self.config_dir),
            "GATEWAY_STATE_DIR": str(self.workdir / "state"),
            "GATEWAY_PUBLIC_BASE_URL": PUBLIC,
            "GATEWAY_SANDBOX": "false",
            "GATEWAY_TWILIO_ACCOUNT_SID": self.account_sid,
            "GATEWAY_TWILIO_AUTH_TOKEN": self.auth_token,
            "GATEWAY_TWILIO_API_BASE_URL": f"http://127.0.0.1:{self.stub.port}",
            "GATEWAY_BRIDGE_NUMBER": BRIDGE,
        }
        log = self.logs / f"{name}.stderr.log"
        log.unlink(missing_ok=True)
        self.gateway_logs.append(log)
        process = self.procs.add(
            ServerProcess(
                name,
                [sys.executable, "-m", "gateway", "serve"],
                log,
                core=self.server_core,
                env=env,
            )
        )
        await wait_for(http_ready(f"http://127.0.0.1:{port}/readyz"), process)
        return process, port

    async def start_helper(self, name: str, args: list[str]) -> tuple[ServerProcess, int]:
        port = free_port()
        process = self.procs.add(
            ServerProcess(
                name,
                [sys.executable, str(SELF), *args, "--port", str(port)],
                self.logs / f"{name}.log",
                core=self.server_core,
                env=clean_env(),
            )
        )
        await wait_for(tcp_ready(port), process)
        return process, port

    def synthetic(self, count: int, signer: Signer) -> list[TransferRun]:
        """Transfers for the baseline and the null server: every request built ahead."""
        runs = []
        for i in range(count):
            t = TransferRun(f"tr_{i:024x}", f"{i % 1_000_000:06d}")
            t.requests = [signer.webhook(t, step) for step in range(len(STEPS))]
            runs.append(t)
        return runs

    # -- phase runners

    async def static_phases(self, target: str, port: int, reads: ReadsCounter) -> None:
        """The null server or the baseline: closed loop (the maximum), then the fixed rates."""
        signer = Signer(self.account_sid, self.auth_token, port)
        runs = self.synthetic(256, signer)
        plan = self.plan
        label = "null server" if target == "null" else "baseline"
        reads.background_per_s = 0.0  # nothing but this phase's requests touches Redis
        seconds = plan.ceiling_s if target == "null" else plan.max_s
        player = Player(target, HttpPool(port), signer, None)
        await player.pool.warm(plan.workers)
        cpu0 = time.process_time()
        sampler = asyncio.ensure_future(reads.at(now() + min(2.0, seconds / 2)))
        start, end, _, _ = await closed_loop(player, itertools.cycle(runs), plan.workers, seconds)
        first, last = await sampler, (now(), await reads.value())
        cpu = time.process_time() - cpu0
        name = f"{label} max, {plan.workers} workers"
        phase = summarize(name, target, "closed", player.records, start, end, cpu_s=cpu)
        if target == "baseline":
            phase.round_trips = reads.per_webhook(
                first, last, answered_in(player.records, first, last)
            )
        player.pool.close()
        self.report.phases.append(phase)
        if target == "null":
            return
        for rate in plan.rates:
            self.report.phases.append(
                await self.fixed_static(label, target, port, signer, runs, rate, reads)
            )

    async def fixed_static(
        self,
        label: str,
        target: str,
        port: int,
        signer: Signer,
        runs: list[TransferRun],
        rate: int,
        reads: ReadsCounter,
    ) -> Phase:
        player = Player(target, HttpPool(port), signer, None)
        await player.pool.warm(min(wave_width(rate), 128))
        count = wave_count(rate, self.plan.fixed_s) * wave_width(rate)
        cpu0 = time.process_time()
        window_from = now() + 0.2 + min(2.4, count * len(STEPS) / rate / 2)
        sampler = asyncio.ensure_future(reads.at(window_from))

        async def get(i: int) -> TransferRun:
            return runs[i % len(runs)]

        start, end, _ = await open_loop(player, count, rate, get)
        first = await sampler
        last = await reads.at(end)
        phase = summarize(
            f"{label} {rate}/s",
            target,
            "open",
            player.records,
            start,
            end,
            offered=rate,
            cpu_s=time.process_time() - cpu0,
        )
        phase.round_trips = reads.per_webhook(first, last, answered_in(player.records, first, last))
        player.pool.close()
        return phase

    async def gateway_open(
        self,
        name: str,
        port: int,
        api: Api,
        reads: ReadsCounter,
        rate: float,
        seconds: float,
        *,
        grace_s: float | None = None,
        measure: bool = True,
    ) -> tuple[Phase, list[TransferRun]]:
        signer = Signer(self.account_sid, self.auth_token, port)
        count = wave_count(rate, seconds) * wave_width(rate)
        transfers = await api.open(count)
        for t in transfers:
            self.stub.register(t)
        player = Player("gateway", HttpPool(port), signer, self.stub)
        await player.pool.warm(min(wave_width(rate), 128))
        cpu0 = time.process_time()
        length = count * len(STEPS) / rate
        window_from = now() + 0.2 + min(2.4, length / 2)
        sampler = asyncio.ensure_future(reads.at(window_from))

        async def get(i: int) -> TransferRun:
            return transfers[i]

        start, end, runs = await open_loop(
            player,
            count,
            rate,
            get,
            stop_at=(lambda e: e + grace_s) if grace_s is not None else (lambda e: None),
        )
        first = await sampler
        last = await reads.at(end)
        cpu = time.process_time() - cpu0
        phase = summarize(
            name,
            "gateway",
            "open",
            player.records,
            start,
            end,
            offered=rate,
            transfers=runs,
            cpu_s=cpu,
        )
        phase.round_trips = reads.per_webhook(first, last, answered_in(player.records, first, last))
        if player.pool.waited:
            phase.notes.append(
                f"{player.pool.waited} requests waited for one of the generator's "
                f"{player.pool.limit} connections (that wait counts in their latency)"
            )
        player.pool.close()
        if measure:
            await self.settle_if_behind(phase, reads)
            phase.states = await check_states(api, self.stub, runs)
        return phase, runs

    @staticmethod
    async def settle_if_behind(phase: Phase, reads: ReadsCounter) -> None:
        """A phase with errors or a backlog may have left work in the gateway (requests given
        up on, retries): let it finish before the transfers are read."""
        if phase.errors or (phase.drain_s or 0.0) > 1.0 or phase.mode == "closed":
            await reads.settle()

    async def gateway_max(self, port: int, api: Api, reads: ReadsCounter, workers: int) -> Phase:
        """Closed loop: ``workers`` drive whole transfers back to back for ``max_s``."""
        plan = self.plan
        signer = Signer(self.account_sid, self.auth_token, port)
        transfers = await api.open(math.ceil(plan.max_s * CLOSED_LOOP_POOL_PER_S / len(STEPS)))
        for t in transfers:
            self.stub.register(t)
        player = Player("gateway", HttpPool(port), signer, self.stub)
        await player.pool.warm(workers)
        cpu0 = time.process_time()
        sampler = asyncio.ensure_future(reads.at(now() + min(2.0, plan.max_s / 2)))
        start, end, driven, exhausted = await closed_loop(
            player, iter(transfers), workers, plan.max_s
        )
        first = await sampler
        last = (now(), await reads.value())
        phase = summarize(
            f"gateway max, {workers} workers",
            "gateway",
            "closed",
            player.records,
            start,
            end,
            transfers=driven,
            cpu_s=time.process_time() - cpu0,
        )
        phase.round_trips = reads.per_webhook(first, last, answered_in(player.records, first, last))
        if exhausted:
            phase.notes.append(f"ran out of its {len(transfers)} opened transfers")
        player.pool.close()
        await self.settle_if_behind(phase, reads)
        phase.states = await check_states(api, self.stub, driven)
        return phase

    async def gateway_phases(self, admin: Redis) -> None:
        plan = self.plan
        reads = ReadsCounter(admin)
        gateway, port = await self.start_gateway("gateway", f"redis://127.0.0.1:{self.redis_port}")
        api = Api(port, self.key)
        try:
            # idle first (after its start-up reconciliation), then one wave not measured
            await reads.settle()
            await reads.measure_background(plan.background_s)
            self.report.generator["gateway_background_reads_per_s"] = reads.background_per_s
            if plan.warmup_rate:
                await self.gateway_open(
                    "warm-up", port, api, reads, plan.warmup_rate, 1.2, measure=False
                )
            self.mark("gateway start and warm-up")
            tops = []
            for workers in plan.gateway_workers:
                tops.append(await self.gateway_max(port, api, reads, workers))
                self.report.phases.append(tops[-1])
                self.mark(f"gateway max, {workers} workers")
            top = max(tops, key=lambda p: p.achieved)
            for rate in plan.rates:
                phase, _ = await self.gateway_open(
                    f"gateway {rate}/s", port, api, reads, rate, plan.fixed_s
                )
                self.report.phases.append(phase)
                self.mark(f"gateway {rate}/s")
            if plan.overload_s:
                await self.overload(port, api, reads, top.achieved, gateway)
        finally:
            await api.aclose()
            await gateway.stop()

    async def overload(
        self, port: int, api: Api, reads: ReadsCounter, maximum: float, gateway: ServerProcess
    ) -> None:
        """Half the maximum (normal service), twice the maximum for ``overload_s``, then half
        the maximum again once Redis is back to idle: does the process serve as before?"""
        plan = self.plan
        normal_rate = max(10.0, round(maximum / 20) * 10)
        rate = max(2 * maximum, 24.0)
        before, _ = await self.gateway_open(
            f"before overload {normal_rate:.0f}/s", port, api, reads, normal_rate, plan.normal_s
        )
        self.report.phases.append(before)
        self.mark("before overload")
        phase, runs = await self.gateway_open(
            "overload 2x max", port, api, reads, rate, plan.overload_s, grace_s=OVERLOAD_GRACE_S
        )
        self.report.phases.append(phase)
        self.mark("overload")
        records = [r for t in runs for r in t.outcomes if r is not None]
        callbacks = [r for r in records if r.step >= JOIN_PSAP]
        voices = [r for r in records if r.step == VOICE]
        refused = [r.done - r.sent for r in voices if r.status is not None and r.status >= 300]
        answered = [r.done - r.sent for r in voices if r.status is not None and r.status < 300]
        after, _ = await self.gateway_open(
            f"after overload {normal_rate:.0f}/s", port, api, reads, normal_rate, plan.normal_s
        )
        self.report.phases.append(after)
        self.mark("after overload")
        states = phase.states or StateCheck()
        self.report.overload = {
            "rate": rate,
            "seconds": phase.seconds,
            "status_callbacks_sent": len(callbacks),
            "status_callbacks_2xx": sum(
                1 for r in callbacks if r.status is not None and 200 <= r.status < 300
            ),
            "status_callbacks_2xx_not_applied": states.callbacks_not_applied,
            "voice_sent": len(voices),
            "voice_refused": len(refused),
            "voice_refused_max_answer_ms": ms(max(refused) if refused else None),
            "voice_unanswered": sum(1 for r in voices if r.status is None),
            "voice_2xx_p99_answer_ms": ms(pct(answered, 99)),
            "voice_2xx_max_answer_ms": ms(max(answered) if answered else None),
            "drained_s": phase.drain_s,
            "normal_rate": normal_rate,
            "before_p99_ms": before.p99_ms,
            "before_errors": before.error_count,
            "after_p99_ms": after.p99_ms,
            "after_errors": after.error_count,
            "after_all_completed": bool(after.states and after.states.all_completed),
            "gateway_alive_after": gateway.alive(),
        }

    async def round_trip_phase(self, admin: Redis) -> None:
        """A second gateway process, its Redis connections through the counting proxy."""
        plan = self.plan
        await admin.flushall()
        proxy = CountingProxy(self.redis_port)
        await proxy.start()
        reads = ReadsCounter(admin)
        gateway, port = await self.start_gateway("gateway-counted", proxy.url)
        api = Api(port, self.key)
        signer = Signer(self.account_sid, self.auth_token, port)
        try:
            # warm up (scripts loaded, connections opened), then let its timers run out
            warm = await api.open(min(3, plan.rt_step_transfers))
            player = Player("gateway", HttpPool(port), signer, self.stub)
            for t in warm:
                self.stub.register(t)
                await player.drive(t, None)
            await asyncio.sleep(plan.tail_s)
            b0, r0, t0 = proxy.bursts, await reads.value(), now()
            await asyncio.sleep(max(1.0, plan.background_s))
            b1, r1, t1 = proxy.bursts, await reads.value(), now()
            background = (b1 - b0) / (t1 - t0)
            reads.background_per_s = (r1 - r0 - 1) / (t1 - t0)

            # per step, one transfer at a time
            transfers = await api.open(plan.rt_step_transfers)
            per_step: dict[int, list[int]] = collections.defaultdict(list)
            code_dial: list[int] = []  # the code step's dial, counted apart from the webhook
            for t in transfers:
                self.stub.register(t)
                for step in range(len(STEPS)):
                    if step == INITIATED and not await player.await_dial(t, None):
                        break
                    before = proxy.bursts
                    record = await player.send(t, step, now())
                    answered = proxy.bursts
                    if step == CODE and record.error is None:
                        await self.stub.dialed(t.id, 5.0)
                    await proxy.quiet()
                    if step == CODE:
                        # The webhook's own calls are made before it answers; the dial it
                        # starts once its TwiML is out is counted apart.
                        per_step[step].append(answered - before)
                        code_dial.append(proxy.bursts - answered)
                    else:
                        per_step[step].append(proxy.bursts - before)
                    if step in (VOICE, CODE) and record.error is not None:
                        break
            steps_check = await check_states(api, self.stub, transfers)
            player.pool.close()

            # whole transfers, open loop at a moderate rate
            count = wave_count(plan.rt_rate, plan.rt_s) * wave_width(plan.rt_rate)
            moderate = await api.open(count)
            for t in moderate:
                self.stub.register(t)
            player = Player("gateway", HttpPool(port), signer, self.stub)
            await player.pool.warm(wave_width(plan.rt_rate))
            b0, r0, t0 = proxy.bursts, await reads.value(), now()

            async def get(i: int) -> TransferRun:
                return moderate[i]

            start, end, runs = await open_loop(player, count, plan.rt_rate, get)
            await sleep_until(max(r.done for r in player.records) + plan.tail_s)
            b1, r1, t1 = proxy.bursts, await reads.value(), now()
            webhooks = len(player.records)
            proxy_rt = max(0.0, b1 - b0 - background * (t1 - t0)) / webhooks
            reads_rt = max(0.0, r1 - r0 - 1 - reads.background_per_s * (t1 - t0)) / webhooks
            name = f"gateway via counting proxy {plan.rt_rate}/s"
            phase = summarize(
                name, "gateway", "open", player.records, start, end, offered=plan.rt_rate,
                transfers=runs,
            )  # fmt: skip
            phase.round_trips = proxy_rt
            phase.notes.append(f"Redis reads_processed count: {reads_rt:.2f}")
            player.pool.close()
            phase.states = await check_states(api, self.stub, runs)
            self.report.phases.append(phase)
            medians = {STEPS[s]: statistics.median(v) for s, v in sorted(per_step.items())}
            self.report.round_trips = {
                "whole_transfer_per_webhook": proxy_rt,
                "whole_transfer_per_webhook_redis_reads": reads_rt,
                "background_per_s": background,
                "per_step_median": medians,
                "per_step_all": {STEPS[s]: v for s, v in sorted(per_step.items())},
                "later_per_transfer": proxy_rt * len(STEPS)
                - sum(medians.values())
                - (statistics.median(code_dial) if code_dial else 0),
                "code_step": medians.get("code"),
                "code_step_dial": statistics.median(code_dial) if code_dial else None,
                "step_transfers": len(transfers),
                "step_transfers_completed": steps_check.by_state.get("completed", 0),
            }
        finally:
            await api.aclose()
            await gateway.stop()
            await proxy.aclose()

    async def soak_phase(self, admin: Redis) -> None:
        plan = self.plan
        await admin.flushall()
        reads = ReadsCounter(admin)
        gateway, port = await self.start_gateway(
            "gateway-soak", f"redis://127.0.0.1:{self.redis_port}"
        )
        api = Api(port, self.key)
        try:
            rate = plan.soak_rate
            count = wave_count(rate, plan.soak_s) * wave_width(rate)
            opener = OnTheFly(api, self.stub, ahead=4 * wave_width(rate))
            signer = Signer(self.account_sid, self.auth_token, port)
            player = Player("gateway", HttpPool(port), signer, self.stub)
            samples: list[tuple[float, int]] = []
            t0 = now()

            async def sample() -> None:
                while True:
                    rss = gateway.rss_kb()
                    if rss is not None:
                        samples.append((now() - t0, rss))
                    await asyncio.sleep(5.0)

            await reads.measure_background(plan.background_s)
            sampler = asyncio.ensure_future(sample())
            opening = asyncio.ensure_future(opener.run(count))
            window = asyncio.ensure_future(reads.at(now() + 0.2 + min(30.0, plan.soak_s / 10)))
            try:
                start, end, runs = await open_loop(player, count, rate, opener.get)
                first, last = await window, await reads.at(end)
            finally:
                for task in (sampler, opening, window):
                    task.cancel()
                await asyncio.gather(sampler, opening, window, return_exceptions=True)
            phase = summarize(
                f"soak {rate}/s, {plan.soak_s:.0f} s",
                "gateway",
                "open",
                player.records,
                start,
                end,
                offered=rate,
                transfers=runs,
            )
            phase.round_trips = reads.per_webhook(
                first, last, answered_in(player.records, first, last)
            )
            phase.notes.append("transfers opened alongside: their Redis round trips count here too")
            player.pool.close()
            await reads.settle()
            phase.states = await check_states(api, self.stub, runs)
            self.report.phases.append(phase)
            warm = [kb for at, kb in samples if at >= min(30.0, plan.soak_s / 10)]
            reference = warm[0] if warm else None
            self.report.soak = {
                "samples_s_kb": samples,
                "reference_kb": reference,
                "last_kb": warm[-1] if warm else None,
                "min_kb": min(warm) if warm else None,
                "max_kb": max(warm) if warm else None,
                "max_deviation": max(abs(kb - reference) / reference for kb in warm)
                if reference
                else None,
            }
        finally:
            await api.aclose()
            await gateway.stop()

    async def run(self, soak: bool) -> Report:
        started = self._mark = now()
        admin = await self.start_redis()
        await self.stub.start()
        try:
            self.prepare_config()
            reads = ReadsCounter(admin)
            self.mark("setup")
            null, port = await self.start_helper("null-server", ["--serve-null"])
            await self.static_phases("null", port, reads)
            await null.stop()
            self.mark("null server")
            redis_url = f"redis://127.0.0.1:{self.redis_port}"
            base, port = await self.start_helper(
                "baseline", ["--serve-baseline", "--redis-url", redis_url]
            )
            await self.static_phases("baseline", port, reads)
            await base.stop()
            self.mark("baseline")
            await self.gateway_phases(admin)
            await self.round_trip_phase(admin)
            self.mark("round trips")
            if soak:
                await self.soak_phase(admin)
                self.mark("soak")
        finally:
            await self.stub.aclose()
            await admin.aclose()
        self.finish(started)
        return self.report

    def finish(self, started: float) -> None:
        report = self.report
        for phase in report.phases:
            if phase.target != "gateway" or not phase.name.startswith("gateway "):
                continue
            if phase.mode == "closed":
                base = report.best("baseline")
            else:
                base = report.phase("baseline " + phase.name.removeprefix("gateway "))
            if base is not None and base.achieved:
                phase.vs_baseline = phase.achieved / base.achieved
        null = next((p for p in report.phases if p.target == "null"), None)
        if null is not None:
            report.generator.update(
                {
                    "null_server_max": null.achieved,
                    "requests_per_cpu_s": null.ok / null.generator_cpu_s
                    if null.generator_cpu_s
                    else None,
                }
            )
        lags = [p.lag_p99_ms for p in report.phases if p.lag_p99_ms is not None]
        report.generator["worst_lag_p99_ms"] = max(lags) if lags else None
        report.stub_requests = dict(self.stub.requests)
        report.logs = {log.name: summarize_log(log) for log in self.gateway_logs if log.exists()}
        report.seconds = now() - started


# --- the gateway's stderr ---------------------------------------------------------------------

_ACCESS_STATUS = re.compile(r'" (\d{3}) ')


def summarize_log(path: Path) -> dict[str, Any]:
    levels: collections.Counter[str] = collections.Counter()
    messages: collections.Counter[str] = collections.Counter()
    tracebacks: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    raw: list[str] = []
    with path.open(errors="replace") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                if line.strip():
                    levels["not json"] += 1
                    if len(raw) < 10:
                        raw.append(line.rstrip()[:200])
                continue
            level = str(entry.get("level", "?"))
            levels[level] += 1
            if entry.get("logger") == "aiohttp.access":
                status = entry.get("status")
                found = _ACCESS_STATUS.search(str(entry.get("msg", "")))
                if status is not None:
                    statuses[f"{str(status)[0]}xx"] += 1
                elif found:
                    statuses[found.group(1)[0] + "xx"] += 1
            if level in ("warning", "error", "critical"):
                detail = entry.get("error") or entry.get("path") or ""
                messages[f"{level}: {entry.get('msg')}" + (f" ({detail})" if detail else "")] += 1
            if "exc" in entry:
                tracebacks[str(entry["exc"]).strip().splitlines()[-1][:160]] += 1
    return {
        "levels": dict(levels),
        "warnings_and_errors": dict(messages.most_common(15)),
        "tracebacks": dict(tracebacks.most_common(10)),
        "access_statuses": dict(statuses),
        "not_json": raw,
    }


# --- output -----------------------------------------------------------------------------------

COLUMNS = (
    "phase",
    "offered /s",
    "achieved /s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "Redis RT / webhook",
    "vs baseline",
)


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "—" if value is None else format(value, fmt)


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def table(report: Report) -> str:
    rows = [COLUMNS, ("---", *("---:" for _ in COLUMNS[1:]))]
    for p in report.phases:
        rows.append(
            (
                p.name,
                "max" if p.mode == "closed" else _num(p.offered),
                _num(p.achieved),
                _ms(p.p50_ms),
                _ms(p.p99_ms),
                _ms(p.max_ms),
                str(p.error_count),
                _num(p.round_trips, ".2f"),
                "—" if p.vs_baseline is None else f"{p.vs_baseline:.0%}",
            )
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _phase_notes(report: Report) -> list[str]:
    out = []
    for p in report.phases:
        if p.errors:
            worst = sorted(p.errors.items(), key=lambda kv: -kv[1])[:6]
            out.append(f"- {p.name} errors: " + ", ".join(f"{k} x{v}" for k, v in worst))
        if p.notes:
            out.append(f"- {p.name}: {'; '.join(p.notes)}")
        if p.target == "gateway" and p.step_p99_ms:
            steps = ", ".join(f"{k} {_ms(v)}" for k, v in p.step_p99_ms.items())
            out.append(f"- {p.name}, p99 ms by step: {steps}")
    return out


def _round_trips(report: Report) -> list[str]:
    rt = report.round_trips
    if not rt:
        return []
    steps = ", ".join(f"{k} {v:g}" for k, v in rt["per_step_median"].items())
    return [
        "",
        "## Redis round trips (counting proxy; background subtracted)",
        f"- whole transfer: {rt['whole_transfer_per_webhook']:.2f} per webhook (Redis's own "
        f"reads_processed: {rt['whole_transfer_per_webhook_redis_reads']:.2f}); background "
        f"{rt['background_per_s']:.1f}/s",
        f"- per step, median of {rt['step_transfers']} transfers driven one step at a time: "
        + steps,
        f"- the dial the code step starts (claim, record; after its TwiML is out): "
        f"{rt.get('code_step_dial')}",
        f"- later (a whole transfer's count less its steps' own: timers it armed): "
        f"{rt['later_per_transfer']:.1f} per transfer",
    ]


def _dials(report: Report) -> list[str]:
    out = ["", "## Code TwiML answered → Participants create at the stub (the gateway's delay)"]
    for p in report.phases:
        if p.dial_p99_ms is not None and p.mode == "open":
            out.append(
                f"- {p.name}: p50 {_ms(p.dial_p50_ms)} ms, p99 {_ms(p.dial_p99_ms)} ms, "
                f"max {_ms(p.dial_max_ms)} ms"
            )
    return out


def _overload(report: Report) -> list[str]:
    ov = report.overload
    if not ov:
        return []
    return [
        "",
        f"## Overload: {ov['rate']:,.0f} webhooks/s offered for {ov['seconds']:.1f} s",
        f"- status callbacks: {ov['status_callbacks_sent']} sent, "
        f"{ov['status_callbacks_2xx']} answered 2xx; transfers behind what their 2xx callbacks "
        f"imply: {ov['status_callbacks_2xx_not_applied']}",
        f"- /twilio/voice: {ov['voice_sent']} sent, {ov['voice_refused']} refused (non-2xx), "
        f"slowest refusal {_ms(ov['voice_refused_max_answer_ms'])} ms, "
        f"{ov['voice_unanswered']} unanswered in 15 s; 2xx answers p99 "
        f"{_ms(ov['voice_2xx_p99_answer_ms'])} ms, max {_ms(ov['voice_2xx_max_answer_ms'])} ms",
        f"- the last answer came {_num(ov['drained_s'], '.1f')} s after the schedule ended",
        f"- at {ov['normal_rate']:,.0f}/s (half the maximum) right before: p99 "
        f"{_ms(ov['before_p99_ms'])} ms, {ov['before_errors']} errors; right after (once Redis "
        f"was back to idle): p99 {_ms(ov['after_p99_ms'])} ms, {ov['after_errors']} errors, "
        f"all completed: {ov['after_all_completed']}; process alive: {ov['gateway_alive_after']}",
    ]


def _soak(report: Report) -> list[str]:
    s = report.soak
    if not s:
        return []
    dev = s.get("max_deviation")
    return [
        "",
        "## Soak: the gateway's RSS, sampled every 5 s",
        f"- reference (after warm-up) {s['reference_kb']} kB, last {s['last_kb']} kB, "
        f"min {s['min_kb']} kB, max {s['max_kb']} kB; largest deviation "
        + ("—" if dev is None else f"{dev:.1%}"),
    ]


def _states(report: Report) -> list[str]:
    out = ["", "## State check (GET /v1/transfers/{id} after each phase)"]
    for p in report.phases:
        c = p.states
        if c is None:
            continue
        states = ", ".join(f"{k} {v}" for k, v in sorted(c.by_state.items()))
        line = f"- {p.name}: {c.driven} driven ({states}); as implied: {c.as_implied}"
        if c.callbacks_not_applied:
            line += f"; {c.callbacks_not_applied} explained only by a 2xx callback not applied"
        if c.code_not_applied:
            line += f"; {c.code_not_applied} answered the conference TwiML, not bridged"
        if c.moved_on:
            line += f"; {c.moved_on} moved on to a next destination by the gateway"
        if c.unexplained:
            line += f"; {c.unexplained} unexplained"
        if c.bridged_not_dialed:
            line += f"; {c.bridged_not_dialed} bridged, never dialed"
        if c.dialed_twice:
            line += f"; {c.dialed_twice} dialed twice"
        if c.stopped:
            line += "; stopped early: " + ", ".join(f"{k} {v}" for k, v in c.stopped.items())
        out.append(line)
        for m in c.mismatches[:3]:
            out.append(
                f"    e.g. {m['id']}: {m['state']}, expected {'/'.join(m['expected'])}; "
                f"attempts {m['attempts']}; steps {m['steps']}"
            )
    return out


def _generator(report: Report) -> list[str]:
    g = report.generator
    out = [
        "",
        "## Generator",
        f"- ceiling: {_num(g.get('null_server_max'))} webhooks/s against the null server; "
        f"{_num(g.get('requests_per_cpu_s'))} requests per CPU-second of this process; "
        f"worst open-loop send lateness (p99 of a phase) {_ms(g.get('worst_lag_p99_ms'))} ms",
    ]
    base = report.best("baseline")
    if base is not None and g.get("null_server_max"):
        share = base.achieved / g["null_server_max"]
        out.append(
            f"- the baseline's maximum is {share:.0%} of that ceiling"
            + (": the baseline figure may be the generator's" if share > 0.8 else "")
        )
    out.append(
        "- REST stub: " + ", ".join(f"{k} {v}" for k, v in sorted(report.stub_requests.items()))
    )
    return out


def serves_as_before(ov: dict[str, Any]) -> bool:
    before, after = ov["before_p99_ms"], ov["after_p99_ms"]
    if before is None or after is None:
        return False
    return bool(after <= max(2 * before, before + 10))


def targets(report: Report) -> list[str]:
    out = ["", "## Targets (reported, not enforced)"]
    at_1000 = report.phase("gateway 1000/s")
    if at_1000 is not None:
        p99 = at_1000.p99_ms if at_1000.p99_ms is not None else math.inf
        ok = at_1000.achieved >= 990 and p99 < 25 and at_1000.error_count == 0
        out.append(
            f"- 1,000 signed webhooks/s, p99 < 25 ms, no errors: {at_1000.achieved:,.0f}/s, "
            f"p99 {_ms(at_1000.p99_ms)} ms, {at_1000.error_count} errors: {_verdict(ok)}"
        )
    top, base = report.best("gateway"), report.best("baseline")
    if top is not None and base is not None and base.achieved:
        share = top.achieved / base.achieved
        out.append(
            f"- maximum ≥ 35 % of the baseline's: {top.achieved:,.0f} / {base.achieved:,.0f} "
            f"= {share:.0%}: {_verdict(share >= 0.35)}"
        )
    at_500 = report.phase("gateway 500/s")
    if at_500 is not None and at_500.dial_p99_ms is not None:
        out.append(
            f"- code → Participants create p99 < 50 ms at 500/s: {_ms(at_500.dial_p99_ms)} ms: "
            + _verdict(at_500.dial_p99_ms < 50)
        )
    ov = report.overload
    if ov:
        lost = ov["status_callbacks_2xx_not_applied"]
        out.append(
            f"- overload, status callbacks 2xx and not applied: {lost}: {_verdict(lost == 0)}"
        )
        slowest = ov["voice_refused_max_answer_ms"] or 0.0
        refused_ok = ov["voice_unanswered"] == 0 and slowest <= 1000
        out.append(
            f"- overload, every refused /twilio/voice answered within 1 s: {ov['voice_refused']} "
            f"refused (slowest {_ms(ov['voice_refused_max_answer_ms'])} ms), "
            f"{ov['voice_unanswered']} unanswered: {_verdict(refused_ok)}"
            + (" (nothing was refused)" if ov["voice_refused"] == 0 else "")
        )
        normal = ov["after_errors"] == 0 and ov["after_all_completed"] and serves_as_before(ov)
        out.append(
            f"- serves normally right after (no errors, all completed, p99 within 2x or 10 ms of "
            f"before): p99 {_ms(ov['before_p99_ms'])} → {_ms(ov['after_p99_ms'])} ms, "
            f"{ov['after_errors']} errors: {_verdict(normal)}"
        )
    dev = report.soak.get("max_deviation") if report.soak else None
    out.append(
        "- RSS flat ± 10 % over the soak: "
        + ("not run (--soak)" if dev is None else f"{dev:.1%}: {_verdict(dev <= 0.10)}")
    )
    rt = report.round_trips
    if rt:
        whole = rt["whole_transfer_per_webhook"]
        out.append(
            f"- ≤ 1.2 Redis round trips per webhook over a transfer: {whole:.2f}: "
            + _verdict(whole <= 1.2)
        )
        code = rt.get("code_step")
        if code is not None:
            dial = rt.get("code_step_dial")
            out.append(
                f"- code step ≤ 2 round trips: {code:g} (and {dial} for the dial it starts): "
                + _verdict(code <= 2)
            )
    return out


def _logs(report: Report) -> list[str]:
    out = ["", "## Gateway stderr"]
    for name, summary in report.logs.items():
        out.append(
            f"- {name}: lines by level {summary['levels']}; access log {summary['access_statuses']}"
        )
        for message, count in summary["warnings_and_errors"].items():
            out.append(f"    {count} x {message}")
        for message, count in summary["tracebacks"].items():
            out.append(f"    traceback x{count}: {message}")
        for line in summary["not_json"][:5]:
            out.append(f"    not JSON: {line}")
    return out


def render(report: Report) -> str:
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in report.timings.items())
    return "\n".join(
        [
            f"webhooks benchmark ({report.plan}); pinning: {report.pinning}",
            "",
            table(report),
            "",
            "Latency from the scheduled send time (open loop: queueing counts) or from the send "
            "(closed loop, 'max'). Errors: webhooks not answered as Twilio needs them (non-2xx, "
            "no answer in 15 s, TwiML that does not continue the call). vs baseline: achieved "
            "throughput / the baseline's in the same mode.",
            *_phase_notes(report),
            *_round_trips(report),
            *_dials(report),
            *_overload(report),
            *_soak(report),
            *_states(report),
            *_generator(report),
            *targets(report),
            *_logs(report),
            "",
            f"run took {report.seconds:.0f} s ({timings})",
        ]
    )


def as_json(report: Report) -> dict[str, Any]:
    figures = asdict(report)
    figures["columns"] = list(COLUMNS)
    figures["table"] = table(report)
    return figures


# --- main -------------------------------------------------------------------------------------


def _cores(pin: bool) -> tuple[int, int] | None:
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return available[0], available[1]


async def _cancellable(work: Awaitable[Report]) -> Report:
    """``work``, cancelled by SIGTERM as asyncio.run cancels it on SIGINT."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_const", dest="plan", const="quick", help="the default: about 90 s"
    )
    mode.add_argument(
        "--full",
        action="store_const",
        dest="plan",
        const="full",
        help="longer phases, and the soak",
    )
    mode.add_argument(
        "--smoke",
        action="store_const",
        dest="plan",
        const="smoke",
        help="a few transfers, no pinning",
    )
    parser.add_argument("--soak", action="store_true", help="add 5 minutes at 500 webhooks/s (RSS)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--logs",
        metavar="DIR",
        default=str(ROOT / ".state" / "bench-webhooks"),
        help="where process output is kept",
    )
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-null", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_null:
        serve_null(args.port)
        return 0
    if args.serve_baseline:
        serve_baseline(args.port, args.redis_url)
        return 0

    plan = PLANS[args.plan or "quick"]
    cores = _cores(plan.pin and not args.no_pin)
    if cores is not None:
        os.sched_setaffinity(0, {cores[1]})  # before any thread exists: all of them inherit it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gw-bench-webhooks-"))
    procs = Processes()
    try:
        bench = Bench(plan, procs, workdir, logs, cores)
        report = asyncio.run(_cancellable(bench.run(soak=args.soak or plan.name == "full")))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process started was stopped", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(report))
    print(f"process output kept in {logs}")
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(report), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
