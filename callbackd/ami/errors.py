"""What can go wrong on an AMI link, as types the callers can handle precisely."""

from __future__ import annotations


class AmiError(Exception):
    """Base of every AMI link error."""


class AmiNotConnected(AmiError):
    """The link is not logged in; actions are refused, never queued for later."""


class AmiConnectionLost(AmiError):
    """The connection dropped while the action was pending; it is never re-sent."""


class AmiTimeout(AmiError):
    """Asterisk did not answer the action in time."""


class AmiUnsafeValue(AmiError):
    """A header would break AMI framing (CR, LF or NUL) or is not a plain header name."""


class AmiActionFailed(AmiError):
    """Asterisk answered the action with an error."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message
