"""``python -m gateway rules check|explain``: the policy, offline (the config files, no Redis).

``check`` exits 0 with a one-line summary, or 1 listing every error as ``path: message``.
``explain`` prints the decision JSON, then the trace of why (live load is taken as 0).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from gateway.policy.decision import SCREENING_FLAGS, CallerType, DecisionRequest
from gateway.policy.engine import UnknownPsap, explain
from gateway.policy.loader import PolicyInvalid, load_config_dir

_VALUES = {"true": True, "false": False, "null": None}


def config_dir_of(args: argparse.Namespace, positional: str | None = None) -> Path:
    chosen = positional or args.config_dir or os.environ.get("GATEWAY_CONFIG_DIR") or "config"
    return Path(chosen)


def _print_errors(errors: list[dict[str, str]]) -> None:
    for error in errors:
        print(f"{error['path']}: {error['message']}")
    print(f"{len(errors)} error{'s' if len(errors) != 1 else ''}")


def cmd_check(args: argparse.Namespace) -> int:
    directory = config_dir_of(args, args.dir)
    try:
        doc = load_config_dir(directory)
    except PolicyInvalid as exc:
        print(f"{directory}: INVALID")
        _print_errors(exc.errors)
        return 1
    print(
        f"{directory}: OK — {len(doc.psaps)} PSAP(s), {len(doc.destinations)} destination(s), "
        f"{len(doc.policy.rules)} rule(s), hop limit {doc.policy.hop_limit}"
    )
    return 0


def _flag(text: str) -> tuple[str, bool | None]:
    name, sep, value = text.partition("=")
    if not sep or name not in SCREENING_FLAGS or value.lower() not in _VALUES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=true|false|null, NAME one of {', '.join(SCREENING_FLAGS)}"
        )
    return name, _VALUES[value.lower()]


def cmd_explain(args: argparse.Namespace) -> int:
    directory = config_dir_of(args)
    try:
        doc = load_config_dir(directory)
    except PolicyInvalid as exc:
        print(f"{directory}: INVALID")
        _print_errors(exc.errors)
        return 1
    psap = doc.psap(args.psap)
    if psap is None:
        known = ", ".join(p.id for p in doc.psaps)
        print(f"unknown PSAP {args.psap!r} (known: {known})")
        return 1
    at = datetime.now(UTC)
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            print(f"--at {args.at!r}: not an ISO 8601 date-time")
            return 2
        if at.tzinfo is None:  # a local time at the PSAP
            at = at.replace(tzinfo=psap.zone)
    try:
        request = DecisionRequest(
            psap_id=args.psap,
            caller_type=CallerType(args.caller_type),
            screening=dict(args.flag or []),
            language=args.language,
            transfers_so_far=args.transfers_so_far,
            tags=args.tag or [],
            at=at,
        )
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            print(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
        return 2
    try:
        result = explain(doc, request, at=at, load={})
    except UnknownPsap as exc:  # pragma: no cover - checked above
        print(exc.message)
        return 1
    print(json.dumps(result.decision.model_dump(mode="json"), indent=2))
    print()
    print("why (offline: the config files, policy_version 0, live load 0):")
    for line in result.trace:
        print(f"  - {line}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="check and explain the routing policy (offline)")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)

    check = rules_sub.add_parser("check", help="validate the policy files; list every error")
    check.add_argument("dir", nargs="?", help="config directory (default: GATEWAY_CONFIG_DIR)")
    check.add_argument("--config-dir", help="config directory (same as DIR)")
    check.set_defaults(func=cmd_check)

    exp = rules_sub.add_parser("explain", help="decide one call offline and say why")
    exp.add_argument("--config-dir", help="config directory (default: GATEWAY_CONFIG_DIR)")
    exp.add_argument("--psap", required=True, help="psap_id")
    exp.add_argument("--caller-type", required=True, choices=[c.value for c in CallerType])
    exp.add_argument(
        "--flag",
        action="append",
        type=_flag,
        metavar="NAME=true|false|null",
        help="a screening answer (repeatable); unset flags are null (not asked)",
    )
    exp.add_argument("--language", default="en", help="BCP 47 (default en)")
    exp.add_argument("--tag", action="append", help="a request tag (repeatable)")
    exp.add_argument("--transfers-so-far", type=int, default=0)
    exp.add_argument(
        "--at",
        help="ISO 8601 instant (default now); without an offset, local time at the PSAP",
    )
    exp.set_defaults(func=cmd_explain)
