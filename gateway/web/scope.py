"""Whose request it is: the PSAP a request acts for, and the country its phone numbers are read
in (DESIGN.md §9).

- For a ``psap`` key, ``psap_id`` may be left out of a decision, a transfer or a report
  request: it is the key's org. Given and different from the key's org: 403, saying which org
  the key belongs to (``own_psap_id``). Other keys give ``psap_id`` (an admin's report without
  one covers every PSAP).
- A national phone number in a request (``(206) 555-0123``) is read in the ``country`` of the
  PSAP the request is about (``config/psaps.yaml``, default ``US``): a decision's or a transfer's
  ``psap_id``; a handback's ``psap_id``, or the PSAP of its ``transfer_id``.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from gateway.core.auth import Principal, Role
from gateway.core.errors import Forbidden
from gateway.core.phone import DEFAULT_REGION, phone_context
from gateway.handback.models import TRANSFER_ID_PATTERN, HandbackRequest
from gateway.policy.service import LoadedPolicy
from gateway.transfer.store import TransferNotFound
from gateway.web.appkeys import POLICY, STORE
from gateway.web.bodies import read_json, validate

M = TypeVar("M", bound=BaseModel)

_TRANSFER_ID = re.compile(TRANSFER_ID_PATTERN)


def own_psap_id(principal: Principal, given: Any) -> Any:
    """The ``psap_id`` a request acts for: for a ``psap`` key, ``given`` when it is the key's
    org, the key's org when ``given`` is None; other keys, ``given`` as it is.

    Raises ``Forbidden`` (403) when a ``psap`` key names another PSAP (a typo included): the
    message says which org the key belongs to and that ``psap_id`` may be left out. A
    ``given`` that is no string at all is returned for validation to refuse (422).
    """
    if principal.role is not Role.PSAP:
        return given
    if given is None:
        return principal.org
    if isinstance(given, str) and given != principal.org:
        raise Forbidden(
            f"psap_id {json.dumps(given[:64])} is not this key's organization: the key belongs "
            f"to PSAP {json.dumps(principal.org)}. Leave psap_id out to act for it."
        )
    return given


def psap_region(loaded: LoadedPolicy, psap_id: Any) -> str:
    """The country national numbers are read in for ``psap_id``: the PSAP's ``country``, or
    ``DEFAULT_REGION`` for an unknown or missing PSAP (refused later, on its own account)."""
    psap = loaded.document.psap(psap_id) if isinstance(psap_id, str) else None
    return psap.country if psap is not None else DEFAULT_REGION


async def read_call_request(request: web.Request, model: type[M], principal: Principal) -> M:
    """A decision or transfer body as ``model``: ``psap_id`` filled in or checked for a
    ``psap`` key (``own_psap_id``, 403), phone numbers read in that PSAP's country, unknown
    fields refused (422, ``validate``)."""
    data = await read_json(request)
    psap_id = own_psap_id(principal, data.get("psap_id"))
    if psap_id is not None:
        data["psap_id"] = psap_id
    loaded = await request.app[POLICY].current()
    return validate(model, data, context=phone_context(psap_region(loaded, psap_id)))


async def read_handback_request(request: web.Request) -> HandbackRequest:
    """A ``POST /v1/handbacks`` body, its ``callback_number`` read in the country of the PSAP
    handed back to: ``psap_id``'s, or the PSAP of ``transfer_id`` (read only when the number
    is given in a national format). Errors as ``validate``."""
    data = await read_json(request)
    psap_id = data.get("psap_id")
    number, transfer_id = data.get("callback_number"), data.get("transfer_id")
    national = isinstance(number, str) and not number.startswith("+")
    if national and isinstance(transfer_id, str) and _TRANSFER_ID.fullmatch(transfer_id):
        with contextlib.suppress(TransferNotFound):  # the service answers 404 for it
            psap_id = (await request.app[STORE].get(transfer_id, fresh=False)).psap_id
    loaded = await request.app[POLICY].current()
    return validate(HandbackRequest, data, context=phone_context(psap_region(loaded, psap_id)))
