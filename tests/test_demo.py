"""The newcomer's demo walks a warm transfer with a fallback against a gateway + sandbox."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from gateway.cli.demo import run_demo
from gateway.core.settings import Settings
from tests.conftest import ROOT, AppFactory, KeyMaker
from tests.telephony import PSAP, short_ring_timeouts, wired


async def test_demo_shows_a_fallback_then_a_connection(
    make_client: AppFactory, settings: Settings, make_key: KeyMaker, config_dir: Path
) -> None:
    short_ring_timeouts(config_dir)
    key = make_key(PSAP, "psap")
    async with wired(make_client, settings, key) as line:
        out = io.StringIO()
        final = await run_demo(
            f"http://127.0.0.1:{line.client.port}",
            line.sandbox.base_url,
            key,
            PSAP,
            hold_s=0.5,
            out=out,
        )
    text = out.getvalue()
    assert final["state"] == "completed"
    assert [a["outcome"] for a in final["attempts"]] == ["no_answer", "answered"]
    assert "ringing crisis-connections-988" in text
    assert "(crisis-connections-988: no_answer) ringing wa-988-backup" in text
    assert "connected to wa-988-backup" in text
    assert "said: Connecting to a crisis counselor" in text


def test_demo_without_a_gateway_says_so() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--key", "k", "--gateway-url",
         "http://127.0.0.1:9", "--sandbox-url", "http://127.0.0.1:9"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "is the gateway running" in result.stderr
    assert "Traceback" not in result.stderr
