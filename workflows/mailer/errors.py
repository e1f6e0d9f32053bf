"""Why a send failed, in words that can be shown to the person who asked for the email.

The workflow's retry decision is the class: `PermanentSendError` means trying again cannot help,
`TransientSendError` means it might, `AmbiguousSendError` means the message may already be delivered.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousSendError",
    "InvalidEmailError",
    "PartlyDeliveredError",
    "PermanentSendError",
    "SendError",
    "TransientSendError",
]


class SendError(Exception):
    """Sending failed; `reason` is safe to show to the person who asked for the email."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentSendError(SendError):
    """Trying again with the same email and settings will fail the same way."""


class TransientSendError(SendError):
    """The server or network may recover; worth retrying with backoff, and not before `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class AmbiguousSendError(SendError):
    """The message was handed over but the server's answer never came (disconnect or time-out after DATA):
    it may have been delivered. Sending it again blindly could deliver it twice. `hold_seconds`: a hand-over
    elsewhere may still be going for that long, so no new one may start before."""

    def __init__(self, reason: str, hold_seconds: float = 0.0) -> None:
        super().__init__(reason)
        self.hold_seconds = hold_seconds


class InvalidEmailError(PermanentSendError, ValueError):
    """The email itself can never be sent as given (bad address, header injection, ...)."""


class PartlyDeliveredError(SendError):
    """The server took the message for some recipients and refused the others: it *was* sent (to
    `delivered_to`), so it must never be sent again as a whole; `reason` names the refused addresses."""

    def __init__(self, reason: str, delivered_to: list[str]) -> None:
        super().__init__(reason)
        self.delivered_to = delivered_to
