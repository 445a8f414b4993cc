"""A Twilio-compatible local server with scripted parties: the gateway's built-in sandbox.

It serves the REST subset the gateway uses (Calls, Conferences, Participants) with HTTP Basic
auth, sends signed webhooks exactly as Twilio does (voice, Gather actions, call progress and
conference status callbacks, announcements, fallback), interprets the TwiML it gets back, and
plays callers and callees from a script. Everything it does is recorded in a timeline.

    async with run_sandbox(SandboxConfig(numbers={BRIDGE: NumberConfig(voice_url=...)})) as sb:
        sid = sb.start_call("+15551230000", digits=["123456"])
        await sb.wait_for_call_end(sid)
"""

from .app import Sandbox, create_sandbox_app, run_sandbox
from .config import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    Behaviour,
    ConfigUpdate,
    InboundCall,
    NumberConfig,
    PartyConfig,
    SandboxConfig,
)
from .engine import SandboxEngine
from .timeline import Event, Timeline
from .webhooks import signed_request

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "Behaviour",
    "ConfigUpdate",
    "Event",
    "InboundCall",
    "NumberConfig",
    "PartyConfig",
    "Sandbox",
    "SandboxConfig",
    "SandboxEngine",
    "Timeline",
    "create_sandbox_app",
    "run_sandbox",
    "signed_request",
]
