"""TwiML documents as the sandbox reads them: a ``<Response>`` holding verbs with attributes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


class TwimlError(ValueError):
    """The document is not TwiML (Twilio's error 12100, "Document parse failure")."""


@dataclass(frozen=True, slots=True)
class Verb:
    name: str
    attrs: dict[str, str]
    text: str
    children: tuple[Verb, ...] = field(default=())

    def attr(self, name: str, default: str = "") -> str:
        return self.attrs.get(name, default)

    def flag(self, name: str, default: bool) -> bool:
        value = self.attrs.get(name)
        if value is None:
            return default
        return value.strip().lower() == "true"

    def number(self, name: str, default: float) -> float:
        try:
            return float(self.attrs[name])
        except (KeyError, ValueError):
            return default


def _verb(element: ET.Element) -> Verb:
    return Verb(
        name=element.tag,
        attrs={k: v for k, v in element.attrib.items()},
        text=(element.text or "").strip(),
        children=tuple(_verb(child) for child in element),
    )


def parse(document: str) -> list[Verb]:
    """The verbs of a TwiML document, in order. The text comes from the application under
    test on a loopback address; expat's own limits guard against entity expansion."""
    try:
        root = ET.fromstring(document)  # noqa: S314 - TwiML from the local app under test
    except ET.ParseError as exc:
        raise TwimlError(f"not XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"root element is <{root.tag}>, not <Response>")
    return [_verb(child) for child in root]
