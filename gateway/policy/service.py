"""The live policy: versions in Redis, shared by every gateway process.

- A change (``put``, ``rollback``, the first ``seed`` from ``config/``) is one Lua call that
  checks the version it was computed against, writes the immutable document of the next version,
  its who/when/summary, the audit entry, and only then moves the live version number.
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
from gateway.core.errors import Conflict, NotFound, Unavailable
from gateway.core.records import text
from gateway.events import entries as events
from gateway.policy import engine
from gateway.policy.changes import summarize
from gateway.policy.decision import Decision, DecisionRequest
from gateway.policy.loader import PolicyInvalid, load_config_dir, validate_document
from gateway.policy.models import Destination, PolicyDocument, Psap

log = logging.getLogger(__name__)

AUDIT_MAXLEN = 10_000
SEED_ACTOR = "system:config-files"

# KEYS: current, docs, versions, audit, events stream.
# ARGV: mode (seed | put | rollback), expected version (put, rollback), document JSON,
#       meta JSON ({who, when, summary, action}), who, when, summary, audit maxlen,
#       events maxlen, events min id (gateway.events.entries).
# Seed writes only when there is no version yet; put and rollback only on top of ``expected``.
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
  'version', version, 'action', ARGV[1], 'who', ARGV[5], 'when', ARGV[6], 'summary', ARGV[7])
redis.call('SET', KEYS[1], version)
if KEYS[5] then  -- the live events stream (gateway.events): policy.changed, in the same call
  redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[10], '*', 'type', 'policy.changed',
    'at', ARGV[6], 'version', version, 'action', ARGV[1], 'actor', ARGV[5])
  redis.call('XTRIM', KEYS[5], 'MAXLEN', '~', ARGV[9])
end
return {'ok', version}
"""


class VersionInfo(BaseModel):
    """One entry of ``GET /v1/admin/routing/versions``."""

    version: int
    who: str
    when: AwareDatetime
    summary: str


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
        raw = await self.redis.hgetall(keys.POLICY_VERSIONS)
        infos = []
        for field, value in raw.items():
            meta = json.loads(text(value))
            infos.append(
                VersionInfo(
                    version=int(text(field)),
                    who=meta["who"],
                    when=meta["when"],
                    summary=meta["summary"],
                )
            )
        return sorted(infos, key=lambda v: v.version)

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
        status, version = await self._run("seed", 0, document, SEED_ACTOR, "seeded from config/")
        if status == "ok":
            log.info("policy seeded", extra={"policy_version": version})
        return version

    async def put(self, document_json: Mapping[str, Any], actor: str) -> int:
        """Validate ``document_json`` (the GET shape; a ``version`` key is ignored) and make it
        the next version. ``PolicyInvalid`` lists every error and changes nothing."""
        data = {k: v for k, v in document_json.items() if k != "version"}
        document = validate_document(data)
        return await self._change("put", document, actor, lambda old: summarize(old, document))

    async def rollback(self, version: int, actor: str) -> int:
        """A new version whose content equals ``version``'s."""
        document = await self._document(version)

        def summary(old: PolicyDocument) -> str:
            return f"rollback to version {version}: {summarize(old, document)}"

        return await self._change("rollback", document, actor, summary)

    async def _change(
        self,
        action: str,
        document: PolicyDocument,
        actor: str,
        summary: Callable[[PolicyDocument], str],
    ) -> int:
        for _ in range(5):
            base = await self.current()
            status, version = await self._run(
                action, base.version, document, actor, summary(base.document)
            )
            if status == "ok":
                self._loaded = LoadedPolicy(version, document)
                log.info(
                    "policy changed",
                    extra={"policy_version": version, "action": action, "actor": actor},
                )
                return version
        raise Conflict("the policy kept changing under this request; retry")

    async def _run(
        self, action: str, expected: int, document: PolicyDocument, actor: str, summary: str
    ) -> tuple[str, int]:
        now = datetime.now(UTC)
        when = now.isoformat()
        meta = json.dumps({"who": actor, "when": when, "summary": summary, "action": action})
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
                events.min_id(now),
            ],
        )
        status, version = text(result[0]), int(result[1])
        return status, version
