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
from datetime import datetime
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

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


def _refs(ids: Sequence[str]) -> list[dict[str, str]]:
    return [{"$ref": i} for i in ids]


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


def build(facts: EidoFacts) -> dict[str, Any]:
    """The EIDO for one handback (a plain JSON object)."""
    domain = facts.domain
    hb = facts.handback_id
    stamp = facts.now.isoformat(timespec="milliseconds")
    psap_ref = psap_agency_id(facts.psap.id, domain)
    center_ref = center_agency_id(facts.center.id, domain)
    # The counselor reference is the center's free text: percent-encoded into the URI.
    agent_ref = (
        f"{quote(facts.counselor_ref, safe='')}@{center_ref}" if facts.counselor_ref else None
    )

    def prologue(component_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "$id": component_id,
            "lastUpdateTimeStamp": stamp,
            "updatedByAgencyReference": {"$ref": center_ref},
        }
        if agent_ref:
            out["updatedByAgentReference"] = {"$ref": agent_ref}
        return out

    the_incident = incident_id(hb, domain)
    call_ref = uid("callid", hb, domain)
    callback_ref = uid("callbackid", hb, domain)
    person_ref = uid("personid", hb, domain)
    location_ref = uid("locationid", hb, domain)
    location = facts.location
    known = location is not None and location.known

    notes: list[dict[str, Any]] = []

    def note(kind: str, text: str) -> str:
        note_id = uid(f"notesid-{kind}", hb, domain)
        body = {**prologue(note_id), "notesActionComments": f"<p>{html.escape(text)}</p>"}
        if agent_ref:
            body["agentReference"] = {"$ref": agent_ref}
        notes.append(body)
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
    person_notes = [risk_note]
    incident_notes = [reason_note, risk_note]
    if not known:
        locate = LOCATE_THE_CALLER if facts.callback_number else LOCATE_WITHOUT_CALLBACK
        incident_notes.append(note("locate", locate))

    eido: dict[str, Any] = {
        **prologue(the_incident),
        "eidoVersion": EIDO_VERSION,
        "issuingElementIdentification": domain,
        "agencyComponent": [
            {
                **prologue(psap_ref),
                "agencyJcard": _jcard(facts.psap.name),
                "agencyRoleDescriptionRegistryText": ["CallReceiving"],
                "agencyType": ["psap"],
                "incidentOwningAgencyIndicator": True,
            },
            {
                **prologue(center_ref),
                "agencyJcard": _jcard(facts.center.name),
                "agencyRoleDescriptionRegistryText": ["CallTransferring"],
                "agencyType": ["crisis_line.988"],
                "incidentOwningAgencyIndicator": False,
            },
        ],
    }
    if agent_ref:
        eido["agentComponent"] = [
            {
                **prologue(agent_ref),
                "agentRoleRegistryText": ["Crisis Counselor"],
                "agencyReference": {"$ref": center_ref},
            }
        ]

    incident: dict[str, Any] = {
        **prologue(the_incident),
        "incidentTypeCommonRegistryText": (
            "Suicide / Attempt / Threat" if facts.reason in _SUICIDE else "Behavioral / Psychiatric"
        ),
        "incidentTypeInternalCode": f"988-HANDBACK-{facts.reason.value.upper()}",
        "incidentTypeInternalText": f"988 handback: {_REASON_TEXT[facts.reason]}",
        "incidentStatusCommonRegistryText": ["Pending"],
        "personReference": _refs([person_ref]),
        "notesReference": _refs(incident_notes),
    }
    call: dict[str, Any] = {
        **prologue(call_ref),
        "standardPrimaryCallType": "emergency",
        # As NENA's sample call transfer: the call comes in to the PSAP receiving the EIDO.
        "direction": "incoming",
        "callStartTimestamp": (facts.call_started_at or facts.now).isoformat(
            timespec="milliseconds"
        ),
        "callStateRegistryText": "partyAdd" if facts.live else "callBegin",
        "agencyReference": _refs([center_ref, psap_ref]),
        "personReference": _refs([person_ref]),
        "notesReference": _refs([reason_note]),
    }
    person: dict[str, Any] = {
        **prologue(person_ref),
        "personIncidentRoleRegistryText": ["Patient"],
        "callIdentifier": [call_ref],
        "notesReference": _refs(person_notes),
    }
    if facts.transfer_id:
        call["relatedCallIdentifier"] = [uid("callid", facts.transfer_id, domain)]
    if facts.callback_number:
        eido["callbackComponent"] = [
            {**prologue(callback_ref), "callBackInformationUri": [f"tel:{facts.callback_number}"]}
        ]
        call["callBackReference"] = {"$ref": callback_ref}
        person["callBackReference"] = {"$ref": callback_ref}
    if location is not None and (known or location.description):
        component: dict[str, Any] = {
            **prologue(location_ref),
            "locationTypeDescriptionRegistryText": "Incident",
        }
        if known:
            component["locationByValue"] = pidf_lo(location, f"pres:{person_ref}")
        described = [t for t in (location.address, location.description) if t]
        if described:
            component["locationDescriptionText"] = " — ".join(described)
        eido["locationComponent"] = [component]
        for holder in (incident, call, person):
            holder["locationReference"] = _refs([location_ref])
    if risk.weapons:
        caution_ref = uid("cautionid", hb, domain)
        eido["cautionComponent"] = [
            {
                **prologue(caution_ref),
                "cautionTypeInternalText": "Weapons reported by the 988 counselor",
                "cautionTypeCommonRegistryText": "Weapons",
                "cautionSeverity": "high",
                "cautionSource": center_ref,
            }
        ]
    if facts.transfer_id:
        eido["linkComponent"] = [
            {
                **prologue(uid("linkid", hb, domain)),
                "incidentTrackingIdentifier": incident_id(facts.transfer_id, domain),
                "linkDirectionCode": "RELATED",
                "transactionReasonText": "The 911 to 988 transfer this call came through.",
                "involvedAgencyReference": {"$ref": psap_ref},
            }
        ]
    eido["incidentComponent"] = incident
    eido["callComponent"] = [call]
    eido["personComponent"] = [person]
    eido["notesComponent"] = notes
    eido["@context"] = JSON_LD_CONTEXT
    return eido
