"""``python -m gateway keys new|list|revoke``: the API keys of a config directory (DESIGN.md §9).

``new`` prints the key once, as the last line of its output, and records only its digest. It
refuses a ``psap`` org that is no configured PSAP id and a ``crisis_center`` org that no
destination names as its ``org`` — "configured" is the live policy in Redis when there is one
(it may have been changed with ``PUT /v1/admin/routing``), else the config files. ``list``
shows no secret. ``revoke`` marks the key revoked in the key file and publishes its id in Redis,
so that every gateway process refuses it within seconds, whichever copy of the file it reads.

Exit status: 0 done; 1 the key file changed but Redis could not be told (run it again); 2 bad
input (an unknown org, id or name; an unreadable key or policy file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway.cli.common import load_settings
from gateway.core import keys
from gateway.core.auth import (
    KEYS_FILE,
    UNNAMED,
    KeyRecord,
    Role,
    UnknownKeyId,
    add_key,
    digest,
    key_id_of,
    load_key_file,
    publish_revocation,
    revoke_key,
    revoked_ids,
)
from gateway.core.errors import GatewayError, validation_details
from gateway.core.redis_client import connect
from gateway.core.settings import Settings
from gateway.policy.loader import PolicyInvalid, load_config_dir
from gateway.policy.models import PolicyDocument

REDIS_TIMEOUT_S = 3.0


def _config_dir(args: argparse.Namespace, settings: Settings | None) -> Path:
    if args.config_dir:
        return Path(args.config_dir)
    return (settings or load_settings()).config_dir


def _redis_url(settings: Settings) -> str | None:
    """GATEWAY_REDIS_URL, else the embedded Redis of a running local ``serve``, else None (no
    gateway can be running: the key file is all there is)."""
    if settings.redis_url:
        return settings.redis_url
    socket = (settings.state_dir / "redis" / "redis.sock").resolve()
    return f"unix://{socket}" if socket.exists() else None


async def _live_policy(url: str, config_dir: Path) -> PolicyDocument | None:
    """The live policy in Redis; None when Redis holds none yet or cannot be read."""
    from gateway.policy.service import PolicyService

    async def no_load(ids: object) -> dict[str, int]:
        return {}

    redis = connect(url, socket_timeout_s=REDIS_TIMEOUT_S)
    try:
        if not await redis.exists(keys.POLICY_CURRENT):
            return None
        return (await PolicyService(redis, config_dir, no_load).current()).document
    except (RedisError, OSError, GatewayError):
        return None
    finally:
        await redis.aclose()


def known_orgs(document: PolicyDocument, role: Role) -> list[str] | None:
    """The orgs a key of ``role`` may be bound to; None: any (admin)."""
    if role is Role.PSAP:
        return sorted(p.id for p in document.psaps)
    if role is Role.CRISIS_CENTER:
        return sorted({d.org for d in document.destinations})
    return None


def _policy_for(config_dir: Path, settings: Settings | None) -> tuple[PolicyDocument, str]:
    """The policy that says which orgs exist, and where it was read."""
    url = _redis_url(settings) if settings is not None else None
    if url is not None:
        live = asyncio.run(_live_policy(url, config_dir))
        if live is not None:
            return live, "the live policy"
    return load_config_dir(config_dir), f"the policy files in {config_dir}"


def cmd_new(args: argparse.Namespace) -> int:
    role = Role(args.role)
    settings = load_settings()
    config_dir = _config_dir(args, settings)
    if role is not Role.ADMIN:
        try:
            document, source = _policy_for(config_dir, settings)
        except PolicyInvalid as exc:
            problems = "; ".join(f"{e['path']}: {e['message']}" for e in exc.errors[:3])
            print(f"keys new: cannot check --org in {config_dir}: {problems}", file=sys.stderr)
            return 2
        allowed = known_orgs(document, role) or []
        if args.org not in allowed:
            what = "PSAP id" if role is Role.PSAP else "org of any destination"
            print(
                f"keys new: --org {args.org!r} is no {what} in {source}; "
                f"known: {', '.join(allowed) or 'none'}",
                file=sys.stderr,
            )
            return 2
    try:
        key = add_key(config_dir, org=args.org, role=role, name=args.name)
    except ValidationError as exc:
        for detail in validation_details(exc):
            print(f"keys new: --{detail['path']}: {detail['message']}", file=sys.stderr)
        return 2
    except ValueError as exc:  # an unreadable key file
        print(f"keys new: {exc}", file=sys.stderr)
        return 2
    print(
        f"New {role} key {key_id_of(digest(key))} for {args.org}, held by {args.name}, "
        f"recorded in {config_dir / KEYS_FILE}."
    )
    print("It is shown once; store it now. `keys revoke` takes the id above.")
    print(key)
    return 0


def _row(record: KeyRecord, published: frozenset[str]) -> dict[str, object]:
    return {
        "id": record.id,
        "org": record.org,
        "role": str(record.role),
        "name": record.name,
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "revoked": record.revoked or record.id in published,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


async def _published_revocations(url: str) -> frozenset[str]:
    redis = connect(url, socket_timeout_s=REDIS_TIMEOUT_S)
    try:
        return await revoked_ids(redis)
    finally:
        await redis.aclose()


def cmd_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    config_dir = _config_dir(args, settings)
    try:
        records = load_key_file(config_dir / KEYS_FILE).keys
    except ValueError as exc:
        print(f"keys list: {exc}", file=sys.stderr)
        return 2
    # A key revoked from another machine is in Redis, not (yet) in this copy of the file.
    published: frozenset[str] = frozenset()
    url = _redis_url(settings)
    if url is not None:
        try:
            published = asyncio.run(_published_revocations(url))
        except (RedisError, OSError) as exc:
            print(
                f"keys list: revocations in Redis not read ({type(exc).__name__}); "
                "showing the key file's alone",
                file=sys.stderr,
            )
    rows = [_row(r, published) for r in records]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("id", "org", "role", "name", "created_at", "revoked")
    cells = [
        [
            str(row["id"]),
            str(row["org"]),
            str(row["role"]),
            str(row["name"]),
            str(row["created_at"] or "-"),
            str(row["revoked_at"] or ("yes (in Redis)" if row["revoked"] else "no")),
        ]
        for row in rows
    ]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    settings = load_settings()
    config_dir = _config_dir(args, settings)
    try:
        record = revoke_key(config_dir, args.key_id)
    except UnknownKeyId as exc:
        print(f"keys revoke: {exc} in {config_dir / KEYS_FILE}", file=sys.stderr)
        return 2
    except ValueError as exc:  # an unreadable key file
        print(f"keys revoke: {exc}", file=sys.stderr)
        return 2
    print(
        f"Revoked key {record.id} ({record.role}:{record.org}:{record.name}) in "
        f"{config_dir / KEYS_FILE}."
    )
    url = _redis_url(settings)
    if url is None:
        print("No Redis configured or running: the key file alone carries the revocation.")
        return 0

    async def publish() -> None:
        redis = connect(url, socket_timeout_s=REDIS_TIMEOUT_S)
        try:
            await publish_revocation(redis, record.id)
        finally:
            await redis.aclose()

    try:
        asyncio.run(publish())
    except (RedisError, OSError) as exc:
        print(
            f"keys revoke: could not publish the revocation in Redis ({type(exc).__name__}); "
            "processes reading another copy of the key file still accept the key. "
            "Run this again once Redis answers.",
            file=sys.stderr,
        )
        return 1
    print("Published in Redis: every gateway process refuses it within seconds.")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("keys", help="API keys: new, list, revoke")
    keys_sub = parser.add_subparsers(dest="keys_command", required=True)
    config_help = "config directory (default: GATEWAY_CONFIG_DIR)"

    new = keys_sub.add_parser("new", help="create a key; prints it once, as the last line")
    new.add_argument("--org", required=True, help="psap_id for psap keys, org for the others")
    new.add_argument("--role", required=True, choices=[r.value for r in Role])
    new.add_argument(
        "--name",
        default=UNNAMED,
        help="the person or system holding the key; the audit names it (default: unnamed)",
    )
    new.add_argument("--config-dir", help=config_help)
    new.set_defaults(func=cmd_new)

    listing = keys_sub.add_parser("list", help="every key: id, org, role, name, created, revoked")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.add_argument("--config-dir", help=config_help)
    listing.set_defaults(func=cmd_list)

    revoke = keys_sub.add_parser(
        "revoke", help="refuse a key on every gateway process (401 within seconds)"
    )
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id `keys list` shows")
    revoke.add_argument("--config-dir", help=config_help)
    revoke.set_defaults(func=cmd_revoke)
