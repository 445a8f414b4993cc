"""The live policy: versions in Redis, shared by every gateway process.

- A change (``put``, ``rollback``, the first ``seed`` from ``config/``) is one Lua call that
  checks the version it was computed against, writes the immutable document of the next version,
  its actor/at/summary, the audit entry, and only then moves the live version number.
- ``put`` and ``rollback`` take the version an edit was made from (``If-Match``, DESIGN.md §9):
  another version live is ``VersionMismatch`` (412), checked in the same script that writes.
  The content already live is no new version (``PolicyChange.changed`` false).
- ``listeners`` are told of each committed version: the ``policy.changed`` event hook.
- Every decision reads the live version number (one GET) and reloads the document only when the
  number moved, so a process never decides with a stale version, notification or not.
- ``last_known()`` is the last policy this process loaded, for callers that must work with Redis
  down (the Twilio fallback webhook); ``offline()`` falls back to the config files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel
from redis.asyncio import Redis

from gateway.core import keys
from gateway.core.errors import Conflict, GatewayError, NotFound, Unavailable
from gateway.core.records import text
from gateway.events import entries as events
from gateway.policy import engine
from gateway.policy.changes import NO_CHANGE, summarize
from gateway.policy.decision import Decision, DecisionRequest
from gateway.policy.loader import PolicyInvalid, load_config_dir, validate_document
from gateway.policy.models import Destination, PolicyDocument, Psap

log = logging.getLogger(__name__)

AUDIT_MAXLEN = 10_000
SEED_ACTOR = "system:config-files"
RETRIES = 5
"""Times a change without ``If-Match`` is recomputed when another writer moved the live version
between its read and its commit."""

# KEYS: current, docs, versions, audit, events stream.
# ARGV: mode (seed | put | rollback), expected version (put, rollback), document JSON,
#       meta JSON ({actor, at, summary, action}), actor, at, summary, audit maxlen,
#       events maxlen, events min id (gateway.events.entries).
# Seed writes only when there is no version yet; put and rollback only on top of ``expected``:
# the check of the version an edit was made from and the write of the next one are this one
# step, so of two admins racing from the same version exactly one commits. The same call
# appends ``policy.changed`` to the live events stream; ``PolicyService.listeners`` are told
# after the commit, in this process.
_COMMIT_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if ARGV[1] == 'seed' then
  if current > 0 then return {'exists', current} end
elseif current ~= tonumber(ARGV[2]) then
  return {'conflict', current}
end
local version = current + 1
redis.call('HSET', KEYS[2], version, ARGV[3])
redis.call('HSET', KEYS[3], version, ARGV[4])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
  'version', version, 'action', ARGV[1], 'actor', ARGV[5], 'at', ARGV[6], 'summary', ARGV[7])
redis.call('SET', KEYS[1], version)
if KEYS[5] then  -- the live events stream (gateway.events): policy.changed, in the same call
  redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[10], '*', 'type', 'policy.changed',
    'at', ARGV[6], 'version', version, 'action', ARGV[1], 'actor', ARGV[5])
  redis.call('XTRIM', KEYS[5], 'MAXLEN', '~', ARGV[9])
end
return {'ok', version}
"""


class VersionInfo(BaseModel):
    """One entry of ``GET /v1/admin/routing/versions`` (DESIGN.md §9)."""

    version: int
    """The version number (1: seeded from ``config/``)."""
    at: AwareDatetime
    """When it became live (UTC)."""
    actor: str
    """Who made it: ``<role>:<org>:<name>``, or ``system:config-files`` for the seed."""
    summary: str
    """What changed from the version live before it, ``path: old → new`` per change joined with
    ``; `` (``gateway.policy.changes``); a rollback's starts ``rollback to version n``."""


class VersionMismatch(GatewayError):
    """``If-Match`` named a version that is not the live one (HTTP 412, DESIGN.md §9): the edit
    was made from an older policy. ``live_version`` is the version live when checked."""

    status = 412
    code = "precondition_failed"

    def __init__(self, expected: int, live: int) -> None:
        super().__init__(
            f"the policy was edited from version {expected}, but version {live} is live; "
            "reload it and edit again",
            [
                {
                    "path": "If-Match",
                    "message": "not the live version",
                    "expected_version": expected,
                    "live_version": live,
                }
            ],
        )
        self.expected = expected
        self.live_version = live


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    version: int
    document: PolicyDocument

    def psap(self, psap_id: str) -> Psap:
        psap = self.document.psap(psap_id)
        if psap is None:
            raise engine.UnknownPsap(psap_id)
        return psap

    def destination(self, destination_id: str) -> Destination:
        dest = self.document.destination(destination_id)
        if dest is None:
            raise NotFound(f"unknown destination {destination_id!r}")
        return dest

    def fallback(self, psap_id: str) -> Destination:
        """The destination ``/twilio/fallback`` dials for the PSAP."""
        return self.destination(self.psap(psap_id).fallback_destination)

    def as_json(self) -> dict[str, Any]:
        """The document as ``GET /v1/admin/routing`` shows it, with its version."""
        return {"version": self.version, **self.document.model_dump(mode="json")}


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What a ``put`` or ``rollback`` did: the policy now live and whether it is a new version.

    This is what a ``policy.changed`` event (DESIGN.md §9) carries; ``PolicyService.listeners``
    receive one per new version."""

    live: LoadedPolicy
    """The live policy after the request (the same as before when ``changed`` is false)."""
    previous_version: int
    """The version live before it (equal to ``version`` when nothing changed)."""
    changed: bool
    """False: the request asked for the content already live; no version was made."""
    action: str
    """``put`` or ``rollback``."""
    actor: str
    """``<role>:<org>:<name>`` of the key that asked."""
    at: datetime | None
    """When the new version was committed (UTC); None when nothing changed."""
    summary: str
    """What changed (``VersionInfo.summary``); ``no change`` when nothing did."""

    @property
    def version(self) -> int:
        return self.live.version


ChangeListener = Callable[[PolicyChange], Awaitable[None]]
"""Called once per committed policy version, after the commit, in the process that made it
(never for a no-op, never for the seed). The hook for ``policy.changed`` events (DESIGN.md §9):
append the event publisher to ``PolicyService.listeners`` in the app factory."""


DestinationLoad = Callable[[Iterable[str]], Awaitable[dict[str, int]]]
"""Destination id → how many transfers ring or are connected there now (live load, handed in by
the transfer store so that routing needs nothing of transfers)."""


class PolicyService:
    def __init__(self, redis: Redis, config_dir: Path | str, load: DestinationLoad) -> None:
        self.redis = redis
        self.config_dir = Path(config_dir)
        self.load = load
        self._commit = redis.register_script(_COMMIT_LUA)
        self._loaded: LoadedPolicy | None = None
        self._files: LoadedPolicy | None = None
        self.listeners: list[ChangeListener] = []
        """``policy.changed`` hook: each is awaited with every new version (``_notify``)."""

    # -- reading -------------------------------------------------------------------------------

    def last_known(self) -> LoadedPolicy | None:
        """The last policy this process loaded from Redis (no I/O)."""
        return self._loaded

    def offline(self) -> LoadedPolicy:
        """``last_known()``, else the config files (version 0): for use with Redis down."""
        if self._loaded is not None:
            return self._loaded
        if self._files is None:
            self._files = LoadedPolicy(0, load_config_dir(self.config_dir))
        return self._files

    async def current(self) -> LoadedPolicy:
        """The live policy: one GET of the version number; the document only when it moved.
        With no version in Redis yet, the config files are seeded as version 1."""
        raw = await self.redis.get(keys.POLICY_CURRENT)
        version = int(text(raw)) if raw is not None else 0
        if version == 0:
            version = await self.seed()
        cached = self._loaded
        if cached is not None and cached.version == version:
            return cached
        loaded = LoadedPolicy(version, await self._document(version))
        self._loaded = loaded
        log.info("policy loaded", extra={"policy_version": version})
        return loaded

    async def _document(self, version: int) -> PolicyDocument:
        raw = await self.redis.hget(keys.POLICY_DOCS, str(version))
        if raw is None:
            raise NotFound(f"no policy version {version}")
        try:
            return validate_document(json.loads(text(raw)))
        except PolicyInvalid as exc:  # stored by an older release with looser checks
            log.error("stored policy invalid", extra={"policy_version": version})
            raise Unavailable(f"policy version {version} no longer validates") from exc

    async def versions(self) -> list[VersionInfo]:
        """Every version, oldest first: who made it, when, and what changed."""
        raw = await self.redis.hgetall(keys.POLICY_VERSIONS)
        infos = []
        for field, value in raw.items():
            meta = json.loads(text(value))
            infos.append(
                VersionInfo(
                    version=int(text(field)),
                    # ``who``/``when``: as releases before 2026-11 wrote them.
                    at=meta.get("at") or meta["when"],
                    actor=meta.get("actor") or meta["who"],
                    summary=meta["summary"],
                )
            )
        return sorted(infos, key=lambda v: v.version)

    async def version(self, version: int) -> LoadedPolicy:
        """The whole policy of ``version`` (live or not); ``NotFound`` when there is none."""
        live = self._loaded
        if live is not None and live.version == version:
            return live
        return LoadedPolicy(version, await self._document(version))

    async def audit(self) -> list[dict[str, str]]:
        entries = await self.redis.xrange(keys.POLICY_AUDIT) or []
        return [{text(k): text(v) for k, v in (body or {}).items()} for _, body in entries]

    # -- deciding ------------------------------------------------------------------------------

    async def explain(
        self,
        request: DecisionRequest,
        *,
        now: datetime | None = None,
        loaded: LoadedPolicy | None = None,
    ) -> engine.Explained:
        """The decision and its trace on the live policy (or ``loaded``, just read), with the
        live load of the chain's destinations that have a ``max_concurrent`` (read only for
        those: the others take any number of calls)."""
        loaded = loaded or await self.current()
        at = now or datetime.now(UTC)
        document = loaded.document
        ids = [
            destination_id
            for destination_id in engine.candidates(document, request, at=at)
            if (found := document.destination(destination_id)) is not None
            and found.max_concurrent is not None
        ]
        load = await self.load(ids) if ids else {}
        return engine.explain(document, request, at=at, load=load, version=loaded.version)

    async def decide(
        self,
        request: DecisionRequest,
        *,
        now: datetime | None = None,
        loaded: LoadedPolicy | None = None,
    ) -> Decision:
        """The decision on the live policy (or ``loaded``), with live load where it matters."""
        return (await self.explain(request, now=now, loaded=loaded)).decision

    # -- changing ------------------------------------------------------------------------------

    async def seed(self) -> int:
        """Make the config files version 1 unless Redis already has a version (atomic: of two
        processes starting together, one seeds)."""
        try:
            document = load_config_dir(self.config_dir)
        except PolicyInvalid as exc:
            log.error("config policy invalid", extra={"errors": len(exc.errors)})
            raise Unavailable(
                "no live policy and the config files are invalid", exc.errors
            ) from None
        status, version, _ = await self._run("seed", 0, document, SEED_ACTOR, "seeded from config/")
        if status == "ok":
            log.info("policy seeded", extra={"policy_version": version})
        return version

    async def put(
        self, document_json: Mapping[str, Any], actor: str, *, if_match: int | None = None
    ) -> PolicyChange:
        """Validate ``document_json`` (the GET shape; a ``version`` key is ignored) and make it
        the next version (DESIGN.md §5, §9).

        - ``PolicyInvalid`` lists every error and changes nothing.
        - ``if_match``: the version the edit was made from. Another version live:
          ``VersionMismatch`` (412), checked again inside the commit script, so of two edits
          from the same version exactly one commits.
        - A document identical to the live one is no new version: the answer is the live
          version with ``changed`` false.
        """
        data = {k: v for k, v in document_json.items() if k != "version"}
        document = validate_document(data)

        async def target(base: LoadedPolicy) -> tuple[PolicyDocument, str]:
            return document, summarize(base.document, document)

        return await self._change("put", target, actor, if_match)

    async def rollback(
        self, version: int | None, actor: str, *, if_match: int | None = None
    ) -> PolicyChange:
        """A new version whose content is a copy of ``version``'s; with ``version`` None, of
        the version before the live one (``Conflict`` at version 1: there is none). Rolling
        back to the content already live is no new version (``changed`` false). ``NotFound``
        for an unknown version; ``if_match`` as for ``put``."""

        async def target(base: LoadedPolicy) -> tuple[PolicyDocument, str]:
            wanted = base.version - 1 if version is None else version
            if wanted < 1:
                raise Conflict(
                    "there is no earlier version to roll back to",
                    [{"path": "version", "message": f"version {base.version} is the first"}],
                )
            document = (await self.version(wanted)).document
            return document, f"rollback to version {wanted}: {summarize(base.document, document)}"

        return await self._change("rollback", target, actor, if_match)

    async def _change(
        self,
        action: str,
        target: Callable[[LoadedPolicy], Awaitable[tuple[PolicyDocument, str]]],
        actor: str,
        if_match: int | None,
    ) -> PolicyChange:
        """Commit ``target(live)`` as the next version on top of the live one, which must be
        ``if_match`` when given; without it, recomputed on the new live version when another
        writer got in between (up to ``RETRIES`` times)."""
        for _ in range(RETRIES):
            base = await self.current()
            if if_match is not None and base.version != if_match:
                raise VersionMismatch(if_match, base.version)
            document, summary = await target(base)
            if document == base.document:
                return PolicyChange(base, base.version, False, action, actor, None, NO_CHANGE)
            status, version, at = await self._run(action, base.version, document, actor, summary)
            if status == "ok":
                loaded = LoadedPolicy(version, document)
                self._loaded = loaded
                log.info(
                    "policy changed",
                    extra={"policy_version": version, "action": action, "actor": actor},
                )
                change = PolicyChange(loaded, base.version, True, action, actor, at, summary)
                await self._notify(change)
                return change
            if if_match is not None:
                raise VersionMismatch(if_match, version)
        raise Conflict("the policy kept changing under this request; retry")

    async def _notify(self, change: PolicyChange) -> None:
        """Tell every listener about a committed change; a failing listener is logged, never
        undoes or fails the change (it is live already)."""
        for listener in self.listeners:
            try:
                await listener(change)
            except Exception:
                log.exception(
                    "policy change listener failed", extra={"policy_version": change.version}
                )

    async def _run(
        self, action: str, expected: int, document: PolicyDocument, actor: str, summary: str
    ) -> tuple[str, int, datetime]:
        at = datetime.now(UTC)
        when = at.isoformat()
        meta = json.dumps({"actor": actor, "at": when, "summary": summary, "action": action})
        result = await self._commit(
            keys=[
                keys.POLICY_CURRENT,
                keys.POLICY_DOCS,
                keys.POLICY_VERSIONS,
                keys.POLICY_AUDIT,
                keys.EVENTS,
            ],
            args=[
                action,
                expected,
                document.model_dump_json(),
                meta,
                actor,
                when,
                summary,
                AUDIT_MAXLEN,
                events.MAXLEN,
                events.min_id(at),
            ],
        )
        status, version = text(result[0]), int(result[1])
        return status, version, at
