"""Typed keys for what the app factory wires into ``web.Application``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.asyncio import Redis

from gateway.core.admission import Admission
from gateway.core.auth import KeyRing
from gateway.core.metrics import Metrics
from gateway.core.outage import OutageWatch
from gateway.core.settings import Settings
from gateway.core.tasks import TaskSet
from gateway.core.timers import TimerHandler, TimerQueue
from gateway.handback import HandbackService
from gateway.policy.service import PolicyService
from gateway.transfer.dispositions import DispositionService
from gateway.transfer.service import TransferService
from gateway.transfer.store import TransferStore

ReadyCheck = Callable[[], Awaitable[bool]]

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", TransferStore)
TIMERS = web.AppKey("timers", TimerQueue)
TIMER_HANDLERS = web.AppKey("timer_handlers", dict[str, TimerHandler])
KEYRING = web.AppKey("keyring", KeyRing)
READY_CHECKS = web.AppKey("ready_checks", dict[str, ReadyCheck])
METRICS = web.AppKey("metrics", Metrics)
TASKS = web.AppKey("tasks", TaskSet)
POLICY = web.AppKey("policy", PolicyService)
TRANSFERS = web.AppKey("transfers", TransferService)
HANDBACKS = web.AppKey("handbacks", HandbackService)
DISPOSITIONS = web.AppKey("dispositions", DispositionService)
OUTAGES = web.AppKey("outages", OutageWatch)
ADMISSION = web.AppKey("admission", Admission)
