"""Reading and validating a policy: from ``config/`` files or from a JSON document.

Every error comes back at once, each as ``{"path", "message"}``. The three sections (``psaps``,
``destinations``, ``policy``) are validated separately, so a bad PSAP does not hide a bad rule,
and the checks within a section (``gateway.policy.models``) run even when other fields fail.
Duplicate ids and references between sections (rule chains, ``while_open``, PSAP fallbacks →
destinations) are then checked on the raw document, so they too are reported whatever else is
wrong.

Files: ``psaps.yaml`` (``psaps: [...]``), ``destinations.yaml`` (``destinations: [...]``) and
``policy.yaml`` (``policy: {...}``). Paths of file errors start with the file name, e.g.
``destinations.yaml:destinations.2.number``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.core.errors import Invalid
from gateway.policy.models import Destination, Policy, PolicyDocument, Psap

FILES: dict[str, str] = {
    "psaps": "psaps.yaml",
    "destinations": "destinations.yaml",
    "policy": "policy.yaml",
}
"""Section of the document → the file in the config directory that holds it."""

PolicyError = dict[str, str]


class PolicyInvalid(Invalid):
    """A policy that must not become live; ``errors`` (also ``details``) lists every fault."""

    def __init__(self, errors: list[PolicyError]) -> None:
        count = len(errors)
        super().__init__(f"the policy has {count} error{'s' if count != 1 else ''}", errors)
        self.errors = errors


def _path(parts: tuple[int | str, ...] | list[int | str]) -> str:
    return ".".join(str(p) for p in parts) or "$"


def _pydantic_errors(prefix: tuple[int | str, ...], exc: ValidationError) -> list[PolicyError]:
    details = exc.errors(include_url=False, include_input=False)
    out: list[PolicyError] = []
    for err in details:
        if err["type"] == "too_short" and _has_bad_items(err["loc"], details):
            continue  # "too short" only because its bad items (each reported) were not counted
        message = err["msg"].removeprefix("Value error, ")
        out.append({"path": _path((*prefix, *err["loc"])), "message": message})
    return out


def _has_bad_items(loc: tuple[int | str, ...], details: list[ErrorDetails]) -> bool:
    return any(len(d["loc"]) > len(loc) and d["loc"][: len(loc)] == loc for d in details)


def _section(
    name: str, raw: Any, model: type[BaseModel], errors: list[PolicyError]
) -> list[Any] | Any | None:
    """Validate one section: a list of ``model`` (psaps, destinations) or one ``model``."""
    if name == "policy":
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_pydantic_errors((name,), exc))
            return None
    if not isinstance(raw, list):
        errors.append({"path": name, "message": "must be a list"})
        return None
    if not raw:
        errors.append({"path": name, "message": f"must list at least one {name[:-1]}"})
        return None
    items: list[Any] = []
    for index, item in enumerate(raw):
        try:
            items.append(model.model_validate(item))
        except ValidationError as exc:
            errors.extend(_pydantic_errors((name, index), exc))
    return items


def _raw_items(raw: Any) -> list[tuple[int, Mapping[str, Any]]]:
    """The objects of a raw list, with their indexes (anything else is left to validation)."""
    if not isinstance(raw, list | tuple):
        return []
    return [(index, item) for index, item in enumerate(raw) if isinstance(item, Mapping)]


def _raw_ids(raw: Any) -> list[tuple[int, str]]:
    return [
        (index, item["id"]) for index, item in _raw_items(raw) if isinstance(item.get("id"), str)
    ]


def _duplicates(section: str, ids: list[tuple[int, str]], errors: list[PolicyError]) -> None:
    seen: set[str] = set()
    for index, item_id in ids:
        if item_id in seen:
            errors.append({"path": f"{section}.{index}.id", "message": f"duplicate id {item_id!r}"})
        seen.add(item_id)


def _cross_checks(data: Mapping[str, Any], errors: list[PolicyError]) -> None:
    """Duplicate ids, and references to destinations, read from the raw document: they are
    reported whatever else fails, even in an item or a section that did not validate."""
    raw_dests = data.get("destinations")
    raw_policy = data.get("policy")
    raw_rules = raw_policy.get("rules") if isinstance(raw_policy, Mapping) else None
    dest_ids = _raw_ids(raw_dests)
    _duplicates("psaps", _raw_ids(data.get("psaps")), errors)
    _duplicates("destinations", dest_ids, errors)
    _duplicates("policy.rules", _raw_ids(raw_rules), errors)
    if not isinstance(raw_dests, list | tuple):
        return  # which destinations exist is unknown; that section's own error is reported
    known = {dest_id for _, dest_id in dest_ids}
    reported = {error["path"] for error in errors}  # e.g. an id that is not an id at all

    def reference(path: str, dest_id: Any) -> None:
        if isinstance(dest_id, str) and dest_id not in known and path not in reported:
            errors.append({"path": path, "message": f"unknown destination {dest_id!r}"})

    for index, psap in _raw_items(data.get("psaps")):
        reference(f"psaps.{index}.fallback_destination", psap.get("fallback_destination"))
    for r_index, rule in _raw_items(raw_rules):
        match = rule.get("match")
        while_open = match.get("while_open") if isinstance(match, Mapping) else None
        for field, ids in (("chain", rule.get("chain")), ("match.while_open", while_open)):
            if isinstance(ids, list | tuple):
                for d_index, dest_id in enumerate(ids):
                    reference(f"policy.rules.{r_index}.{field}.{d_index}", dest_id)


def validate_document(data: Any) -> PolicyDocument:
    """``data`` (parsed JSON or YAML) as a ``PolicyDocument``, or ``PolicyInvalid``."""
    if not isinstance(data, Mapping):
        raise PolicyInvalid([{"path": "$", "message": "the policy document must be an object"}])
    errors: list[PolicyError] = []
    for key in data:
        if key not in FILES:
            errors.append(
                {"path": str(key), "message": "unknown section (psaps, destinations, policy)"}
            )
    for key in FILES:
        if key not in data:
            errors.append({"path": key, "message": "section missing"})

    psaps = _section("psaps", data.get("psaps"), Psap, errors) if "psaps" in data else None
    dests = (
        _section("destinations", data.get("destinations"), Destination, errors)
        if "destinations" in data
        else None
    )
    policy = _section("policy", data.get("policy"), Policy, errors) if "policy" in data else None
    _cross_checks(data, errors)
    if errors:
        raise PolicyInvalid(errors)
    assert psaps is not None
    assert dests is not None
    assert isinstance(policy, Policy)
    return PolicyDocument(psaps=tuple(psaps), destinations=tuple(dests), policy=policy)


def _read_yaml(path: Path, errors: list[PolicyError]) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        errors.append({"path": path.name, "message": "file missing"})
        return None
    except OSError as exc:
        errors.append({"path": path.name, "message": f"cannot read: {exc.strerror}"})
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        errors.append({"path": f"{path.name}{where}", "message": f"YAML: {problem}"})
        return None


def read_config_dir(path: Path) -> tuple[dict[str, Any], list[PolicyError]]:
    """The sections the files hold (unvalidated), and the errors of files that could not be
    read as one."""
    errors: list[PolicyError] = []
    data: dict[str, Any] = {}
    for section, filename in FILES.items():
        before = len(errors)
        raw = _read_yaml(path / filename, errors)
        if len(errors) > before:
            continue
        if not isinstance(raw, dict) or set(raw) != {section}:
            errors.append(
                {"path": filename, "message": f"must hold exactly one top-level key, '{section}'"}
            )
            continue
        data[section] = raw[section]
    return data, errors


def load_config_dir(path: Path | str) -> PolicyDocument:
    """The policy in ``path`` (``psaps.yaml``, ``destinations.yaml``, ``policy.yaml``), or
    ``PolicyInvalid`` listing every error, each path prefixed with its file's name."""
    directory = Path(path)
    data, errors = read_config_dir(directory)
    try:
        document = validate_document(data)
    except PolicyInvalid as exc:
        unread = {e["path"].split(":", 1)[0] for e in errors}
        for error in exc.errors:
            section = error["path"].split(".", 1)[0]
            if FILES.get(section) in unread and error["message"] == "section missing":
                continue  # already reported as the file's own error
            errors.append(_in_file(error))
    if errors:
        raise PolicyInvalid(errors)
    return document


def _in_file(error: PolicyError) -> PolicyError:
    section = error["path"].split(".", 1)[0]
    filename = FILES.get(section)
    if filename is None:
        return error
    return {"path": f"{filename}:{error['path']}", "message": error["message"]}
