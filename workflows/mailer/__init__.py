"""Turning an `OutgoingEmail` into a real message and handing it to a mail server (or the outbox).

The workflow decides *when* an email goes out and whether to try again; this package only sends,
synchronously, and says in plain words why it could not (`errors`). `message` builds what goes on
the wire, `smtp` and `outbox` deliver it, and this module picks the mailer the settings ask for.
"""

from __future__ import annotations

from email.headerregistry import Address
from typing import TYPE_CHECKING, Protocol

from workflows.mailer.errors import (
    AmbiguousSendError,
    InvalidEmailError,
    PartlyDeliveredError,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from workflows.mailer.message import OutgoingEmail, build_message, on_behalf_of, parse_sender
from workflows.mailer.outbox import OutboxMailer
from workflows.mailer.sent_folder import DEFAULT_IMAP_PORTS, GMAIL_IMAP_HOST, ImapSentFolder
from workflows.mailer.smtp import DEFAULT_FROM_ADDRESS, DEFAULT_PORTS, SmtpMailer

if TYPE_CHECKING:
    from settings import Settings

__all__ = [
    "DEFAULT_FROM_ADDRESS",
    "AmbiguousSendError",
    "ImapSentFolder",
    "InvalidEmailError",
    "Mailer",
    "OutboxMailer",
    "OutgoingEmail",
    "PartlyDeliveredError",
    "PermanentSendError",
    "SendError",
    "SmtpMailer",
    "TransientSendError",
    "build_message",
    "mailer_from_settings",
    "on_behalf_of",
    "parse_sender",
    "sender_address",
    "sent_folder_from_settings",
]

GMAIL_SMTP_HOST = "smtp.gmail.com"
GMAIL_SMTP_PORT = 465


class Mailer(Protocol):
    """Something that delivers an email now, or raises a `SendError` saying why not."""

    @property
    def description(self) -> str:
        """Where mail goes, for logs and status messages (never contains secrets)."""
        ...

    def send(self, email: OutgoingEmail) -> str:
        """Deliver `email`; returns a short description of where it went."""
        ...

    def was_delivered(self, message_id: str, settle: bool = True) -> bool | None:
        """Whether the message with this id reached its destination; None when that cannot be told.
        `settle`: a "no" right after a hand-over is asked again a moment later before it is given."""
        ...


def sender_address(settings: Settings) -> Address:
    """MAIL_FROM, else an SMTP login that is an address, else the Google account, else a local default.

    The workflow takes its Message-ID domain from the same value (`.domain`), so the two never disagree.
    """
    if settings.mail_from:
        return parse_sender(settings.mail_from)
    if settings.smtp_username and "@" in settings.smtp_username:  # "apikey"-style logins are no address
        return parse_sender(settings.smtp_username)
    return parse_sender(settings.google_email_address or DEFAULT_FROM_ADDRESS)


def sent_folder_from_settings(settings: Settings) -> ImapSentFolder | None:
    """The Sent folder to ask after a lost SMTP answer: IMAP_HOST, else Gmail's for the Google account."""
    if not settings.sent_folder_check:
        return None
    host = settings.imap_host
    if host is None and not settings.smtp_host and settings.google_email_address:
        host = GMAIL_IMAP_HOST
    if not host:
        return None
    if settings.smtp_host:
        login, secret = settings.smtp_username, settings.smtp_password
    else:
        login, secret = settings.google_email_address, settings.google_email_app_password
    username = settings.imap_username or login
    password = settings.imap_password or secret
    if not username or not password:
        return None  # nothing to log in with: the folder cannot be asked
    return ImapSentFolder(
        host,
        settings.imap_port or DEFAULT_IMAP_PORTS[settings.imap_security],
        settings.imap_security,
        username,
        password.get_secret_value(),
        settings.imap_sent_folder,
        timeout=settings.smtp_timeout_seconds,
        settle_seconds=settings.imap_settle_seconds,
    )


def mailer_from_settings(settings: Settings) -> Mailer:
    """An explicit SMTP server wins, then the Google account, else the outbox, so a half-configured
    install writes files instead of failing every send."""
    from_address = str(sender_address(settings))
    if settings.smtp_host:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port or DEFAULT_PORTS[settings.smtp_security],
            settings.smtp_security,
            settings.smtp_username or None,
            password or None,
            from_address,
            settings.smtp_timeout_seconds,
            sent_folder=sent_folder_from_settings(settings),
        )
    if settings.google_email_address and settings.google_email_app_password:
        return SmtpMailer(
            GMAIL_SMTP_HOST,
            GMAIL_SMTP_PORT,
            "ssl",
            settings.google_email_address,
            settings.google_email_app_password.get_secret_value(),
            from_address,
            settings.smtp_timeout_seconds,
            credentials_hint="check GOOGLE_EMAIL_ADDRESS and GOOGLE_EMAIL_APP_PASSWORD (an app password)",
            sent_folder=sent_folder_from_settings(settings),
        )
    return OutboxMailer(settings.effective_outbox_dir, from_address)
