"""The sandbox's telephony engine: calls, TwiML, conferences, scripted parties, callbacks.

State changes are synchronous (one event-loop step each), so a REST request, a party hanging up
and a TwiML verb never interleave half-way. Only waits (ringing, Pause, Gather timeouts, TwiML
fetches) are awaited. Status callbacks are queued on the ``WebhookSender`` as state changes.

Who ended a call (``ended_by``): ``twiml-end`` (the document ran out of verbs), ``hangup-verb``,
``reject-verb``, ``rest-api`` (Calls update or Participant delete), ``party`` (the scripted
caller or callee hung up, or was busy / failed), ``ring-timeout`` (no answer), ``conference-end``
(a Participants API leg whose conference ended), ``bridge-ended`` (a ``<Dial><Number>`` leg whose
caller went away), ``application-error`` (TwiML could not be fetched or parsed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from . import twiml
from .config import Behaviour, ConfigUpdate, InboundCall, NumberConfig, PartyConfig, SandboxConfig
from .errors import InvalidParameter, NotFound, TwilioApiError
from .model import API_VERSION, Call, Conference, Participant, new_sid, rfc2822, utcnow
from .timeline import Timeline
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9]\d{1,14}$")

CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
# Conference StatusCallbackEvent -> the statusCallbackEvent value that subscribes to it.
CONFERENCE_EVENT_FILTER = {
    "conference-start": "start",
    "conference-end": "end",
    "participant-join": "join",
    "participant-leave": "leave",
    "participant-mute": "mute",
    "participant-unmute": "mute",
    "participant-hold": "hold",
    "participant-unhold": "hold",
    "participant-modify": "modify",
    "announcement-end": "announcement",
    "announcement-fail": "announcement",
}
DEFAULT_CONFERENCE_EVENTS = frozenset({"start", "end"})
APPLICATION_ERROR_SPEECH = "We are sorry, an application error has occurred. Goodbye."


@dataclass(frozen=True, slots=True)
class JoinOptions:
    """How a call joins a conference (from ``<Conference>`` attributes or Participants params)."""

    muted: bool = False
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    beep: str = "true"
    label: str | None = None
    coaching: bool = False
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ParticipantRequest:
    """A Participants API create, already validated."""

    from_: str
    to: str
    timeout_s: float
    status_callback: str | None
    status_callback_method: str
    status_callback_events: frozenset[str]
    join: JoinOptions
    early_media: bool = True


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A Calls API create, already validated."""

    from_: str
    to: str
    url: str | None
    method: str
    twiml: str | None
    fallback_url: str | None
    fallback_method: str
    timeout_s: float
    status_callback: str | None
    status_callback_method: str
    status_callback_events: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Doc:
    url: str
    verbs: list[twiml.Verb]


class _Stop:
    """The call is over: stop interpreting."""


STOP = _Stop()
VerbOutcome = _Doc | _Stop | None


class SandboxEngine:
    def __init__(self, config: SandboxConfig) -> None:
        self._initial = config.model_copy(deep=True)
        self.config = config.model_copy(deep=True)
        self.timeline = Timeline()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.webhooks = WebhookSender(self.config, self.timeline, self.spawn)
        self.calls: dict[str, Call] = {}
        self.conferences: dict[str, Conference] = {}
        self._live_by_name: dict[str, str] = {}

    # ----- lifecycle ---------------------------------------------------------------------------

    @property
    def account_sid(self) -> str:
        return self.config.account_sid

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("sandbox task %s failed", task.get_name(), exc_info=exc)
            self.timeline.record("sandbox.error", task=task.get_name(), error=repr(exc))

    async def start(self) -> None:
        await self.webhooks.start()

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def aclose(self) -> None:
        await self._cancel_all()
        await self.webhooks.aclose()

    async def reset(self) -> None:
        """Forget every call and conference, clear the timeline, restore the startup config."""
        await self._cancel_all()
        self.calls.clear()
        self.conferences.clear()
        self._live_by_name.clear()
        self.config = self._initial.model_copy(deep=True)
        self.webhooks.config = self.config
        self.webhooks.reset()
        self.timeline.clear()
        self.timeline.record("sandbox.reset")

    def update_config(self, update: ConfigUpdate) -> None:
        for name, value in update.model_dump(exclude_none=True).items():
            setattr(self.config, name, value)
        self.timeline.record("config.updated", **update.model_dump(exclude_none=True))

    def set_party(self, number: str, party: PartyConfig) -> None:
        self.config.parties[number] = party
        self.timeline.record("party.set", number=number, **party.model_dump(mode="json"))

    def set_number(self, number: str, settings: NumberConfig) -> None:
        self.config.numbers[number] = settings
        self.timeline.record("number.set", number=number, **settings.model_dump(mode="json"))

    def party(self, number: str) -> PartyConfig:
        return self.config.parties.get(number, self.config.default_party)

    async def _sleep(self, virtual_s: float) -> None:
        await asyncio.sleep(max(0.0, virtual_s) * self.config.time_scale)

    # ----- calls -------------------------------------------------------------------------------

    def _new_call(self, **fields: Any) -> Call:
        call = Call(
            sid=new_sid("CA"),
            account_sid=self.account_sid,
            time_scale=self.config.time_scale,
            **fields,
        )
        self.calls[call.sid] = call
        self.timeline.record(
            "call.created",
            call_sid=call.sid,
            direction=call.direction,
            **{"from": call.from_, "to": call.to},
            parent_call_sid=call.parent_call_sid,
        )
        return call

    def _call_params(self, call: Call) -> dict[str, str]:
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "CalledCountry": "US",
            "Caller": call.from_,
            "CallerCountry": "US",
            "Direction": call.direction,
            "From": call.from_,
            "FromCountry": "US",
            "To": call.to,
            "ToCountry": "US",
        }
        if call.parent_call_sid:
            params["ParentCallSid"] = call.parent_call_sid
        return params

    def _set_status(self, call: Call, status: str) -> None:
        call.set_status(status)
        self.timeline.record("call.status", call_sid=call.sid, status=status)
        participant = self._pending_participant(call)
        if participant is not None:
            participant.status = {"initiated": "connecting"}.get(status, status)
            participant.touch()

    def _progress(self, call: Call, event: str) -> None:
        """A call progress callback (initiated / ringing / answered / completed), if asked for."""
        if call.silent or not call.status_callback or event not in call.status_callback_events:
            return
        params = self._call_params(call)
        params.update(
            CallbackSource="call-progress-events",
            SequenceNumber=str(call.progress_seq),
            Timestamp=rfc2822(utcnow()) or "",
        )
        call.progress_seq += 1
        if event == "completed":
            params["CallDuration"] = str(call.duration_s())
            params["Duration"] = str((call.duration_s() + 59) // 60)
        if call.conference_sid:
            params["ConferenceSid"] = call.conference_sid
        self.webhooks.post_status(
            call.status_callback,
            call.status_callback_method,
            params,
            purpose="call-status",
            stream=call.sid,
        )

    def _answer(self, call: Call) -> None:
        call.answered_at = utcnow()
        self._set_status(call, "in-progress")
        self._progress(call, "answered")

    def end_call(
        self,
        call: Call,
        *,
        ended_by: str,
        status: str = "completed",
        reason: str | None = None,
        leave_reason: str = "participant_hung_up",
    ) -> bool:
        """End a call now: stop what it is doing, take it out of its conference, tell the app."""
        if call.ended:
            return False
        call.ended_at = utcnow()
        call.set_status(status)
        call.ended_by = ended_by
        call.end_reason = reason
        call.ended_event.set()
        current = asyncio.current_task()
        for task in [call.task, *call.side_tasks]:
            if task is not None and task is not current and not task.done():
                task.cancel()
        self.timeline.record(
            "call.ended",
            call_sid=call.sid,
            status=status,
            ended_by=ended_by,
            reason=reason,
            duration_s=call.duration_s(),
        )
        self._progress(call, "completed")
        conference = self.conferences.get(call.conference_sid or "")
        if conference is not None and conference.live:
            if call.sid in conference.participants:
                self._leave(
                    conference,
                    call,
                    reason=leave_reason,
                    call_status=status,
                    kicked=ended_by == "rest-api",
                )
            elif call.sid in conference.pending:
                participant = conference.pending.pop(call.sid)
                participant.status = "failed"
                if not call.silent:
                    self._conference_event(
                        conference,
                        "participant-leave",
                        participant,
                        ReasonParticipantLeft="participant_add_failed",
                        ParticipantCallStatus=status,
                    )
        return True

    def _schedule_party_hangup(self, call: Call, after_s: float | None) -> None:
        if after_s is None:
            return
        task = self.spawn(self._hang_up_later(call, after_s), f"sandbox-hangup-{call.sid}")
        call.side_tasks.append(task)

    async def _hang_up_later(self, call: Call, after_s: float) -> None:
        await self._sleep(after_s)
        self.end_call(call, ended_by="party", leave_reason="participant_hung_up")

    async def _ring(self, call: Call) -> str:
        """Dial the scripted party for ``call.to``: ``answered``, ``busy``, ``no-answer`` or
        ``failed``. A silent party never returns (the caller cancels the wait)."""
        party = self.party(call.to)
        if party.behaviour is Behaviour.SILENT:
            call.silent = True
            self.timeline.record("call.silent", call_sid=call.sid, to=call.to)
            await asyncio.Event().wait()
        self._set_status(call, "initiated")
        self._progress(call, "initiated")
        await self._sleep(0.05)
        if party.behaviour is Behaviour.FAIL:
            return "failed"
        if party.behaviour is Behaviour.BUSY:
            return "busy"
        self._set_status(call, "ringing")
        self._progress(call, "ringing")
        if party.behaviour is Behaviour.NO_ANSWER or party.answer_after_s >= call.timeout_s:
            await self._sleep(call.timeout_s)
            return "no-answer"
        await self._sleep(party.answer_after_s)
        return "answered"

    def _end_unanswered(self, call: Call, outcome: str) -> None:
        ended_by = "ring-timeout" if outcome == "no-answer" else "party"
        self.end_call(call, ended_by=ended_by, status=outcome)

    # ----- inbound calls (scripted callers) ----------------------------------------------------

    def start_inbound(self, request: InboundCall) -> Call:
        number = self.config.numbers.get(request.to)
        if number is None:
            raise NotFound(f"sandbox number {request.to}")
        call = self._new_call(
            from_=request.from_,
            to=request.to,
            direction="inbound",
            status="ringing",
            digits=list(request.digits),
            voice_url=number.voice_url,
            voice_method=number.voice_method,
            fallback_url=number.voice_fallback_url,
            fallback_method=number.voice_fallback_method,
            status_callback=number.status_callback,
            status_callback_method=number.status_callback_method,
            status_callback_events=frozenset({"completed"}),
        )
        call.task = self.spawn(
            self._run_twiml(call, url=number.voice_url, method=number.voice_method),
            f"sandbox-call-{call.sid}",
        )
        self._schedule_party_hangup(call, request.hangup_after_s)
        return call

    # ----- TwiML -------------------------------------------------------------------------------

    async def _load(
        self, call: Call, url: str, method: str, extra: dict[str, str], purpose: str
    ) -> _Doc | None:
        """Fetch and parse a TwiML document; on failure of the voice URL try the number's
        fallback URL, else end the call with an application error (as Twilio does: the fallback
        URL serves only the voice URL — an error from an action or redirect URL ends the call)
        and return None."""
        params = self._call_params(call) | extra
        reply = await self.webhooks.request(url, method, params, purpose=purpose, call_sid=call.sid)
        problem: tuple[int, str] | None = None
        verbs: list[twiml.Verb] = []
        if reply.error is not None:
            problem = (11205, f"HTTP connection failure: {reply.error}")
        elif not reply.ok:
            problem = (11200, f"HTTP retrieval failure: status {reply.status}")
        else:
            try:
                verbs = twiml.parse(reply.body)
            except twiml.TwimlError as exc:
                problem = (12100, f"Document parse failure: {exc}")
        if problem is None:
            self.timeline.record(
                "twiml.document", call_sid=call.sid, url=url, verbs=[v.name for v in verbs]
            )
            return _Doc(url, verbs)
        code, message = problem
        self.timeline.record("twiml.error", call_sid=call.sid, url=url, code=code, message=message)
        if call.fallback_url and purpose == "voice":
            return await self._load(
                call,
                call.fallback_url,
                call.fallback_method,
                {"ErrorCode": str(code), "ErrorUrl": url},
                "fallback",
            )
        call.said.append(APPLICATION_ERROR_SPEECH)
        self.end_call(call, ended_by="application-error", reason=f"{code} {message}")
        return None

    def _inline(self, call: Call, document: str, base_url: str) -> _Doc | None:
        try:
            verbs = twiml.parse(document)
        except twiml.TwimlError as exc:
            self.timeline.record(
                "twiml.error", call_sid=call.sid, url=None, code=12100, message=str(exc)
            )
            self.end_call(call, ended_by="application-error", reason=f"12100 {exc}")
            return None
        self.timeline.record(
            "twiml.document", call_sid=call.sid, url=None, verbs=[v.name for v in verbs]
        )
        return _Doc(base_url, verbs)

    async def _run_twiml(
        self,
        call: Call,
        *,
        url: str | None = None,
        method: str = "POST",
        document: str | None = None,
    ) -> None:
        """Interpret TwiML for a live call until it hangs up or the document runs out."""
        if document is not None:
            doc = self._inline(call, document, url or call.voice_url or "")
        else:
            assert url is not None
            doc = await self._load(call, url, method, {}, "voice")
        while doc is not None:
            if call.status != "in-progress":
                self._answer(call)
            outcome: VerbOutcome = None
            for verb in doc.verbs:
                outcome = await self._execute(call, doc, verb)
                if outcome is not None:
                    break
            if isinstance(outcome, _Stop) or call.ended:
                return
            if outcome is None:
                self.end_call(call, ended_by="twiml-end")
                return
            doc = outcome

    def _record_verb(self, call: Call, verb: twiml.Verb, **extra: Any) -> None:
        self.timeline.record(
            "twiml.verb",
            call_sid=call.sid,
            verb=verb.name,
            attrs=verb.attrs,
            text=verb.text,
            **extra,
        )

    async def _execute(self, call: Call, doc: _Doc, verb: twiml.Verb) -> VerbOutcome:
        name = verb.name
        if name in ("Say", "Play", "Pause"):
            await self._simple_verb(call, verb)
            return None
        if name == "Gather":
            return await self._gather(call, doc, verb)
        if name == "Redirect":
            self._record_verb(call, verb)
            target = urljoin(doc.url, verb.text) if verb.text else doc.url
            return (
                await self._load(call, target, verb.attr("method", "POST"), {}, "redirect") or STOP
            )
        if name == "Hangup":
            self._record_verb(call, verb)
            self.end_call(call, ended_by="hangup-verb")
            return STOP
        if name == "Reject":
            self._record_verb(call, verb)
            self.end_call(
                call, ended_by="reject-verb", status="busy", reason=verb.attr("reason", "rejected")
            )
            return STOP
        if name == "Dial":
            return await self._dial(call, doc, verb)
        self._record_verb(call, verb, unsupported=True)
        return None

    async def _simple_verb(self, call: Call, verb: twiml.Verb) -> None:
        self._record_verb(call, verb)
        if verb.name == "Say":
            call.said.append(verb.text)
        elif verb.name == "Pause":
            await self._sleep(verb.number("length", 1.0))

    async def _gather(self, call: Call, doc: _Doc, verb: twiml.Verb) -> VerbOutcome:
        self._record_verb(call, verb)
        for child in verb.children:
            if child.name in ("Say", "Play", "Pause"):
                await self._simple_verb(call, child)
        scripted = call.digits.pop(0) if call.digits else None
        if "dtmf" not in verb.attr("input", "dtmf").split():
            scripted = None
        digits, finished_on = "", ""
        if scripted:
            finish_key = verb.attr("finishOnKey", "#")
            digits = scripted
            if finish_key and finish_key in scripted:
                digits, finished_on = scripted.split(finish_key, 1)[0], finish_key
            num_digits = int(verb.number("numDigits", 0))
            if num_digits > 0:
                digits = digits[:num_digits]
        action = urljoin(doc.url, verb.attr("action")) if verb.attr("action") else doc.url
        method = verb.attr("method", "POST")
        if digits:
            self.timeline.record("twiml.gather", call_sid=call.sid, digits=digits, timed_out=False)
            extra = {"Digits": digits}
            if finished_on:
                extra["FinishedOnKey"] = finished_on
            return await self._load(call, action, method, extra, "gather-action") or STOP
        await self._sleep(verb.number("timeout", 5.0))
        self.timeline.record("twiml.gather", call_sid=call.sid, digits=None, timed_out=True)
        if verb.flag("actionOnEmptyResult", False):
            return await self._load(call, action, method, {"Digits": ""}, "gather-action") or STOP
        return None

    async def _dial(self, call: Call, doc: _Doc, verb: twiml.Verb) -> VerbOutcome:
        self._record_verb(call, verb, nouns=[c.name for c in verb.children])
        conference = next((c for c in verb.children if c.name == "Conference"), None)
        dial_sid: str | None = None
        duration = 0
        if conference is not None:
            status = await self._dial_conference(call, doc, conference)
        else:
            number = next((c.text for c in verb.children if c.name == "Number"), verb.text)
            status, leg = await self._dial_number(call, verb, number)
            dial_sid, duration = leg.sid, leg.duration_s()
        if call.ended:
            return STOP
        action = verb.attr("action")
        if not action:
            return None
        extra = {"DialCallStatus": status, "DialCallDuration": str(duration)}
        if dial_sid:
            extra["DialCallSid"] = dial_sid
        target = urljoin(doc.url, action)
        return (
            await self._load(call, target, verb.attr("method", "POST"), extra, "dial-action")
            or STOP
        )

    async def _dial_conference(self, call: Call, doc: _Doc, noun: twiml.Verb) -> str:
        callback = noun.attr("statusCallback")
        options = JoinOptions(
            muted=noun.flag("muted", False),
            start_conference_on_enter=noun.flag("startConferenceOnEnter", True),
            end_conference_on_exit=noun.flag("endConferenceOnExit", False),
            beep=noun.attr("beep", "true"),
            label=noun.attr("participantLabel") or None,
            coaching=noun.flag("coach", False),
            status_callback=urljoin(doc.url, callback) if callback else None,
            status_callback_method=noun.attr("statusCallbackMethod", "POST"),
            status_callback_events=frozenset(
                noun.attr("statusCallbackEvent").replace(",", " ").split()
            ),
        )
        self.join(call, noun.text, options)
        await call.conference_left.wait()
        return "completed"

    async def _dial_number(self, call: Call, verb: twiml.Verb, number: str) -> tuple[str, Call]:
        leg = self._new_call(
            from_=verb.attr("callerId") or call.from_,
            to=number,
            direction="outbound-dial",
            parent_call_sid=call.sid,
            timeout_s=verb.number("timeout", 30.0),
        )
        try:
            outcome = await self._ring(leg)
            if outcome != "answered":
                self._end_unanswered(leg, outcome)
                return outcome, leg
            self._answer(leg)
            self._schedule_party_hangup(leg, self.party(leg.to).hangup_after_s)
            await leg.ended_event.wait()
            return "completed", leg
        finally:
            if not leg.ended:
                self.end_call(leg, ended_by="bridge-ended", status="canceled")

    # ----- conferences -------------------------------------------------------------------------

    def live_conference(self, ref: str) -> Conference | None:
        """The live conference with this SID or friendly name."""
        conference = self.conferences.get(ref)
        if conference is None and ref in self._live_by_name:
            conference = self.conferences.get(self._live_by_name[ref])
        return conference if conference is not None and conference.live else None

    def conference(self, ref: str) -> Conference | None:
        """A conference by SID (any status) or the live one with that friendly name."""
        return self.conferences.get(ref) or self.live_conference(ref)

    def _create_conference(self, name: str, options: JoinOptions) -> Conference:
        events = options.status_callback_events & set(CONFERENCE_EVENT_FILTER.values())
        conference = Conference(
            sid=new_sid("CF"),
            account_sid=self.account_sid,
            friendly_name=name,
            status_callback=options.status_callback,
            status_callback_method=options.status_callback_method,
            status_callback_events=frozenset(events) or DEFAULT_CONFERENCE_EVENTS,
        )
        self.conferences[conference.sid] = conference
        self._live_by_name[name] = conference.sid
        self.timeline.record(
            "conference.created",
            conference_sid=conference.sid,
            friendly_name=name,
            status_callback=conference.status_callback,
            events=sorted(conference.status_callback_events),
        )
        return conference

    def _conference_event(
        self,
        conference: Conference,
        event: str,
        participant: Participant | None = None,
        /,
        **extra: str,
    ) -> None:
        subscribed = (
            conference.status_callback is not None
            and CONFERENCE_EVENT_FILTER[event] in conference.status_callback_events
        )
        if subscribed:
            conference.sequence += 1
        self.timeline.record(
            "conference.event",
            conference_sid=conference.sid,
            event=event,
            call_sid=participant.call_sid if participant else None,
            sequence=conference.sequence if subscribed else None,
            sent=subscribed,
            **extra,
        )
        if not subscribed or conference.status_callback is None:
            return
        params = {
            "AccountSid": conference.account_sid,
            "ConferenceSid": conference.sid,
            "FriendlyName": conference.friendly_name,
            "SequenceNumber": str(conference.sequence),
            "StatusCallbackEvent": event,
            "Timestamp": rfc2822(utcnow()) or "",
        }
        if participant is not None:
            params.update(participant.callback_params())
        params.update(extra)
        self.webhooks.post_status(
            conference.status_callback,
            conference.status_callback_method,
            params,
            purpose="conference-status",
            stream=conference.sid,
        )

    def join(self, call: Call, name: str, options: JoinOptions) -> Conference:
        """Put a live call into the conference ``name``, creating it if needed; the first
        participant's status callback becomes the conference's."""
        conference = self.live_conference(name)
        if conference is None:
            conference = self._create_conference(name, options)
        participant = conference.pending.pop(call.sid, None)
        if participant is None:
            participant = Participant(
                call_sid=call.sid,
                conference_sid=conference.sid,
                account_sid=self.account_sid,
                label=options.label,
                muted=options.muted,
                coaching=options.coaching,
                start_conference_on_enter=options.start_conference_on_enter,
                end_conference_on_exit=options.end_conference_on_exit,
                beep=options.beep,
            )
        participant.conference_sid = conference.sid
        participant.status = "connected"
        participant.touch()
        conference.participants[call.sid] = participant
        conference.updated_at = utcnow()
        call.conference_sid = conference.sid
        call.left_reason = None
        call.conference_left = asyncio.Event()
        self._conference_event(conference, "participant-join", participant)
        if conference.status == "init" and participant.start_conference_on_enter:
            conference.status = "in-progress"
            self._conference_event(conference, "conference-start")
        return conference

    def _leave(
        self,
        conference: Conference,
        call: Call,
        *,
        reason: str,
        call_status: str,
        kicked: bool = False,
    ) -> None:
        participant = conference.participants.pop(call.sid, None)
        if participant is None:
            return
        participant.status = "complete"
        participant.touch()
        call.left_reason = reason
        call.conference_left.set()
        self._conference_event(
            conference,
            "participant-leave",
            participant,
            ReasonParticipantLeft=reason,
            ParticipantCallStatus=call_status,
        )
        how = "kicked" if kicked else "left"
        if participant.end_conference_on_exit:
            self._end_conference(
                conference,
                f"participant-with-end-conference-on-exit-{how}",
                f"Participant {call.sid} with endConferenceOnExit {how} the conference",
                ending=participant,
            )
        elif not conference.participants:
            self._end_conference(
                conference,
                f"last-participant-{how}",
                f"Last participant {how} the conference",
                ending=participant,
            )

    def _end_conference(
        self, conference: Conference, reason: str, text: str, ending: Participant | None = None
    ) -> None:
        if not conference.live:
            return
        conference.status = "completed"
        conference.updated_at = utcnow()
        conference.reason_ended = reason
        conference.call_sid_ending = ending.call_sid if ending else None
        if self._live_by_name.get(conference.friendly_name) == conference.sid:
            del self._live_by_name[conference.friendly_name]
        leave_reason = (
            "conference_ended_via_api"
            if reason == "conference-ended-via-api"
            else "moderator_ended_conference"
        )
        for call_sid, participant in list(conference.participants.items()):
            del conference.participants[call_sid]
            participant.status = "complete"
            call = self.calls[call_sid]
            call.left_reason = leave_reason
            call.conference_left.set()
            self._conference_event(
                conference,
                "participant-leave",
                participant,
                ReasonParticipantLeft=leave_reason,
                ParticipantCallStatus=call.status,
            )
        # A Participants API leg still being dialed had not joined: the conference's end does
        # not touch the call (it keeps ringing; answered, it joins a conference of that name,
        # a new one), but a completed conference lists no participants any more.
        for call_sid in list(conference.pending):
            del conference.pending[call_sid]
            self.timeline.record(
                "participant.orphaned", conference_sid=conference.sid, call_sid=call_sid
            )
        extra = {"ReasonConferenceEnded": reason, "Reason": text}
        if ending is not None:
            extra["CallSidEndingConference"] = ending.call_sid
            if ending.label:
                extra["ParticipantLabelEndingConference"] = ending.label
        self._conference_event(conference, "conference-end", **extra)

    def _pending_participant(self, call: Call) -> Participant | None:
        conference = self.conferences.get(call.conference_sid or "")
        return conference.pending.get(call.sid) if conference is not None else None

    # ----- REST operations ---------------------------------------------------------------------

    async def add_participant(
        self, ref: str, request: ParticipantRequest
    ) -> tuple[Conference, Participant]:
        conference = self.live_conference(ref)
        deadline = asyncio.get_running_loop().time() + self.config.conference_join_grace_s
        while (conference is None or not conference.participants) and (
            asyncio.get_running_loop().time() < deadline
        ):
            # The TwiML that dials the caller in may still be on its way back to the sandbox.
            await asyncio.sleep(0.02)
            conference = self.live_conference(ref)
        if conference is None or not conference.participants:
            if not (self.config.participants_create_conference and not ref.startswith("CF")):
                raise NotFound(
                    f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{ref}/Participants.json"
                )
            conference = conference or self._create_conference(ref, JoinOptions())
        call = self._new_call(
            from_=request.from_,
            to=request.to,
            direction="outbound-api",
            timeout_s=request.timeout_s,
            status_callback=request.status_callback,
            status_callback_method=request.status_callback_method,
            status_callback_events=request.status_callback_events,
        )
        options = request.join
        participant = Participant(
            call_sid=call.sid,
            conference_sid=conference.sid,
            account_sid=self.account_sid,
            label=options.label,
            muted=options.muted,
            coaching=options.coaching,
            start_conference_on_enter=options.start_conference_on_enter,
            end_conference_on_exit=options.end_conference_on_exit,
            beep=options.beep,
        )
        conference.pending[call.sid] = participant
        call.conference_sid = conference.sid
        self.timeline.record(
            "participant.added",
            conference_sid=conference.sid,
            call_sid=call.sid,
            to=request.to,
            timeout_s=request.timeout_s,
            label=options.label,
        )
        call.task = self.spawn(
            self._participant_leg(call, conference.friendly_name, options),
            f"sandbox-participant-{call.sid}",
        )
        return conference, participant

    async def _participant_leg(self, call: Call, name: str, options: JoinOptions) -> None:
        outcome = await self._ring(call)
        if outcome != "answered":
            self._end_unanswered(call, outcome)
            return
        self._answer(call)
        self.join(call, name, options)
        self._schedule_party_hangup(call, self.party(call.to).hangup_after_s)
        await call.conference_left.wait()
        # Out of the conference with no TwiML to follow: the leg hangs up.
        by_api = call.left_reason == "participant_updated_via_api"
        self.end_call(call, ended_by="rest-api" if by_api else "conference-end")

    async def create_call(self, request: CallRequest) -> Call:
        call = self._new_call(
            from_=request.from_,
            to=request.to,
            direction="outbound-api",
            timeout_s=request.timeout_s,
            voice_url=request.url,
            voice_method=request.method,
            fallback_url=request.fallback_url,
            fallback_method=request.fallback_method,
            twiml=request.twiml,
            status_callback=request.status_callback,
            status_callback_method=request.status_callback_method,
            status_callback_events=request.status_callback_events,
            digits=list(self.party(request.to).digits),
        )
        call.task = self.spawn(self._outbound_leg(call), f"sandbox-call-{call.sid}")
        return call

    async def _outbound_leg(self, call: Call) -> None:
        outcome = await self._ring(call)
        if outcome != "answered":
            self._end_unanswered(call, outcome)
            return
        self._answer(call)
        self._schedule_party_hangup(call, self.party(call.to).hangup_after_s)
        await self._run_twiml(
            call, url=call.voice_url, method=call.voice_method, document=call.twiml
        )

    def get_call(self, sid: str) -> Call:
        call = self.calls.get(sid)
        if call is None:
            raise NotFound(f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json")
        return call

    def update_call(
        self, sid: str, *, status: str | None, url: str | None, method: str, document: str | None
    ) -> Call:
        call = self.get_call(sid)
        if status is not None:
            if status not in ("canceled", "completed"):
                raise InvalidParameter(21218, f"Invalid value for Status: {status}")
            if call.ended:
                return call
            if call.status in ("queued", "initiated", "ringing"):
                self.end_call(call, ended_by="rest-api", status="canceled")
            elif status == "completed":
                self.end_call(call, ended_by="rest-api", leave_reason="participant_updated_via_api")
            return call
        if url is None and document is None:
            return call
        if call.status != "in-progress":
            raise InvalidParameter(21220, "Call is not in-progress. Cannot redirect.")
        self.timeline.record("call.redirected", call_sid=call.sid, url=url, twiml=document)
        if call.task is not None and not call.task.done():
            call.task.cancel()
        conference = self.conferences.get(call.conference_sid or "")
        if conference is not None and conference.live and call.sid in conference.participants:
            self._leave(
                conference, call, reason="participant_updated_via_api", call_status=call.status
            )
        call.task = self.spawn(
            self._run_twiml(call, url=url, method=method, document=document),
            f"sandbox-call-{call.sid}",
        )
        return call

    def conference_participant(self, ref: str, call_ref: str) -> tuple[Conference, Participant]:
        conference = self.conference(ref)
        path = (
            f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{ref}"
            f"/Participants/{call_ref}.json"
        )
        if conference is None:
            raise NotFound(path)
        for participant in [*conference.participants.values(), *conference.pending.values()]:
            if call_ref in (participant.call_sid, participant.label):
                return conference, participant
        raise NotFound(path)

    def update_participant(
        self,
        conference: Conference,
        participant: Participant,
        *,
        muted: bool | None,
        hold: bool | None,
        end_conference_on_exit: bool | None,
        coaching: bool | None,
        label: str | None,
        announce_url: str | None,
        announce_method: str,
    ) -> Participant:
        joined = participant.call_sid in conference.participants
        if muted is not None and muted != participant.muted:
            participant.muted = muted
            if joined:
                event = "participant-mute" if muted else "participant-unmute"
                self._conference_event(conference, event, participant)
        if hold is not None and hold != participant.hold:
            participant.hold = hold
            if joined:
                event = "participant-hold" if hold else "participant-unhold"
                self._conference_event(conference, event, participant)
        modified = False
        if end_conference_on_exit is not None:
            modified |= participant.end_conference_on_exit != end_conference_on_exit
            participant.end_conference_on_exit = end_conference_on_exit
        if coaching is not None:
            modified |= participant.coaching != coaching
            participant.coaching = coaching
        if label is not None:
            participant.label = label
        if modified and joined:
            self._conference_event(conference, "participant-modify", participant)
        participant.touch()
        if announce_url:
            self.spawn(
                self._announce(conference, announce_url, announce_method, participant.call_sid),
                f"sandbox-announce-{conference.sid}",
            )
        return participant

    def remove_participant(self, conference: Conference, participant: Participant) -> None:
        call = self.calls[participant.call_sid]
        if participant.call_sid in conference.pending:
            self.end_call(call, ended_by="rest-api", status="canceled")
            return
        self.timeline.record(
            "participant.removed", conference_sid=conference.sid, call_sid=call.sid
        )
        self._leave(
            conference,
            call,
            reason="participant_updated_via_api",
            call_status=call.status,
            kicked=True,
        )

    def update_conference(
        self,
        conference: Conference,
        *,
        status: str | None,
        announce_url: str | None,
        announce_method: str,
    ) -> Conference:
        if status is not None:
            if status != "completed":
                raise InvalidParameter(21218, f"Invalid value for Status: {status}")
            self._end_conference(conference, "conference-ended-via-api", "Conference ended via API")
        if announce_url:
            if not conference.live:
                raise TwilioApiError(400, 16001, "Conference is not in progress")
            self.spawn(
                self._announce(conference, announce_url, announce_method, None),
                f"sandbox-announce-{conference.sid}",
            )
        return conference

    async def _announce(
        self, conference: Conference, url: str, method: str, call_sid: str | None
    ) -> None:
        """Fetch an announcement (TwiML with Say/Play/Pause, or audio) and play it to the whole
        conference, or to one participant."""
        params = {
            "AccountSid": conference.account_sid,
            "ConferenceSid": conference.sid,
            "FriendlyName": conference.friendly_name,
        }
        if call_sid:
            params["CallSid"] = call_sid
        reply = await self.webhooks.request(
            url, method, params, purpose="announce", conference_sid=conference.sid
        )
        texts: list[str] = []
        error: str | None = None
        if not reply.ok:
            error = reply.error or f"HTTP {reply.status}"
        elif reply.content_type.startswith("audio/"):
            texts.append(f"[audio {url}]")
        else:
            try:
                for verb in twiml.parse(reply.body):
                    if verb.name == "Say":
                        texts.append(verb.text)
                    elif verb.name == "Play":
                        texts.append(f"[audio {verb.text}]")
                    elif verb.name == "Pause":
                        await self._sleep(verb.number("length", 1.0))
            except twiml.TwimlError as exc:
                error = str(exc)
        listeners = [call_sid] if call_sid else list(conference.participants)
        if error is None:
            for sid in listeners:
                self.calls[sid].said.extend(t for t in texts if not t.startswith("[audio"))
        self.timeline.record(
            "conference.announcement",
            conference_sid=conference.sid,
            call_sid=call_sid,
            url=url,
            texts=texts,
            heard_by=listeners if error is None else [],
            error=error,
        )
        participant = conference.participants.get(call_sid) if call_sid else None
        extra = {"AnnounceUrl": url}
        if error is not None:
            extra["ReasonAnnouncementFailed"] = error
        event = "announcement-fail" if error else "announcement-end"
        if conference.live:
            self._conference_event(conference, event, participant, **extra)

    # ----- views -------------------------------------------------------------------------------

    def call_view(self, sid: str) -> dict[str, Any]:
        call = self.calls.get(sid)
        if call is None:
            raise NotFound(f"/sandbox/calls/{sid}")
        conference = self.conferences.get(call.conference_sid or "")
        return {
            "sid": call.sid,
            "from": call.from_,
            "to": call.to,
            "direction": call.direction,
            "status": call.status,
            "ended_by": call.ended_by,
            "end_reason": call.end_reason,
            "parent_call_sid": call.parent_call_sid,
            "conference_sid": call.conference_sid,
            "conference": conference.friendly_name if conference else None,
            "in_conference": bool(conference and call.sid in conference.participants),
            "said": list(call.said),
            "digits_left": list(call.digits),
            "duration_s": call.duration_s(),
            "date_created": rfc2822(call.created_at),
            "end_time": rfc2822(call.ended_at),
        }

    def conference_view(self, conference: Conference) -> dict[str, Any]:
        return {
            "sid": conference.sid,
            "friendly_name": conference.friendly_name,
            "status": conference.status,
            "status_callback": conference.status_callback,
            "status_callback_events": sorted(conference.status_callback_events),
            "sequence_number": conference.sequence,
            "participants": [p.as_json() for p in conference.participants.values()],
            "pending": [p.as_json() for p in conference.pending.values()],
            "reason_conference_ended": conference.reason_ended,
        }


def parse_events(values: list[str], allowed: frozenset[str]) -> frozenset[str]:
    """StatusCallbackEvent may repeat, or hold several space-separated values."""
    events = {part for value in values for part in value.replace(",", " ").split()}
    unknown = events - allowed
    if unknown:
        raise InvalidParameter(21626, f"Invalid StatusCallbackEvent: {sorted(unknown)}")
    return frozenset(events)
