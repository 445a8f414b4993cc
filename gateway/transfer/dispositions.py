"""Dispositions: how a connected transfer ended, recorded once by the center that took it.

``POST /v1/transfers/{id}/disposition`` (DESIGN.md §4) is allowed to the ``crisis_center`` keys
of the connected destination's org only, once, and only for a transfer that was connected
(``connected`` or ``completed``). The write is one Lua call (``gateway/core/lua/annotate.lua``) that
checks the state and that no disposition exists, writes it and appends the audit event — never a
read-modify-write from Python.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.core import keys
from gateway.core.auth import Principal, Role, require_role
from gateway.core.errors import Conflict, Forbidden
from gateway.core.metrics import Metrics
from gateway.core.records import Ops, Tally, write_once
from gateway.core.scripts import source
from gateway.policy.service import PolicyService
from gateway.reports import counters as reports
from gateway.transfer.models import Disposition, DispositionOutcome, Transfer, recorded_org
from gateway.transfer.states import TransferState
from gateway.transfer.store import TransferNotFound, TransferStore

log = logging.getLogger(__name__)

DISPOSABLE = (TransferState.CONNECTED, TransferState.COMPLETED)


class DispositionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: DispositionOutcome
    police_involved: bool = Field(strict=True)
    """A JSON boolean: ``"no"``, ``"false"`` or ``0`` are refused (422), as the screening
    answers are — the figure "resolved without police" counts on it."""


class DispositionService:
    def __init__(self, store: TransferStore, policy: PolicyService, metrics: Metrics) -> None:
        self.store = store
        self.policy = policy
        self.metrics = metrics
        self._annotate = store.redis.register_script(source("annotate"))

    async def record(
        self, transfer_id: str, request: DispositionRequest, principal: Principal
    ) -> Transfer:
        require_role(principal, Role.CRISIS_CENTER)
        transfer = await self.store.get(transfer_id)
        await self._authorize(transfer, principal)
        assert transfer.connected_destination_id is not None  # checked by _authorize
        disposition = Disposition(
            outcome=request.outcome,
            police_involved=request.police_involved,
            destination_id=transfer.connected_destination_id,
            recorded_at=datetime.now(UTC),
        )
        ops = Ops([keys.transfer(transfer_id), keys.transfer_audit(transfer_id)])
        if transfer.report_day is not None:
            ct, dest = str(transfer.caller_type), disposition.destination_id
            police = "yes" if request.police_involved else "no"
            figures = (reports.DISPOSITION + str(request.outcome), reports.POLICE + police)
            ops.tally(
                Tally(
                    transfer.psap_id,
                    transfer.report_day,
                    tuple(reports.counter_field(f, ct, dest) for f in figures),
                )
            )
        written = await write_once(
            self._annotate,
            ops,
            event="disposition",
            fields={"disposition": disposition.model_dump_json()},
            guards=["disposition"],
            states=DISPOSABLE,
            actor=principal.actor,
            audit={
                "outcome": str(request.outcome),
                "police_involved": json.dumps(request.police_involved),
            },
            audit_maxlen=self.store.audit_maxlen,
        )
        if written.status == "not_found":
            raise TransferNotFound(transfer_id)
        if written.status == "exists":
            raise Conflict(f"transfer {transfer_id} already has a disposition")
        if written.status == "state":
            raise Conflict(
                f"transfer {transfer_id} is {written.state}: only a connected or completed "
                "transfer takes a disposition",
                [{"state": written.state}],
            )
        self.metrics.dispositions.labels(str(request.outcome)).inc()
        log.info(
            "disposition recorded",
            extra={"transfer_id": transfer_id, "outcome": str(request.outcome)},
        )
        return await self.store.get(transfer_id)

    async def _authorize(self, transfer: Transfer, principal: Principal) -> None:
        """The connected destination's org only — the org recorded for it when the call was
        decided, so a later policy change neither locks that center out nor lets another in;
        another org gets 403 whatever the state."""
        loaded = await self.policy.current()
        connected = transfer.connected_destination_id
        if connected is not None:
            if recorded_org(loaded, transfer, connected) != principal.org:
                raise Forbidden("only the organization that took this transfer records its outcome")
            return
        chain = {recorded_org(loaded, transfer, d.id) for d in transfer.decision.destinations}
        if principal.org not in chain:
            raise Forbidden("this transfer was not routed to your organization")
        raise Conflict(
            f"transfer {transfer.id} is {transfer.state}: it was never connected",
            [{"state": str(transfer.state)}],
        )
