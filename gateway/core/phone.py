"""Phone numbers: reading them as people write them, the E.164 form kept and answered, and
redaction for anything printed.

Every number that enters the gateway — a transfer's or a handback's ``callback_number``, a
PSAP's ``handback_number``, a destination's ``number``, ``GATEWAY_BRIDGE_NUMBER`` — is read by
``to_e164`` (the ``PhoneNumber`` type at a pydantic boundary) and kept and answered in E.164
(DESIGN.md §9). A number may be written in E.164 (``+12065550123``) or in the national format
of a region (``(206) 555-0123``, ``206-555-0123``): the region is a PSAP's ``country``
(ISO 3166 alpha-2, default ``US``). Validity is Google's libphonenumber (the ``phonenumbers``
package): the number must be a valid, dialable number of its country, not merely the right
length. Only ASCII digits count: ``phonenumbers`` would read Arabic-Indic or fullwidth digits
(and letters, ``1-800-FLOWERS``) as digits, which no call-taker's screen shows as typed, so
they are refused before it parses. Errors never echo the number (personal data) and never show
a pattern: they say what to send, with an E.164 example of the region.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo
from pydantic_core import PydanticCustomError

DEFAULT_REGION = "US"
"""The region a national number is read in when the PSAP names no ``country``."""
REGION_CONTEXT = "phone_region"
"""The pydantic validation-context key giving the region ``PhoneNumber`` reads national
numbers in (``phone_context``); without it, ``DEFAULT_REGION``."""
MAX_LENGTH = 40
"""Longest text read as a phone number: E.164 is at most 16 characters, a national format with
separators about 20."""
_SEPARATORS = frozenset(" -.()/")
_ASCII_DIGITS = frozenset("0123456789")
REGIONS: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)
"""ISO 3166 alpha-2 codes of the regions libphonenumber has numbering plans for."""


class PhoneNumberError(ValueError):
    """Text that is not a valid, dialable phone number; ``message`` says what to send instead
    (no number, no pattern)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def example(region: str = DEFAULT_REGION) -> str:
    """An E.164 example number of ``region`` (libphonenumber's, fictional: ``+12015550123``)."""
    number = phonenumbers.example_number(region) or phonenumbers.example_number(DEFAULT_REGION)
    assert number is not None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _what_to_send(region: str) -> str:
    return f"write it in E.164, e.g. {example(region)}, or in the national format of {region}"


def to_e164(text: str, region: str = DEFAULT_REGION) -> str:
    """``text`` as an E.164 number (``+`` and up to 15 digits).

    ``text`` is E.164 or a national format of ``region`` (ISO 3166 alpha-2): ASCII digits,
    spaces and ``- . ( ) /``, with ``+`` only in front. Raises ``PhoneNumberError`` for any
    other character (another script's digits, letters, control characters), and for a number
    libphonenumber does not hold valid for its country (a wrong length, an area code not in
    service, a 555 area code).
    """
    if region not in REGIONS:
        raise ValueError(f"{region!r} is not a region code libphonenumber knows")
    if not text.strip():
        raise PhoneNumberError(f"a phone number is empty; {_what_to_send(region)}")
    if len(text) > MAX_LENGTH:
        raise PhoneNumberError(
            f"a phone number is at most {MAX_LENGTH} characters; {_what_to_send(region)}"
        )
    body = text[1:] if text.startswith("+") else text
    for char in body:
        if char in _ASCII_DIGITS or char in _SEPARATORS:
            continue
        if char.isdigit():
            raise PhoneNumberError(
                f"only the ASCII digits 0-9 count in a phone number; {_what_to_send(region)}"
            )
        raise PhoneNumberError(
            "a phone number holds digits, spaces, '-', '.', '(', ')' and '/', with '+' only "
            f"in front; {_what_to_send(region)}"
        )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise PhoneNumberError(f"not a valid, dialable phone number; {_what_to_send(region)}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_context(region: str | None) -> dict[str, Any]:
    """The validation context under which ``PhoneNumber`` reads national numbers in
    ``region`` (``DEFAULT_REGION`` when None)."""
    return {REGION_CONTEXT: region or DEFAULT_REGION}


def _region(context: Any) -> str:
    if isinstance(context, Mapping):
        region = context.get(REGION_CONTEXT)
        if isinstance(region, str) and region in REGIONS:
            return region
    return DEFAULT_REGION


def e164_field(value: str, region: str) -> str:
    """``to_e164`` for a pydantic validator: a ``PhoneNumberError`` becomes the field's error
    (type ``phone_number``, our message alone, without pydantic's "Value error, " prefix)."""
    try:
        return to_e164(value, region)
    except PhoneNumberError as exc:
        # The message holds no braces, which PydanticCustomError would read as placeholders.
        raise PydanticCustomError("phone_number", exc.message) from None


def _phone_number(value: str, info: ValidationInfo) -> str:
    return e164_field(value, _region(info.context))


PhoneNumber = Annotated[
    str,
    StringConstraints(max_length=MAX_LENGTH),
    AfterValidator(_phone_number),
    Field(
        description=(
            "A phone number, answered in E.164. Sent in E.164 or in the national format of the "
            "PSAP's country (ISO 3166 alpha-2, default US); ASCII digits only."
        ),
        examples=["+12065550123", "(206) 555-0123"],
    ),
]
"""A phone number as a request or a config file gives it, E.164 once validated (``to_e164``;
national numbers in the validation context's region, ``phone_context``)."""


def _country(code: str) -> str:
    if code not in REGIONS:
        raise PydanticCustomError(
            "country",
            "an ISO 3166 alpha-2 country code in capitals that has a telephone numbering plan, "
            "e.g. US, CA, GB",
        )
    return code


Country = Annotated[str, StringConstraints(min_length=2, max_length=2), AfterValidator(_country)]
"""Where a PSAP is: the ISO 3166 alpha-2 code (``US``) national phone numbers are read in."""


E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
"""ASCII digits only: ``\\d`` would also match Arabic-Indic, fullwidth and other Unicode digits
(in Python's ``re`` and in pydantic's regex engine alike), which no carrier can dial."""

E164 = Annotated[str, StringConstraints(pattern=E164_PATTERN)]
"""A phone number already in E.164 form, as the gateway keeps it (records it reads back, its
answers): ``+`` then 2 to 15 ASCII digits, no leading zero. Input is read as ``PhoneNumber``."""

# E.164 (+15555550100), NANP with separators ((555) 555-0100, 555-555-0100, 555.555.0100,
# 1-555-555-0100) and bare 10/11-digit runs. Deliberately greedy: a false positive costs a
# redacted number in a log line; a false negative leaks one. So ``\d`` stays Unicode-aware here
# (any script's digits are redacted), unlike the validation pattern above.
PHONE_RE = re.compile(
    r"""
    \+\d{7,}                                                  # E.164, even glued to text
  | (?<![\w])
    (?:
        (?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}      # NANP with separators
      | 1?\d{10}                                                # bare digits
    )
    (?![\w])
    """,
    re.VERBOSE,
)


def redact_phones(text: str) -> str:
    return PHONE_RE.sub("[phone]", text)
