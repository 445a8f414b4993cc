"""The bridge line's webhooks (``/twilio/...``).

Every request must carry a valid ``X-Twilio-Signature`` computed on the PUBLIC URL
(``GATEWAY_PUBLIC_BASE_URL`` + path + query), never the URL this process sees behind a proxy.
Handlers answer fast; REST calls they cause run afterwards in the app's task set. Every callback
is claimed by its own identity (CallSid + CallStatus, ConferenceSid + SequenceNumber) before it
acts, so a repeat changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from gateway.core.errors import BadRequest, NotFound
from gateway.handback import Handback
from gateway.policy.service import PolicyService
from gateway.transfer.models import AttemptOutcome, Transfer
from gateway.transfer.service import attempt_of_label
from gateway.transfer.store import TransferNotFound
from gateway.web.appkeys import HANDBACKS, METRICS, OUTAGES, POLICY, SETTINGS, TRANSFERS
from gateway.web.bodies import Form, read_form
from gateway.web.middlewares import error_response
from gateway.web.routes import Route

log = logging.getLogger(__name__)

PARAMS = web.RequestKey("twilio_params", dict[str, str])
TWIML = "application/xml"

_OUTCOMES: Mapping[str, AttemptOutcome] = {
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "cancelled",
}

PROMPT = "Nine one one transfer line. Enter the six digit transfer code."
WRONG_CODE = "That code was not recognized."
GIVE_UP = (
    "The transfer code could not be verified. No transfer was made. "
    "This call stays with nine one one."
)
CONNECTING = "Connecting to a crisis counselor. Please stay on the line."
CONNECTING_911 = "Connecting to nine one one. Please stay on the line."
ANNOUNCEMENTS = {
    "exhausted": (
        "No crisis counselor could be reached. The transfer has ended and this call stays "
        "with nine one one. Please stay with the caller."
    ),
}
FALLBACK = "The transfer line is unavailable. Connecting to the crisis line."
FALLBACK_911 = "The transfer line is unavailable. Connecting to nine one one."
CALL_STEP_BUDGET_S = 8.0
"""A step of the call answers within this, or with the fallback: Twilio gives up on a webhook
after 15 s, and an error (or no answer) from an action URL ends the call."""


def _twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type=TWIML)


@web.middleware
async def twilio_signature_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any ``/twilio`` request not signed by Twilio for its public URL (403).

    The body is read once, here, through ``read_form``: a body that is not a readable form is
    400/413/415 before any signature check. The signature covers every value of a repeated
    name (as Twilio signs them); handlers get ``PARAMS``, the last value of each name.
    """
    if not request.path.startswith("/twilio/"):
        return await handler(request)
    settings = request.app[SETTINGS]
    # 400/413/415 for a body that is not a readable form; a repeated name keeps every value.
    form = await read_form(request)
    signature = request.headers.get("X-Twilio-Signature", "")
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    url = settings.public_url(request.path_qs)
    if not (token and signature and _signed(token, url, form, signature)):
        request.app[METRICS].signature_failures.labels(request.path.split("/")[2]).inc()
        log.warning("twilio signature refused", extra={"path": request.path})
        return error_response(403, "forbidden", "invalid or missing X-Twilio-Signature")
    request[PARAMS] = twilio_params(form)
    return await handler(request)


# The parameters the gateway reads, each with the shape Twilio gives it. Anything else may
# repeat or look like anything: it is signed, and passed over.
_READ_PARAMS: Mapping[str, re.Pattern[str]] = {
    "CallSid": re.compile(r"[A-Za-z0-9]{2,64}"),
    "ConferenceSid": re.compile(r"[A-Za-z0-9]{2,64}"),
    "CallStatus": re.compile(r"[a-z-]{1,32}"),
    "ParticipantCallStatus": re.compile(r"[a-z-]{1,32}"),
    "StatusCallbackEvent": re.compile(r"[a-z-]{1,32}"),
    "ReasonParticipantLeft": re.compile(r"[a-z_]{1,64}"),
    "SequenceNumber": re.compile(r"[0-9]{1,9}"),
    "Digits": re.compile(r"[0-9*#]{0,32}"),
    "From": re.compile(r"[^\x00-\x1f]{0,64}"),
    "To": re.compile(r"[^\x00-\x1f]{0,64}"),
}


def twilio_params(form: Form) -> dict[str, str]:
    """One value per parameter, as handlers read them. A parameter the gateway reads given
    twice with different values, or not in the shape Twilio gives it, is a 400 naming it:
    which of two ``CallStatus`` or ``Digits`` to believe is not a guess to make."""
    given: dict[str, set[str]] = {}
    for name, value in form.pairs:
        if name in _READ_PARAMS:
            given.setdefault(name, set()).add(value)
    bad = [
        {"path": name, "message": "repeated with different values, or malformed"}
        for name, shape in _READ_PARAMS.items()
        if name in given
        and (len(given[name]) > 1 or any(shape.fullmatch(v) is None for v in given[name]))
    ]
    if bad:
        raise BadRequest("unreadable Twilio parameters", bad)
    return form.params


_ATTEMPT = re.compile(r"[1-9][0-9]?")


def attempt_param(request: web.Request) -> int:
    """The ``attempt`` a status callback URL names (1 to 99, ASCII digits); 404 otherwise."""
    raw = request.query.getall("attempt", [])
    if len(raw) != 1 or _ATTEMPT.fullmatch(raw[0]) is None:
        raise NotFound("unknown attempt")
    return int(raw[0])


@functools.cache
def _validator(token: str) -> RequestValidator:
    """One validator per auth token (a process has one), not one per request."""
    return RequestValidator(token)


def _signed(token: str, url: str, form: Form, signature: str) -> bool:
    """Whether Twilio signed ``form`` for ``url``. The signature over the URL exactly as
    configured is computed first — the one Twilio sends; only when it differs is the
    library's full check run, which also tries the URL with and without its port."""
    validator = _validator(token)
    params = form.multi
    expected = validator.compute_signature(url, params)
    if hmac.compare_digest(expected.encode(), signature.encode()):
        return True
    return bool(validator.validate(url, params, signature))


def _params(request: web.Request) -> dict[str, str]:
    return request[PARAMS]


def _with_psap(request: web.Request, path: str) -> str:
    """``path`` carrying the ``psap`` the bridge number's voice URL names (so every step can
    dial that PSAP's fallback destination), as a public URL."""
    psap = request.query.get("psap")
    query = "?" + urlencode({"psap": psap}) if psap else ""
    return request.app[SETTINGS].public_url(path + query)


def _gather(request: web.Request, response: VoiceResponse, say: str) -> VoiceResponse:
    return _gather_to(response, _with_psap(request, "/twilio/voice/code"), say)


def _gather_to(response: VoiceResponse, action: str, say: str) -> VoiceResponse:
    gather = response.gather(input="dtmf", num_digits=6, timeout=10, action=action, method="POST")
    gather.say(say)
    # No digits before the Gather times out: the same handler counts it as a wrong try.
    response.redirect(action, method="POST")
    return response


@functools.lru_cache(maxsize=64)
def _prompt(action: str) -> str:
    """The voice URL's TwiML for the code's ``action`` URL (one per PSAP): built once, not on
    every call (building TwiML costs about 60 µs)."""
    return str(_gather_to(VoiceResponse(), action, PROMPT))


def call_step(handler: Handler) -> Handler:
    """A step of the call itself (the voice URL, the code, the hold): on Twilio an error answer
    to an action URL ends the call, and the number's fallback URL serves only its voice URL. So
    whatever fails here — Redis unreachable, anything unexpected — the answer is still TwiML
    that keeps the caller: the PSAP's fallback destination is dialed, as ``/twilio/fallback``
    does, from the configuration alone."""

    async def step(request: web.Request) -> web.StreamResponse:
        try:
            async with asyncio.timeout(CALL_STEP_BUDGET_S):
                return await handler(request)
        except Exception as exc:
            if isinstance(exc, RedisError | TimeoutError):
                request.app[METRICS].redis_errors.inc()
                request.app[OUTAGES].note("call step")
            log.error(
                "call step failed; dialing the fallback destination",
                extra={"path": request.path, "error": type(exc).__name__},
            )
            return _fallback_twiml(
                request.app[POLICY], request.query.get("psap"), _params(request).get("From", "")
            )

    return step


def status_callback(handler: Handler) -> Handler:
    """A status callback (conference or participant). Twilio does not retry one answered with
    an error, so a failure here may have lost what it reported: the outage watch reconciles
    with the provider once Redis answers again."""

    async def callback(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (NotFound, web.HTTPException):
            raise
        except Exception:
            request.app[OUTAGES].note("status callback")
            raise

    return callback


async def voice(request: web.Request) -> web.Response:
    """A call to the bridge line: ask for the transfer code."""
    return web.Response(text=_prompt(_with_psap(request, "/twilio/voice/code")), content_type=TWIML)


async def voice_code(request: web.Request) -> web.StreamResponse:
    """The code keyed in: one Redis call redeems it (a transfer's or a handback's — one code
    space) or counts a wrong try; a transfer's is bridged with a second."""
    settings = request.app[SETTINGS]
    params = _params(request)
    call_sid = params.get("CallSid", "")
    service = request.app[TRANSFERS]
    result = await service.redeem(call_sid, params.get("Digits", "").strip())
    if result.handback_id is not None:
        handback = await request.app[HANDBACKS].bridge(result.handback_id, call_sid)
        if handback is not None:
            return await _handback_bridge(request, handback)
    if result.transfer is None:
        response = VoiceResponse()
        if result.tries >= settings.code_tries:
            response.say(GIVE_UP)
            response.redirect(_with_psap(request, "/twilio/voice/hold"), method="POST")
            return _twiml(response)
        return _twiml(_gather(request, response, WRONG_CODE + " " + PROMPT))

    transfer = result.transfer
    return await _into_conference(
        request,
        transfer.id,
        say=CONNECTING,
        status_path=f"/twilio/conference/{transfer.id}",
        then=lambda: service.start_dialing(transfer),
    )


async def _into_conference(
    request: web.Request, name: str, *, say: str, status_path: str, then: Callable[[], None]
) -> web.StreamResponse:
    """Put the leg into conference ``name`` (events to ``status_path``); ``then`` — the dial —
    runs only once the TwiML has been written out, never before."""
    response = VoiceResponse()
    response.say(say)
    response.dial().conference(
        name,
        start_conference_on_enter=True,
        end_conference_on_exit=False,
        beep=False,
        wait_url="",
        status_callback=request.app[SETTINGS].public_url(status_path),
        status_callback_event="start end join leave",
        status_callback_method="POST",
    )
    answer = _twiml(response)
    await answer.prepare(request)
    await answer.write_eof()
    then()
    return answer


async def _handback_bridge(request: web.Request, handback: Handback) -> web.StreamResponse:
    """A 988 center keyed a handback code in: its leg goes into the handback's own conference
    (named by the handback id), and only after the TwiML is out is the PSAP dialed."""
    return await _into_conference(
        request,
        handback.id,
        say=CONNECTING_911,
        status_path=f"/twilio/conference/handback/{handback.id}",
        then=lambda: request.app[HANDBACKS].start_dialing(handback),
    )


async def hold(request: web.Request) -> web.Response:
    """Keep the call-taker's leg open and silent: the gateway never hangs up on a caller."""
    response = VoiceResponse()
    response.pause(length=60)
    response.redirect(_with_psap(request, "/twilio/voice/hold"), method="POST")
    return _twiml(response)


async def _transfer(request: web.Request, attempt: int | None = None) -> Transfer:
    """The transfer a callback is about, as this process knows it (``TransferService.view``);
    404 for a transfer Redis has no record of."""
    try:
        return await request.app[TRANSFERS].view(request.match_info["id"], attempt)
    except TransferNotFound:
        raise NotFound("unknown transfer") from None


async def conference_event(request: web.Request) -> web.Response:
    """The transfer's conference reports (Twilio's conference status callback). Each event is
    applied through the transfer's state machine, whose guards make a repeated or late event
    change nothing — one Redis call when it changes something, none when it cannot."""
    params = _params(request)
    service = request.app[TRANSFERS]
    transfer = await _transfer(request)
    event = params.get("StatusCallbackEvent", "")
    call_sid = params.get("CallSid", "")
    label = params.get("ParticipantLabel", "")
    ours = call_sid == transfer.psap_call_sid or attempt_of_label(label) is not None
    if event == "participant-join" and call_sid and call_sid != transfer.psap_call_sid:
        attempt = await service.attempt_of_call(transfer.id, call_sid, label)
        if attempt is not None:
            await service.answered(transfer.id, attempt)
    elif event == "participant-leave":
        if params.get("ReasonParticipantLeft") == "participant_add_failed":
            attempt = await service.attempt_of_call(transfer.id, call_sid, label)
            outcome = _OUTCOMES.get(params.get("ParticipantCallStatus", ""), "failed")
            if attempt is not None:
                await service.attempt_over(transfer.id, attempt, outcome)
        elif call_sid and call_sid == transfer.psap_call_sid:
            await service.caller_left(transfer.id)
    elif event == "conference-end":
        await service.caller_left(transfer.id)
    if event == "conference-end" or (event == "participant-leave" and not ours):
        # A leg that is none of the transfer's own may be its live handback's PSAP leg.
        reason = params.get("ReasonParticipantLeft", "")
        await request.app[HANDBACKS].transfer_conference_event(transfer.id, event, call_sid, reason)
    return web.Response(status=204)


async def participant_event(request: web.Request) -> web.Response:
    """A dialed leg's call status (the Participants create's status callback), for the attempt
    its URL names; applied like ``conference_event``."""
    attempt = attempt_param(request)
    params = _params(request)
    service = request.app[TRANSFERS]
    transfer = await _transfer(request, attempt)
    status = params.get("CallStatus", "")
    call_sid = params.get("CallSid", "")
    if call_sid:
        await service.leg_seen(transfer.id, attempt, call_sid)
    if status in ("in-progress", "answered"):
        await service.answered(transfer.id, attempt)
    if call_sid and status in ("initiated", "ringing", "in-progress", "answered"):
        await service.stray_leg(transfer.id, attempt, call_sid)
    elif status in _OUTCOMES and status != "canceled":
        await service.attempt_over(transfer.id, attempt, _OUTCOMES[status])
    return web.Response(status=204)


async def announcement(request: web.Request) -> web.Response:
    text = ANNOUNCEMENTS.get(request.match_info["message"])
    if text is None:
        raise NotFound("unknown announcement")
    response = VoiceResponse()
    response.say(text)
    return _twiml(response)


async def fallback(request: web.Request) -> web.Response:
    """Twilio's fallback URL: Redis or the gateway failed. Dial the PSAP's fallback
    destination from the policy this process last loaded (or the config files) — no Redis."""
    return _fallback_twiml(
        request.app[POLICY], request.query.get("psap"), _params(request).get("From", "")
    )


def _fallback_twiml(policy: PolicyService, psap_id: str | None, caller: str = "") -> web.Response:
    """TwiML dialing the fallback destination of ``psap_id`` (the first PSAP when unknown) —
    or, for a call from one of the destinations' own numbers (a 988 center keying in a
    handback code), the PSAP's handback line: a caller handed back to 911 goes to 911."""
    loaded = policy.offline()
    psap = loaded.document.psap(psap_id or "") or loaded.document.psaps[0]
    response = VoiceResponse()
    if caller and any(d.number == caller for d in loaded.document.destinations):
        response.say(FALLBACK_911)
        response.dial(psap.handback_number, timeout=60)
        return _twiml(response)
    response.say(FALLBACK)
    response.dial(loaded.fallback(psap.id).number, timeout=30)
    return _twiml(response)


ROUTES = [
    Route("POST", "/twilio/voice", call_step(voice), "Bridge line: a call arrives", "twilio"),
    Route("POST", "/twilio/voice/code", call_step(voice_code), "Bridge line: the code", "twilio"),
    Route(
        "POST", "/twilio/voice/hold", call_step(hold), "Bridge line: leave the leg open", "twilio"
    ),
    Route(
        "POST",
        "/twilio/conference/{id}",
        status_callback(conference_event),
        "Conference status",
        "twilio",
    ),
    Route(
        "POST",
        "/twilio/conference/{id}/announce/{message}",
        announcement,
        "Announcement TwiML",
        "twilio",
    ),
    Route(
        "POST",
        "/twilio/participant/{id}",
        status_callback(participant_event),
        "Participant status",
        "twilio",
    ),
    Route("POST", "/twilio/fallback", fallback, "Fallback: dial without Redis", "twilio"),
]
