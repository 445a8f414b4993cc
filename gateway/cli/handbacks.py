"""``python -m gateway handbacks list|eido``: the handbacks in Redis, for a PSAP without a CAD
endpoint (its EIDOs are kept, DESIGN.md §8) or an administrator following one up."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core import keys
from gateway.core.errors import Invalid
from gateway.core.paging import MAX_LIMIT, decode_cursor
from gateway.core.redis_client import connect
from gateway.handback.models import HandbackPage, HandbackView
from gateway.handback.states import HandbackState
from gateway.handback.store import HandbackNotFound, HandbackStore

T = TypeVar("T")


def _run(name: str, work: Callable[[Redis], Awaitable[T]]) -> T | int:
    """Run ``work`` against the gateway's Redis; an exit status when it cannot be reached."""
    from gateway.cli.common import load_settings, running_redis_url

    settings = load_settings()
    url = running_redis_url(settings)

    async def run() -> T:
        redis = connect(url, socket_timeout_s=settings.redis_socket_timeout_s)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except (RedisError, OSError) as exc:
        print(f"handbacks {name}: cannot reach Redis ({type(exc).__name__})", file=sys.stderr)
        return 1


def render(views: list[HandbackView]) -> str:
    header = ("created_at", "id", "psap", "state", "mode", "cad", "flags")
    rows = [
        (
            v.created_at.isoformat(timespec="seconds"),
            v.id,
            v.psap_id,
            str(v.state),
            v.mode,
            v.cad.status,
            ",".join(v.flags) or "-",
        )
        for v in views
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def cmd_list(args: argparse.Namespace) -> int:
    state = HandbackState(args.state) if args.state else None
    try:
        before = None if args.cursor is None else decode_cursor(args.cursor)
    except Invalid:
        print("handbacks list: --cursor is not a next_cursor this gateway gave", file=sys.stderr)
        return 2

    async def find(redis: Redis) -> HandbackPage:
        store = HandbackStore(redis)
        index = keys.psap_handbacks(args.psap) if args.psap else keys.HANDBACKS_ALL
        found = await store.page(
            index,
            keep=lambda h: state is None or h.state is state,
            before=before,
            limit=args.limit,
        )
        return HandbackPage(
            items=[HandbackView.of(h, readable=True) for h in found.items],
            next_cursor=found.cursor,
        )

    page = _run("list", find)
    if isinstance(page, int):
        return page
    if args.format == "json":
        hidden = {"items": {"__all__": {"bridge_code", "bridge_number"}}}
        print(page.model_dump_json(exclude=hidden, indent=2))
    else:
        print(render(page.items) if page.items else "no handbacks")
        if page.next_cursor is not None:
            print(f"more: --cursor {page.next_cursor}")
    return 0


def cmd_eido(args: argparse.Namespace) -> int:
    async def read(redis: Redis) -> str | None:
        try:
            return await HandbackStore(redis).eido(args.id)
        except HandbackNotFound:
            return None

    document = _run("eido", read)
    if isinstance(document, int):
        return document
    if document is None:
        print(f"handbacks eido: handback {args.id} not found", file=sys.stderr)
        return 1
    print(document)  # exactly as sent to CAD (or kept for the PSAP)
    return 0


def _limit(value: str) -> int:
    limit = int(value)
    if not 1 <= limit <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"from 1 to {MAX_LIMIT}")
    return limit


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    handbacks = sub.add_parser("handbacks", help="handbacks 988 → 911 and their EIDOs")
    handbacks_sub = handbacks.add_subparsers(dest="handbacks_command", required=True)

    listing = handbacks_sub.add_parser("list", help="handbacks, newest first")
    listing.add_argument("--psap", help="one PSAP (default: every PSAP)")
    listing.add_argument("--state", choices=[s.value for s in HandbackState])
    listing.add_argument("--limit", type=_limit, default=50, help="at most this many (50)")
    listing.add_argument("--cursor", help="go on from a page's next_cursor")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(func=cmd_list)

    eido = handbacks_sub.add_parser("eido", help="print a handback's EIDO (JSON) as sent")
    eido.add_argument("id", help="the handback id (hb_…)")
    eido.set_defaults(func=cmd_eido)


__all__ = ["add_parser", "cmd_eido", "cmd_list"]
