"""The domain's refusals, raised by the functions views and tasks call; ingress.errors.ANSWERS
gives each its answer (CONTRACT §2)."""

from __future__ import annotations


class Conflict(Exception):
    """A request that contradicts the state it targets: answered 409 with `code`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class BadCursor(ValueError):
    """A pagination cursor we did not issue."""


class NotFound(LookupError):
    """What a request names does not exist, or is not the caller's to see."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
