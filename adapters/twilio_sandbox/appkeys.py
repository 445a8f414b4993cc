"""Typed keys of the sandbox's aiohttp application."""

from __future__ import annotations

from aiohttp import web

from .engine import SandboxEngine

ENGINE = web.AppKey("twilio_sandbox_engine", SandboxEngine)
