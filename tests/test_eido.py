"""The handback's EIDO against NENA's own schema (vendored in ``tests/data/eido``)."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from gateway.handback.eido import LOCATE_THE_CALLER, Agency, EidoFacts, build, incident_id
from gateway.handback.models import HandbackReason, Location, Risk

EIDO_DIR = Path(__file__).parent / "data" / "eido"
SHARED_EIDO = Path(__file__).resolve().parents[2] / "shared" / "eido"
BASE = "file:///eido/"
ROOT_SCHEMA = "openapi.yaml#/components/schemas/EmergencyIncidentDataObjectType"
NUMERIC_KEYWORDS = frozenset(
    {
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
        "multipleOf",
    }
)
_REF_FILE = re.compile(r"\$ref:\s*['\"]?([^#'\"\s]+\.yaml)#")


def _normalised(node: Any) -> Any:
    """``minItems: 1,`` (openapi.yaml line 218) parses as the string ``"1,"``: numeric
    keywords become numbers again."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in NUMERIC_KEYWORDS and isinstance(value, str):
                value = int(value.strip().rstrip(",").strip())
            out[key] = _normalised(value)
        return out
    if isinstance(node, list):
        return [_normalised(v) for v in node]
    return node


def _relative(path: str) -> str:
    return str(Path(path))  # NIEMComponents//j.yaml → NIEMComponents/j.yaml


def referenced_files(root: Path) -> set[str]:
    """``openapi.yaml`` and every file it references, transitively."""
    seen: set[str] = set()
    todo = ["openapi.yaml"]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        folder = str(Path(rel).parent)
        for target in _REF_FILE.findall((root / rel).read_text()):
            todo.append(_relative(target if folder == "." else f"{folder}/{target}"))
    return seen


@functools.cache
def schema_documents(root: Path = EIDO_DIR) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return {
        rel: _normalised(yaml.load((root / rel).read_text(), Loader=loader))  # noqa: S506
        for rel in referenced_files(root)
    }


@functools.cache
def eido_validator() -> Draft4Validator:
    documents = schema_documents()

    def retrieve(uri: str) -> Resource[Any]:
        return Resource.from_contents(
            documents[_relative(uri.removeprefix(BASE))], default_specification=DRAFT4
        )

    registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return Draft4Validator({"$ref": BASE + ROOT_SCHEMA}, registry=registry)


def eido_errors(document: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in eido_validator().iter_errors(document)
    ]


NOW = datetime(2026, 3, 8, 3, 15, tzinfo=UTC)
DOMAIN = "gateway.example.test"


def facts(**overrides: Any) -> EidoFacts:
    base: dict[str, Any] = {
        "handback_id": "hb_" + "a" * 24,
        "domain": DOMAIN,
        "now": NOW,
        "psap": Agency("kc-valleycom", "Valley Communications Center"),
        "center": Agency("crisis-connections", "Crisis Connections 988"),
        "reason": HandbackReason.IMMINENT_RISK,
        "live": True,
        "location": Location(
            address="1200 Main St, Kent, WA", lat=47.38, lon=-122.23, description="blue door"
        ),
        "callback_number": "+12065550123",
        "risk": Risk(weapons=True, means_access=True, summary="has pills, plan for tonight"),
        "counselor_ref": "c-104",
        "transfer_id": "tr_" + "b" * 24,
        "call_started_at": datetime(2026, 3, 8, 3, 1, tzinfo=UTC),
    }
    return EidoFacts(**{**base, **overrides})


def test_the_vendored_schema_loads_and_the_quirk_is_normalised() -> None:
    agent = schema_documents()["openapi.yaml"]["components"]["schemas"]["AgentType"]
    assert agent["allOf"][1]["properties"]["agentRoleRegistryText"]["minItems"] == 1


def test_nenas_sample_validates_and_fails_without_agency_component() -> None:
    sample = json.loads((EIDO_DIR / "sample-call-transfer.json").read_text())
    assert eido_errors(sample) == []
    del sample["agencyComponent"]
    assert eido_errors(sample) == [": 'agencyComponent' is a required property"]


def test_a_full_handback_eido_validates_and_carries_what_the_psap_needs() -> None:
    document = build(facts())
    assert eido_errors(document) == []

    hb, tr = "hb_" + "a" * 24, "tr_" + "b" * 24
    assert document["$id"] == f"urn:emergency:uid:incidentid:{hb}:{DOMAIN}"
    assert document["$id"] == incident_id(hb, DOMAIN)
    assert document["eidoVersion"] == "1.0"
    assert document["lastUpdateTimeStamp"] == "2026-03-08T03:15:00.000+00:00"
    agencies = {a["$id"]: a for a in document["agencyComponent"]}
    assert set(agencies) == {
        f"psap.kc-valleycom.{DOMAIN}",
        f"crisis-center.crisis-connections.{DOMAIN}",
    }
    assert document["updatedByAgencyReference"] == {
        "$ref": f"crisis-center.crisis-connections.{DOMAIN}"
    }
    assert agencies[f"psap.kc-valleycom.{DOMAIN}"]["incidentOwningAgencyIndicator"] is True
    incident = document["incidentComponent"]
    assert incident["incidentTypeCommonRegistryText"] == "Suicide / Attempt / Threat"
    assert document["callbackComponent"][0]["callBackInformationUri"] == ["tel:+12065550123"]
    (location,) = document["locationComponent"]
    assert "<gml:pos>47.38 -122.23</gml:pos>" in location["locationByValue"]
    assert "1200 Main St, Kent, WA" in location["locationByValue"]
    (person,) = document["personComponent"]
    assert person["locationReference"] == [{"$ref": location["$id"]}]
    assert person["callBackReference"] == {"$ref": document["callbackComponent"][0]["$id"]}
    notes = " ".join(n["notesActionComments"] for n in document["notesComponent"])
    assert "imminent risk of suicide" in notes
    assert "has pills, plan for tonight" in notes
    assert LOCATE_THE_CALLER not in notes
    assert document["cautionComponent"][0]["cautionTypeCommonRegistryText"] == "Weapons"
    (link,) = document["linkComponent"]
    assert link["incidentTrackingIdentifier"] == f"urn:emergency:uid:incidentid:{tr}:{DOMAIN}"
    # every reference points at a component of the document
    ids = {
        c["$id"]
        for key, value in document.items()
        if key.endswith("Component")
        for c in (value if isinstance(value, list) else [value])
    }
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)))
    assert refs <= ids, refs - ids


def test_without_a_location_the_eido_validates_and_asks_the_psap_to_locate_the_caller() -> None:
    document = build(
        facts(location=None, transfer_id=None, counselor_ref=None, risk=Risk(), live=False)
    )
    assert eido_errors(document) == []
    assert "locationComponent" not in document
    assert "linkComponent" not in document
    assert "cautionComponent" not in document
    notes = [n["notesActionComments"] for n in document["notesComponent"]]
    assert any("Please locate the caller" in n for n in notes)
    assert document["callComponent"][0]["callStateRegistryText"] == "callBegin"


def test_a_description_alone_is_not_a_location() -> None:
    document = build(facts(location=Location(description="somewhere near the river")))
    assert eido_errors(document) == []
    (location,) = document["locationComponent"]
    assert "locationByValue" not in location
    assert location["locationDescriptionText"] == "somewhere near the river"
    notes = " ".join(n["notesActionComments"] for n in document["notesComponent"])
    assert "Please locate the caller" in notes


def test_text_is_escaped_in_notes_and_pidf_lo() -> None:
    document = build(facts(location=Location(address='5 <A> & "B" St'), risk=Risk(summary="<b>")))
    assert eido_errors(document) == []
    pidf = ElementTree.fromstring(document["locationComponent"][0]["locationByValue"])  # noqa: S314
    (loc,) = pidf.iter("{urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr}LOC")
    assert loc.text == '5 <A> & "B" St'
    notes = " ".join(n["notesActionComments"] for n in document["notesComponent"])
    assert "&lt;b&gt;" in notes
    assert "<b>" not in notes


def test_a_broken_eido_fails_the_same_validator() -> None:
    document = build(facts())
    del document["agencyComponent"]
    assert eido_errors(document) == [": 'agencyComponent' is a required property"]
    document = build(facts())
    document["callbackComponent"][0]["callBackInformationUri"] = "tel:+12065550123"
    assert eido_errors(document), "a callback URI outside its array must not validate"


def test_the_vendored_files_are_exactly_what_openapi_yaml_references() -> None:
    on_disk = {str(p.relative_to(EIDO_DIR)) for p in EIDO_DIR.rglob("*.yaml")}
    assert on_disk == referenced_files(EIDO_DIR)


@pytest.mark.skipif(not SHARED_EIDO.is_dir(), reason="../shared/eido is not present")
def test_the_vendored_copy_equals_the_shared_schema() -> None:
    for rel in [*referenced_files(EIDO_DIR), "sample-call-transfer.json"]:
        assert (EIDO_DIR / rel).read_bytes() == (SHARED_EIDO / rel).read_bytes(), rel


def test_the_call_is_incoming_as_in_nenas_sample() -> None:
    sample = json.loads((EIDO_DIR / "sample-call-transfer.json").read_text())
    assert sample["callComponent"][0]["direction"] == "incoming"
    assert build(facts())["callComponent"][0]["direction"] == "incoming"


def test_the_locate_note_names_a_callback_component_only_when_there_is_one() -> None:
    with_callback = build(facts(location=None))
    notes = " ".join(n["notesActionComments"] for n in with_callback["notesComponent"])
    assert "callback component" in notes
    without = build(facts(location=None, callback_number=None))
    assert eido_errors(without) == []
    assert "callbackComponent" not in without
    notes = " ".join(n["notesActionComments"] for n in without["notesComponent"])
    assert "Please locate the caller" in notes
    assert "callback component" not in notes
    assert "no callback number" in notes


def test_a_free_text_counselor_ref_is_percent_encoded_in_its_uri() -> None:
    document = build(facts(counselor_ref="Ana O'Neil #4 / night"))
    assert eido_errors(document) == []
    (agent,) = document["agentComponent"]
    assert agent["$id"] == (
        f"Ana%20O%27Neil%20%234%20%2F%20night@crisis-center.crisis-connections.{DOMAIN}"
    )
    assert document["updatedByAgentReference"] == {"$ref": agent["$id"]}
    assert {n["agentReference"]["$ref"] for n in document["notesComponent"]} == {agent["$id"]}
