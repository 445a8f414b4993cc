"""API keys: bearer tokens bound to one org and one role, held by a named person or system, and
stored only as SHA-256 digests (DESIGN.md §9, "Identity and keys").

The key file is ``<config dir>/api_keys.yaml``, the source of truth for which keys exist::

    keys:
      - id: 7e8daf1dfcc3            # the first 12 hex digits of the digest: the same key has
        digest: 7e8daf1dfcc3…       # the same id wherever the file is copied
        org: kc-valleycom
        role: psap
        name: console-3             # who holds it; the actor is <role>:<org>:<name>
        created_at: 2026-11-30T03:00:00Z
        revoked_at: 2026-12-01T08:00:00Z   # absent while the key works

``python -m gateway keys new`` appends to it and prints the key once; the gateway never sees a
key again except as a digest. Each process re-reads the file when it changes (its mtime), so a
new key works, and a key revoked in that file stops working, on the very next request. A file
written before keys had ids and names still works: a record without them reads as id = the
digest's first 12 digits and name ``unnamed``, and is written back that way on the next change.

Revocation must also reach processes that read another copy of the file (other machines), so
``keys revoke`` publishes the id in Redis too (the set ``keys.REVOKED_API_KEYS``). Every process
re-reads that set every ``REVOCATION_REFRESH_S`` (``RevocationFeed``, started by the app) and
refuses a key whose id is in it: a revoked key gets 401 everywhere within about a second (the
contract: 5 s). Polling a small set was chosen over pub/sub because a message published while a
process was reconnecting would be lost; a poll cannot miss one. While Redis cannot be read a
process keeps the set it last read, and its own file still applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core import keys
from gateway.core.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

KEYS_FILE = "api_keys.yaml"
UNNAMED = "unnamed"
"""The name of a key recorded before keys had names (or made without ``--name``)."""
REVOCATION_REFRESH_S = 1.0
"""How often each process re-reads the revoked ids in Redis (s)."""

_ORG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
NAME_PATTERN = r"^\w(?:[\w .@'+-]{0,62}[\w.])?$"
"""A key's name: 1 to 64 letters, digits, spaces and ``. @ ' + - _``, starting with a letter or
digit. No colon, so the actor ``<role>:<org>:<name>`` splits back unambiguously."""
_ID_LENGTH = 12


class Role(StrEnum):
    PSAP = "psap"
    """A 911 center; its org is a ``psap_id``."""
    CRISIS_CENTER = "crisis_center"
    """A 988 center or clinician team; its org owns destinations."""
    ADMIN = "admin"
    """Administers the gateway; sees every org."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the org and role of the key, its id (non-secret) and its holder's name."""

    org: str
    role: Role
    key_id: str
    name: str = UNNAMED

    @property
    def actor(self) -> str:
        """``<role>:<org>:<name>``: how the audit trail, policy versions and events name who
        acted (DESIGN.md §9)."""
        return f"{self.role}:{self.org}:{self.name}"


def key_id_of(key_digest: str) -> str:
    """A key's id: the first 12 hex digits of its digest (48 bits; nothing of the key)."""
    return key_digest[:_ID_LENGTH]


class KeyRecord(BaseModel):
    """One key as the key file holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    org: str = Field(pattern=_ORG_PATTERN)
    role: Role
    name: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    label: str | None = None
    """A free note from before keys had names; kept as written, never shown in the audit."""

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """A record from before ids and names: id from the digest, name ``unnamed``."""
        if isinstance(data, dict):
            data = dict(data)
            if "id" not in data and isinstance(data.get("digest"), str):
                data["id"] = key_id_of(data["digest"])
            data.setdefault("name", UNNAMED)
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(
                "a key's name is 1 to 64 letters, digits, spaces and . @ ' + - _, starting with "
                "a letter or digit; no colon (the actor is <role>:<org>:<name>)"
            )
        return value

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class KeyFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: list[KeyRecord] = Field(default_factory=list)


class UnknownKeyId(LookupError):
    """``keys revoke`` was given an id the key file does not hold."""

    def __init__(self, key_id: str, known: list[str]) -> None:
        self.key_id = key_id
        self.known = known
        listed = ", ".join(known) if known else "none"
        super().__init__(f"no key with id {key_id!r} (known ids: {listed}; see `keys list`)")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(role: Role) -> str:
    return f"gw_{role.value}_{secrets.token_urlsafe(32)}"


def load_key_file(path: Path) -> KeyFile:
    """The key file at ``path`` (no file: no keys); ``ValueError`` naming the path if it is not
    valid YAML or a record is malformed."""
    if not path.exists():
        return KeyFile()
    try:
        raw: Any = yaml.safe_load(path.read_text()) or {}
        return KeyFile.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


_HEADER = (
    "# API keys, stored only as SHA-256 digests; each is bound to one org and one role and\n"
    "# names who holds it. Add one with:\n"
    "#   python -m gateway keys new --org ORG --role psap|crisis_center|admin --name NAME\n"
    "# List them with `keys list`; revoke one with `keys revoke KEY_ID`.\n"
)


@contextlib.contextmanager
def _locked(config_dir: Path) -> Iterator[Path]:
    """The key file's path, with an exclusive lock held so that two commands changing the file at
    once do not lose one of the changes."""
    config_dir.mkdir(parents=True, exist_ok=True)
    with (config_dir / f".{KEYS_FILE}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield config_dir / KEYS_FILE
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_key_file(path: Path, content: KeyFile) -> None:
    body = yaml.safe_dump(content.model_dump(mode="json", exclude_none=True), sort_keys=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(_HEADER + body)
    os.replace(tmp, path)


def add_key(
    config_dir: Path,
    *,
    org: str,
    role: Role,
    name: str = UNNAMED,
    label: str | None = None,
) -> str:
    """Record a new key's digest in ``config_dir`` and return the key (its only appearance).
    ``ValidationError`` for an org or name that does not match its pattern; ``ValueError`` for
    an unreadable key file. The org is not checked against the policy here (``keys new``
    does that)."""
    with _locked(config_dir) as path:
        current = load_key_file(path)
        taken = {record.id for record in current.keys}
        key = new_key(role)
        while key_id_of(digest(key)) in taken:  # 1 in 2**48 per key; never twice
            key = new_key(role)
        record = KeyRecord(
            id=key_id_of(digest(key)),
            digest=digest(key),
            org=org,
            role=role,
            name=name,
            created_at=datetime.now(UTC).replace(microsecond=0),
            label=label,
        )
        _write_key_file(path, KeyFile(keys=[*current.keys, record]))
    return key


def revoke_key(config_dir: Path, key_id: str) -> KeyRecord:
    """Mark the key ``key_id`` revoked in ``config_dir``'s key file and return its record (as
    revoked; a key revoked before keeps its first ``revoked_at``). ``UnknownKeyId`` if the file
    holds no such id; ``ValueError`` for an unreadable key file."""
    with _locked(config_dir) as path:
        current = load_key_file(path)
        now = datetime.now(UTC).replace(microsecond=0)
        found: KeyRecord | None = None
        updated: list[KeyRecord] = []
        for record in current.keys:
            if record.id == key_id:
                if record.revoked_at is None:
                    record = record.model_copy(update={"revoked_at": now})
                found = record
            updated.append(record)
        if found is None:
            raise UnknownKeyId(key_id, [r.id for r in current.keys])
        _write_key_file(path, KeyFile(keys=updated))
    return found


async def publish_revocation(redis: Redis, key_id: str) -> None:
    """Tell every gateway process sharing ``redis`` that ``key_id`` is revoked."""
    await redis.sadd(keys.REVOKED_API_KEYS, key_id)


async def revoked_ids(redis: Redis) -> frozenset[str]:
    """Every key id published as revoked."""
    members: Iterable[bytes | str] = await redis.smembers(keys.REVOKED_API_KEYS)
    return frozenset(m.decode() if isinstance(m, bytes) else m for m in members)


class KeyRing:
    """The keys of one config directory, re-read when the file changes, less the ids revoked
    there or published as revoked in Redis (``revoked``, kept current by ``RevocationFeed``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._records: tuple[KeyRecord, ...] = ()
        self.revoked: frozenset[str] = frozenset()
        """Ids published as revoked in Redis, as last read."""
        self._records = tuple(load_key_file(path).keys)  # unreadable at start: ValueError
        self._mtime = path.stat().st_mtime if path.exists() else None

    def reload(self) -> None:
        """Re-read the file when it changed. A file that no longer parses (a hand edit half
        done) leaves the keys last read in force and is logged once per change: otherwise every
        request would be a 500 until it is fixed. Revocations published in Redis still apply."""
        mtime = self.path.stat().st_mtime if self.path.exists() else None
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._records = tuple(load_key_file(self.path).keys)
            except (ValueError, OSError):
                log.error(
                    "key file unreadable; the keys last read stay in force",
                    extra={"path": str(self.path), "keys": len(self._records)},
                )

    def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``; None for a key that is unknown or revoked."""
        return self.principal_of_digest(digest(key))

    def principal_of_digest(self, key_digest: str) -> Principal | None:
        """The principal of the key whose SHA-256 digest is ``key_digest``; None when it is
        unknown or revoked. (A console session keeps the digest, never the key, and ends with
        the key: ``gateway.console``.)"""
        self.reload()
        match: KeyRecord | None = None
        # Compare against every record, so timing does not tell how many digits matched.
        for record in self._records:
            if hmac.compare_digest(key_digest, record.digest):
                match = record
        if match is None or match.revoked or match.id in self.revoked:
            return None
        return Principal(org=match.org, role=match.role, key_id=match.id, name=match.name)


class RevocationFeed:
    """Keeps a ``KeyRing``'s ``revoked`` in step with Redis: re-read every ``every_s`` until
    stopped. A failed read is logged once per outage and the last set read is kept."""

    def __init__(
        self, ring: KeyRing, redis: Redis, *, every_s: float = REVOCATION_REFRESH_S
    ) -> None:
        self.ring = ring
        self.redis = redis
        self.every_s = every_s
        self._stopping = asyncio.Event()
        self._failing = False

    async def refresh(self) -> bool:
        """Read the revoked ids once; whether Redis answered."""
        try:
            self.ring.revoked = await revoked_ids(self.redis)
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("revoked keys not readable", extra={"error": type(exc).__name__})
            self._failing = True
            return False
        self._failing = False
        return True

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every_s)

    def stop(self) -> None:
        self._stopping.set()


def bearer_token(header: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` header; ``Unauthorized`` for anything else,
    including a key that is not printable ASCII (no key the gateway issues is)."""
    if not header:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <key>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization must be 'Bearer <key>'")
    if not (token.isascii() and token.isprintable()):
        raise Unauthorized("unknown API key")
    return token


def require_role(principal: Principal, *roles: Role) -> Principal:
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        raise Forbidden(f"this needs the role {allowed}; the key's role is {principal.role}")
    return principal


def require_org(principal: Principal, *orgs: str) -> Principal:
    """Admins see everything; anyone else only resources of their own org."""
    if principal.role is Role.ADMIN or principal.org in orgs:
        return principal
    raise Forbidden("this resource belongs to another organization")
