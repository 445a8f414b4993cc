"""API keys: bearer tokens bound to one org and one role, stored only as SHA-256 digests.

The key file is ``<config dir>/api_keys.yaml``. ``python -m gateway keys new`` appends to it and
prints the key once; the gateway never sees a key again except as a digest. The file is re-read
when it changes, so a new key works without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.core.errors import Forbidden, Unauthorized

KEYS_FILE = "api_keys.yaml"
_ORG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class Role(StrEnum):
    PSAP = "psap"
    """A 911 center; its org is a ``psap_id``."""
    CRISIS_CENTER = "crisis_center"
    """A 988 center or clinician team; its org owns destinations."""
    ADMIN = "admin"
    """Administers the gateway; sees every org."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the org and role of the key, and a short non-secret key id for audit."""

    org: str
    role: Role
    key_id: str

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.org}:{self.key_id}"


class KeyRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    org: str = Field(pattern=_ORG_PATTERN)
    role: Role
    created_at: datetime | None = None
    label: str | None = None


class KeyFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: list[KeyRecord] = Field(default_factory=list)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(role: Role) -> str:
    return f"gw_{role.value}_{secrets.token_urlsafe(32)}"


def load_key_file(path: Path) -> KeyFile:
    if not path.exists():
        return KeyFile()
    try:
        raw: Any = yaml.safe_load(path.read_text()) or {}
        return KeyFile.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def add_key(config_dir: Path, *, org: str, role: Role, label: str | None = None) -> str:
    """Record a new key's digest in ``config_dir`` and return the key (its only appearance)."""
    path = config_dir / KEYS_FILE
    current = load_key_file(path)
    key = new_key(role)
    record = KeyRecord(
        digest=digest(key), org=org, role=role, created_at=datetime.now(UTC), label=label
    )
    updated = KeyFile(keys=[*current.keys, record])
    config_dir.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(updated.model_dump(mode="json", exclude_none=True), sort_keys=False)
    header = (
        "# API keys, stored only as SHA-256 digests; each is bound to one org and one role.\n"
        "# Add one with: python -m gateway keys new --org ORG --role psap|crisis_center|admin\n"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + body)
    os.replace(tmp, path)
    return key


class KeyRing:
    """The keys of one config directory, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._records: tuple[KeyRecord, ...] = ()
        self.reload()

    def reload(self) -> None:
        mtime = self.path.stat().st_mtime if self.path.exists() else None
        if mtime != self._mtime:
            self._records = tuple(load_key_file(self.path).keys)
            self._mtime = mtime

    def authenticate(self, key: str) -> Principal | None:
        self.reload()
        presented = digest(key)
        match: KeyRecord | None = None
        # Compare against every record, so timing does not tell how many digits matched.
        for record in self._records:
            if hmac.compare_digest(presented, record.digest):
                match = record
        if match is None:
            return None
        return Principal(org=match.org, role=match.role, key_id=match.digest[:12])


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
