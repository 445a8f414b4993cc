"""A minimal receiver for the notices the gateway POSTs: screen pops and handback notices (a 988
center's ``notify_url``) and EIDOs (a PSAP's ``cad_url``). Standard library only — copy it.

It does what ``/openapi.json`` (``webhooks`` and the ``gatewaySignature`` scheme) asks of a
receiver:

1. read the raw body, and ``X-Gateway-Signature: t=<unix>,v1=<hex>``;
2. recompute ``v1`` = hex HMAC-SHA256(secret, ``"<t>."`` + raw body) and compare it in constant
   time; refuse a ``t`` more than ``--tolerance`` seconds from now (a replayed notice);
3. deduplicate on ``Idempotency-Key`` (a notice may come twice), then act and answer 2xx.

Refused: 401 (``{"error": ...}``); not JSON: 400. Each notice taken is printed as one JSON line
``{"type", "idempotency_key", "duplicate", "body"}`` (the body carries personal data: a real
receiver must not log it).

    RECEIVER_SECRET=… python examples/receiver.py --port 9000

The secret is the value the gateway reads from the environment variable its routing policy
names (``notify_secret_env`` of the destination, ``cad_secret_env`` of the PSAP).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEADER = "X-Gateway-Signature"
MAX_BODY = 1 << 20


def verify(secret: bytes, body: bytes, header: str, *, tolerance_s: float, now: float) -> str:
    """Why ``header`` does not sign ``body`` (``""``: it does)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isascii() or not t.isdigit() or not v1:
        return "missing or malformed signature header"
    if abs(now - int(t)) > tolerance_s:
        return "signature timestamp outside the tolerance"
    expected = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, v1):
        return "signature does not match"
    return ""


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: bytes, tolerance_s: float) -> None:
        super().__init__(address, Handler)
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.seen: set[str] = set()
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": "body too large"})
            return
        body = self.rfile.read(length)
        why = verify(
            self.server.secret,
            body,
            self.headers.get(HEADER, ""),
            tolerance_s=self.server.tolerance_s,
            now=time.time(),
        )
        if why:
            self._answer(401, {"error": why})
            return
        try:
            notice: Any = json.loads(body)
        except ValueError:
            self._answer(400, {"error": "the body is not JSON"})
            return
        key = self.headers.get("Idempotency-Key", "")
        with self.server.lock:
            duplicate = key in self.server.seen
            self.server.seen.add(key)
        kind = notice.get("type", "eido") if isinstance(notice, dict) else "?"
        line = {"type": kind, "idempotency_key": key, "duplicate": duplicate, "body": notice}
        print(json.dumps(line, ensure_ascii=False), flush=True)
        self._answer(200, {"ok": True, "duplicate": duplicate})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stderr, without the query string or body.
        sys.stderr.write(f"{self.command} {self.path.split('?')[0]} {args[1]}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0: any free port")
    parser.add_argument("--secret-env", default="RECEIVER_SECRET", help="holds the secret")
    parser.add_argument("--tolerance", type=float, default=300.0, help="seconds (default 300)")
    args = parser.parse_args(argv)
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        parser.error(f"set {args.secret_env} to the secret shared with the gateway")
    server = Receiver((args.host, args.port), secret.encode(), args.tolerance)
    print(json.dumps({"listening": f"http://{args.host}:{server.server_port}/"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
