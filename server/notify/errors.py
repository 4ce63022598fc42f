"""Failures of the notification transports, with whether trying again later can help."""

from __future__ import annotations


class NotifyConfigurationError(RuntimeError):
    """The transport cannot be used as configured (e.g. production without an SMTP host)."""


class DeliveryError(RuntimeError):
    """A message was not handed over; `retryable` says whether the same attempt may succeed later.

    Messages never contain the recipient's address or phone number: they end up in logs and task results.
    """

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class EmailDeliveryError(DeliveryError):
    """The SMTP server refused the message or could not be reached; `code` is its reply code, if any."""

    def __init__(self, reason: str, *, retryable: bool, code: int | None = None) -> None:
        super().__init__(reason, retryable=retryable)
        self.code = code


class SmsDeliveryError(DeliveryError):
    """The SMS gateway answered other than 2xx (`status`), or could not be reached (`status` is None)."""

    def __init__(self, reason: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(reason, retryable=retryable)
        self.status = status
