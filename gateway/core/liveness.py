"""Asking the provider whether a conference is still in progress.

Twilio does not retry a status callback, so a record that waits for one (a connected transfer
for its conference-end, a connected handback for its leg's end) is also checked now and then:
when the provider has no conference of that name in progress, nobody is in it any more. The
check is shared here so transfers and handbacks read the provider the same way.
"""

from __future__ import annotations

import logging

from gateway.core.ports import Telephony, TelephonyError

log = logging.getLogger(__name__)


async def conference_in_progress(telephony: Telephony, conference: str, **context: str) -> bool:
    """Whether a conference named ``conference`` is in progress. A check that fails counts as
    in progress (logged with ``context``): a guess never ends anything — look again later."""
    try:
        return await telephony.conference_live(conference)
    except TelephonyError as exc:
        log.warning("conference check failed", extra={**context, "error": str(exc)})
        return True
