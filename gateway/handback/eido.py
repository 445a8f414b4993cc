"""The EIDO (APCO/NENA Emergency Incident Data Object, NENA-STA-021) of a handback.

``build`` is a pure function of the handback's facts: the document validates against
``EmergencyIncidentDataObjectType`` of NENA's schema (``tests/data/eido/openapi.yaml``) and is
modelled on NENA's ``sample-call-transfer.json``:

- prologue: ``$id`` (the incident id), ``lastUpdateTimeStamp``, ``updatedByAgencyReference``
  (the 988 center, which reported the incident);
- ``agencyComponent``: the PSAP (owns the incident from now on) and the 988 center;
- ``incidentComponent`` typed as a behavioral-health / suicide-risk incident;
- ``callComponent`` and ``callbackComponent`` (the callback number as a ``tel:`` URI);
- ``locationComponent`` by value (PIDF-LO) when an address or coordinates are known;
- ``personComponent`` for the person at risk; ``notesComponent`` with the reason, the risk
  summary and — without a location — the request to locate the caller; a ``cautionComponent``
  when weapons were reported; ``linkComponent`` to the transfer the call came through.

Identifiers are ``urn:emergency:uid:<kind>:<id>:<domain>`` with the gateway's public host as
the domain. Registry values (incident type, agency and person roles) follow the NENA registries'
style; a PSAP's CAD maps ``incidentTypeInternalCode`` when its own codes differ.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from pydantic import BaseModel, ConfigDict, Field

from gateway.handback.models import HandbackReason, Location, Risk

EIDO_VERSION = "1.0"
JSON_LD_CONTEXT = {"@vocab": "./JSON-LD_Contexts/EmergencyIncidentDataObjectType.jsonld"}

_REASON_TEXT = {
    HandbackReason.IMMINENT_RISK: "imminent risk of suicide",
    HandbackReason.ATTEMPT_IN_PROGRESS: "suicide attempt in progress",
    HandbackReason.MEDICAL: "medical emergency",
    HandbackReason.CALLER_REQUEST: "the caller asked for emergency services",
    HandbackReason.OTHER: "other emergency",
}
_SUICIDE = frozenset({HandbackReason.IMMINENT_RISK, HandbackReason.ATTEMPT_IN_PROGRESS})
LOCATE_THE_CALLER = (
    "LOCATION UNKNOWN: the 988 center could not establish where the person is. "
    "Please locate the caller (callback number in the callback component)."
)
LOCATE_WITHOUT_CALLBACK = (
    "LOCATION UNKNOWN: the 988 center could not establish where the person is. "
    "Please locate the caller (the 988 center gave no callback number)."
)


def uid(kind: str, local_id: str, domain: str) -> str:
    """``urn:emergency:uid:<kind>:<id>:<domain>`` (NENA-STA-010 identifier form)."""
    return f"urn:emergency:uid:{kind}:{local_id}:{domain}"


def incident_id(handback_id: str, domain: str) -> str:
    return uid("incidentid", handback_id, domain)


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class EidoFacts:
    """Everything a handback's EIDO is built from."""

    handback_id: str
    domain: str
    now: datetime
    psap: Agency
    center: Agency
    reason: HandbackReason
    live: bool
    """The caller is in a gateway conference the PSAP is being dialed into."""
    location: Location | None = None
    callback_number: str | None = None
    risk: Risk = field(default_factory=Risk)
    counselor_ref: str | None = None
    transfer_id: str | None = None
    call_started_at: datetime | None = None


def psap_agency_id(psap_id: str, domain: str) -> str:
    return f"psap.{psap_id}.{domain}"


def center_agency_id(org: str, domain: str) -> str:
    return f"crisis-center.{org}.{domain}"


def _jcard(name: str) -> str:
    return json.dumps(["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", name]]])


def _refs(ids: Sequence[str]) -> list[Reference]:
    return [Reference(ref=i) for i in ids]


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def pidf_lo(location: Location, entity: str) -> str:
    """A PIDF-LO (RFC 4119 / 5139 / 5491) document for ``location``: a civic address (the
    counselor's free-form address in ``LOC``) and/or a WGS 84 point."""
    parts = []
    if location.address is not None:
        parts.append(
            '<ca:civicAddress xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr">'
            f"<ca:country>US</ca:country><ca:LOC>{escape(location.address)}</ca:LOC>"
            "</ca:civicAddress>"
        )
    if location.has_coordinates:
        parts.append(
            '<gml:Point xmlns:gml="http://www.opengis.net/gml" '
            'srsName="urn:ogc:def:crs:EPSG::4326">'
            f"<gml:pos>{location.lat} {location.lon}</gml:pos></gml:Point>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
        'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
        f'entity="{escape(entity, {chr(34): "&quot;"})}">'
        '<dm:device id="person-at-risk"><gp:geopriv><gp:location-info>'
        + "".join(parts)
        + "</gp:location-info><gp:method>Manual</gp:method></gp:geopriv></dm:device></presence>"
    )


# ---- the document as the gateway sends it ----------------------------------------------------
# The subset of NENA's EmergencyIncidentDataObjectType this gateway fills, as pydantic models:
# ``build`` makes the document from them, and ``/openapi.json`` documents the CAD webhook with
# their schema. Field names are the EIDO's own; fields left ``None`` are not sent.


class _Eido(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
    )


class Reference(_Eido):
    """A reference to a component (or agency, agent) by its id."""

    ref: str = Field(alias="$ref")


class Component(_Eido):
    """What every component (and the document) starts with (NENA's prologue)."""

    id: str = Field(alias="$id")
    """``urn:emergency:uid:<kind>:<id>:<domain>`` (agencies: ``psap.<id>.<domain>``,
    ``crisis-center.<org>.<domain>``)."""
    lastUpdateTimeStamp: str
    """ISO 8601 with milliseconds and the UTC offset."""
    updatedByAgencyReference: Reference
    """The 988 center, which reported the incident."""
    updatedByAgentReference: Reference | None = None
    """The counselor, when the center gave a ``counselor_ref``."""


class AgencyComponent(Component):
    agencyJcard: str
    """A jCard (RFC 7095), as JSON text, with the agency's name."""
    agencyRoleDescriptionRegistryText: list[str]
    agencyType: list[str]
    """``psap`` or ``crisis_line.988``."""
    incidentOwningAgencyIndicator: bool
    """True for the PSAP: it owns the incident from now on."""


class AgentComponent(Component):
    agentRoleRegistryText: list[str]
    agencyReference: Reference


class CallbackComponent(Component):
    callBackInformationUri: list[str]
    """``tel:<E.164>``."""


class LocationComponent(Component):
    locationTypeDescriptionRegistryText: str
    locationByValue: str | None = None
    """A PIDF-LO document (XML): a civic address (``LOC``) and/or a WGS 84 point."""
    locationDescriptionText: str | None = None


class CautionComponent(Component):
    cautionTypeInternalText: str
    cautionTypeCommonRegistryText: str
    cautionSeverity: str
    cautionSource: str


class LinkComponent(Component):
    incidentTrackingIdentifier: str
    """The incident id of the transfer the call came through."""
    linkDirectionCode: str
    transactionReasonText: str
    involvedAgencyReference: Reference


class IncidentComponent(Component):
    incidentTypeCommonRegistryText: str
    incidentTypeInternalCode: str
    """``988-HANDBACK-<REASON>`` (a CAD maps it to its own codes)."""
    incidentTypeInternalText: str
    incidentStatusCommonRegistryText: list[str]
    personReference: list[Reference]
    notesReference: list[Reference]
    locationReference: list[Reference] | None = None


class CallComponent(Component):
    standardPrimaryCallType: str
    direction: str
    callStartTimestamp: str
    callStateRegistryText: str
    """``partyAdd`` (live: the PSAP is being dialed into the call) or ``callBegin``."""
    agencyReference: list[Reference]
    personReference: list[Reference]
    notesReference: list[Reference]
    relatedCallIdentifier: list[str] | None = None
    callBackReference: Reference | None = None
    locationReference: list[Reference] | None = None


class PersonComponent(Component):
    personIncidentRoleRegistryText: list[str]
    callIdentifier: list[str]
    notesReference: list[Reference]
    callBackReference: Reference | None = None
    locationReference: list[Reference] | None = None


class NotesComponent(Component):
    notesActionComments: str
    """HTML: one ``<p>`` of escaped text."""
    agentReference: Reference | None = None


class EidoDocument(Component):
    """The EIDO POSTed to a PSAP's ``cad_url`` (and served by ``GET /v1/handbacks/{id}/eido``):
    NENA-STA-021 ``EmergencyIncidentDataObjectType``, as this gateway fills it. Its ``$id`` is
    the incident id (the handback's ``eido_id``)."""

    model_config = ConfigDict(json_schema_extra=lambda schema: _eido_schema(schema))

    eidoVersion: str
    issuingElementIdentification: str
    """The gateway's public host."""
    agencyComponent: list[AgencyComponent]
    """The PSAP, then the 988 center."""
    agentComponent: list[AgentComponent] | None = None
    callbackComponent: list[CallbackComponent] | None = None
    locationComponent: list[LocationComponent] | None = None
    cautionComponent: list[CautionComponent] | None = None
    """When the counselor reported weapons."""
    linkComponent: list[LinkComponent] | None = None
    """To the transfer the call came through."""
    incidentComponent: IncidentComponent
    callComponent: list[CallComponent]
    personComponent: list[PersonComponent]
    notesComponent: list[NotesComponent]
    context: dict[str, str] = Field(alias="@context")
    """JSON-LD context."""

    def body(self) -> dict[str, Any]:
        """The JSON object (absent parts left out)."""
        return self.model_dump(mode="json", exclude_none=True)


def build(facts: EidoFacts) -> dict[str, Any]:
    """The EIDO for one handback (a plain JSON object, ``EidoDocument.body``)."""
    return document(facts).body()


def document(facts: EidoFacts) -> EidoDocument:
    """The EIDO for one handback."""
    domain = facts.domain
    hb = facts.handback_id
    stamp = facts.now.isoformat(timespec="milliseconds")
    psap_ref = psap_agency_id(facts.psap.id, domain)
    center_ref = center_agency_id(facts.center.id, domain)
    # The counselor reference is the center's free text: percent-encoded into the URI.
    agent_ref = (
        f"{quote(facts.counselor_ref, safe='')}@{center_ref}" if facts.counselor_ref else None
    )
    agent = Reference(ref=agent_ref) if agent_ref else None

    def prologue(component_id: str) -> dict[str, Any]:
        return {
            "id": component_id,
            "lastUpdateTimeStamp": stamp,
            "updatedByAgencyReference": Reference(ref=center_ref),
            "updatedByAgentReference": agent,
        }

    the_incident = incident_id(hb, domain)
    call_ref = uid("callid", hb, domain)
    callback_ref = uid("callbackid", hb, domain)
    person_ref = uid("personid", hb, domain)
    location_ref = uid("locationid", hb, domain)
    location = facts.location
    known = location is not None and location.known

    notes: list[NotesComponent] = []

    def note(kind: str, text: str) -> str:
        note_id = uid(f"notesid-{kind}", hb, domain)
        notes.append(
            NotesComponent(
                **prologue(note_id),
                notesActionComments=f"<p>{html.escape(text)}</p>",
                agentReference=agent,
            )
        )
        return note_id

    how = (
        "The gateway is dialing this PSAP's handback line into the caller's conference; the "
        "counselor stays on the line until a call-taker answers."
        if facts.live
        else "There is no live gateway call: the 988 center will conference the caller in "
        "through the gateway's bridge line when it can."
    )
    reason_note = note(
        "reason", f"988 handback to 911. Reason: {_REASON_TEXT[facts.reason]}. {how}"
    )
    risk = facts.risk
    risk_note = note(
        "risk",
        f"Risk: weapons {_yes_no(risk.weapons)}; access to lethal means "
        f"{_yes_no(risk.means_access)}." + (f" Summary: {risk.summary}" if risk.summary else ""),
    )
    incident_notes = [reason_note, risk_note]
    if not known:
        locate = LOCATE_THE_CALLER if facts.callback_number else LOCATE_WITHOUT_CALLBACK
        incident_notes.append(note("locate", locate))

    callback: Reference | None = None
    callbacks: list[CallbackComponent] | None = None
    if facts.callback_number:
        callback = Reference(ref=callback_ref)
        callbacks = [
            CallbackComponent(
                **prologue(callback_ref), callBackInformationUri=[f"tel:{facts.callback_number}"]
            )
        ]
    located: list[Reference] | None = None
    locations: list[LocationComponent] | None = None
    if location is not None and (known or location.description):
        described = [t for t in (location.address, location.description) if t]
        locations = [
            LocationComponent(
                **prologue(location_ref),
                locationTypeDescriptionRegistryText="Incident",
                locationByValue=pidf_lo(location, f"pres:{person_ref}") if known else None,
                locationDescriptionText=" — ".join(described) if described else None,
            )
        ]
        located = _refs([location_ref])
    cautions: list[CautionComponent] | None = None
    if risk.weapons:
        cautions = [
            CautionComponent(
                **prologue(uid("cautionid", hb, domain)),
                cautionTypeInternalText="Weapons reported by the 988 counselor",
                cautionTypeCommonRegistryText="Weapons",
                cautionSeverity="high",
                cautionSource=center_ref,
            )
        ]
    links: list[LinkComponent] | None = None
    if facts.transfer_id:
        links = [
            LinkComponent(
                **prologue(uid("linkid", hb, domain)),
                incidentTrackingIdentifier=incident_id(facts.transfer_id, domain),
                linkDirectionCode="RELATED",
                transactionReasonText="The 911 to 988 transfer this call came through.",
                involvedAgencyReference=Reference(ref=psap_ref),
            )
        ]
    return EidoDocument(
        **prologue(the_incident),
        eidoVersion=EIDO_VERSION,
        issuingElementIdentification=domain,
        agencyComponent=[
            AgencyComponent(
                **prologue(psap_ref),
                agencyJcard=_jcard(facts.psap.name),
                agencyRoleDescriptionRegistryText=["CallReceiving"],
                agencyType=["psap"],
                incidentOwningAgencyIndicator=True,
            ),
            AgencyComponent(
                **prologue(center_ref),
                agencyJcard=_jcard(facts.center.name),
                agencyRoleDescriptionRegistryText=["CallTransferring"],
                agencyType=["crisis_line.988"],
                incidentOwningAgencyIndicator=False,
            ),
        ],
        agentComponent=(
            [
                AgentComponent(
                    **prologue(agent_ref),
                    agentRoleRegistryText=["Crisis Counselor"],
                    agencyReference=Reference(ref=center_ref),
                )
            ]
            if agent_ref
            else None
        ),
        callbackComponent=callbacks,
        locationComponent=locations,
        cautionComponent=cautions,
        linkComponent=links,
        incidentComponent=IncidentComponent(
            **prologue(the_incident),
            incidentTypeCommonRegistryText=(
                "Suicide / Attempt / Threat"
                if facts.reason in _SUICIDE
                else "Behavioral / Psychiatric"
            ),
            incidentTypeInternalCode=f"988-HANDBACK-{facts.reason.value.upper()}",
            incidentTypeInternalText=f"988 handback: {_REASON_TEXT[facts.reason]}",
            incidentStatusCommonRegistryText=["Pending"],
            personReference=_refs([person_ref]),
            notesReference=_refs(incident_notes),
            locationReference=located,
        ),
        callComponent=[
            CallComponent(
                **prologue(call_ref),
                standardPrimaryCallType="emergency",
                # As NENA's sample call transfer: the call comes in to the PSAP receiving it.
                direction="incoming",
                callStartTimestamp=(facts.call_started_at or facts.now).isoformat(
                    timespec="milliseconds"
                ),
                callStateRegistryText="partyAdd" if facts.live else "callBegin",
                agencyReference=_refs([center_ref, psap_ref]),
                personReference=_refs([person_ref]),
                notesReference=_refs([reason_note]),
                relatedCallIdentifier=(
                    [uid("callid", facts.transfer_id, domain)] if facts.transfer_id else None
                ),
                callBackReference=callback,
                locationReference=located,
            )
        ],
        personComponent=[
            PersonComponent(
                **prologue(person_ref),
                personIncidentRoleRegistryText=["Patient"],
                callIdentifier=[call_ref],
                notesReference=_refs([risk_note]),
                callBackReference=callback,
                locationReference=located,
            )
        ],
        notesComponent=notes,
        context=JSON_LD_CONTEXT,
    )


def _eido_schema(schema: dict[str, Any]) -> None:
    """NENA's definition, and an example: the EIDO of a sample data-only handback."""
    schema["externalDocs"] = {
        "description": "NENA-STA-021, EIDO JSON schema",
        "url": "https://github.com/NENA911/EIDO-JSON",
    }
    sample = EidoFacts(
        handback_id="hb_7a1e4c9b0d2f8e3a6c5b1d0e",
        domain="gateway.example.org",
        now=datetime(2026, 3, 8, 3, 15, tzinfo=UTC),
        psap=Agency("kc-valleycom", "Valley Communications Center"),
        center=Agency("crisis-connections", "Crisis Connections 988"),
        reason=HandbackReason.IMMINENT_RISK,
        live=False,
        location=Location(address="500 Example Ave, Kent, WA"),
        callback_number="+12065550123",
        risk=Risk(weapons=False, means_access=True),
        counselor_ref="c-104",
    )
    schema["examples"] = [build(sample)]
