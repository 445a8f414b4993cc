"""Errors of the sandbox's REST API, rendered in Twilio's JSON error format.

TwilioApiError            -> {"code", "message", "more_info", "status"}
├── NotFound              (404, 20404)
└── InvalidParameter      (400, e.g. 21211 invalid To)
"""

from __future__ import annotations

from typing import Any


class TwilioApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


class NotFound(TwilioApiError):
    def __init__(self, path: str) -> None:
        super().__init__(404, 20404, f"The requested resource {path} was not found")


class InvalidParameter(TwilioApiError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(400, code, message)
