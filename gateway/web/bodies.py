"""Reading request bodies into pydantic models, with errors a client can act on."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import BadRequest, Invalid

M = TypeVar("M", bound=BaseModel)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Each error as its path and message — never the offending value, which may be personal."""
    return [
        {
            "path": ".".join(str(part) for part in err["loc"]) or "$",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


async def read_model(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("request body must be a JSON object")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise BadRequest(f"malformed JSON{where}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(f"{exc.error_count()} invalid field(s)", validation_details(exc)) from None
