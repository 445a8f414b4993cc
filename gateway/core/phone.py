"""Phone numbers: the E.164 type used at every boundary, and redaction for anything printed."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
"""ASCII digits only: ``\\d`` would also match Arabic-Indic, fullwidth and other Unicode digits
(in Python's ``re`` and in pydantic's regex engine alike), which no carrier can dial."""

E164 = Annotated[str, StringConstraints(pattern=E164_PATTERN)]
"""A phone number in E.164 form: ``+`` then 2 to 15 ASCII digits, no leading zero."""

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
