"""Turning an `OutgoingEmail` into a real message and handing it to a mail server (or the outbox).

The workflow decides *when* an email goes out and whether to try again; this module only sends,
synchronously, and says in plain words why it could not: `PermanentSendError` means trying again
cannot help, `TransientSendError` means it might.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import socket
import ssl
import tempfile
import unicodedata
from datetime import UTC, datetime
from email import message_from_string
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from settings import Settings

__all__ = [
    "DEFAULT_FROM_ADDRESS",
    "AmbiguousSendError",
    "InvalidEmailError",
    "Mailer",
    "OutboxMailer",
    "OutgoingEmail",
    "PermanentSendError",
    "SendError",
    "SmtpMailer",
    "TransientSendError",
    "build_message",
    "mailer_from_settings",
    "parse_sender",
    "sender_address",
]

Security = Literal["ssl", "starttls", "none"]

DEFAULT_FROM_ADDRESS = "email-agent@localhost"
GMAIL_SMTP_HOST = "smtp.gmail.com"
GMAIL_SMTP_PORT = 465
DEFAULT_PORTS: dict[str, int] = {"ssl": 465, "starttls": 587, "none": 25}

# 7bit keeps the wire format valid for servers without 8BITMIME (smtplib never declares it), so
# non-ASCII bodies go out as quoted-printable or base64 instead of raw UTF-8; otherwise this is
# exactly `email.policy.SMTP` (CRLF line endings, RFC 2047 for non-ASCII headers).
MESSAGE_POLICY = email_policy.SMTP.clone(cte_type="7bit")

# Everything `str.splitlines()` treats as a line end; the email package refuses these in headers,
# and CR/LF in particular would let a value start a header of its own.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# RFC 5322 msg-id with dot-atom-text on both sides (what we generate); no spaces, no folding.
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+>", re.ASCII)
_MAX_SERVER_TEXT = 200


# --- errors -------------------------------------------------------------------------------------


class SendError(Exception):
    """Sending failed; `reason` is safe to show to the person who asked for the email."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentSendError(SendError):
    """Trying again with the same email and settings will fail the same way."""


class TransientSendError(SendError):
    """The server or network may recover; worth retrying with backoff."""


class AmbiguousSendError(SendError):
    """The message was handed over but the server's answer never came (disconnect or time-out after DATA):
    it may have been delivered. Sending it again blindly could deliver it twice."""


class InvalidEmailError(PermanentSendError, ValueError):
    """The email itself can never be sent as given (bad address, header injection, ...)."""


# --- the email ----------------------------------------------------------------------------------


class OutgoingEmail(BaseModel):
    """What the workflow stores and hands over; checked strictly only when the message is built,
    so a stored email can always be loaded again and refused with a readable reason."""

    message_id: str = Field(description="RFC 5322 msg-id like <wf-1.r2@email-agent>; same on every retry.")
    to: list[str] = Field(min_length=1)
    subject: str
    body: str
    from_name: str | None = Field(None, description="Display name in From, e.g. 'Alice (via email-agent)'.")
    reply_to: str | None = Field(None, description="Where replies go: the person who asked for the email.")


class _ExactSubject(str):
    """A Subject header that reads back exactly as given.

    The email package's own folding loses leading blanks and decodes text that merely looks like
    an RFC 2047 encoded word (a subject "=?utf-8?q?abc?=" would arrive as "abc"). The policy keeps
    any value with a `name` unchanged and calls its `fold`, so we fold normally, read the result
    back, and only if it differs encode the whole subject as UTF-8 encoded words.
    """

    name = "Subject"

    def fold(self, *, policy: email_policy.Policy[Any]) -> str:
        text = str(self)
        folded: str = email_policy.default.header_factory(self.name, text).fold(policy=policy)
        if _read_back_subject(folded) == text:
            return folded
        encoded = Header(text, "utf-8", header_name=self.name).encode(linesep=policy.linesep)
        return f"{self.name}: {encoded}{policy.linesep}"


def _read_back_subject(folded: str) -> str | None:
    value = message_from_string(folded, policy=email_policy.default)["Subject"]
    return None if value is None else str(value)


def _check_subject(subject: str) -> str:
    for char in subject:
        if char in _LINE_BREAKS:
            raise InvalidEmailError(
                f"the subject contains a line break (U+{ord(char):04X}); a subject must be a single line"
            )
        category = unicodedata.category(char)
        if category == "Cc" and char != "\t":
            raise InvalidEmailError(f"the subject contains a control character (U+{ord(char):04X})")
        if category == "Cs":
            raise InvalidEmailError("the subject is not valid text (it contains a lone surrogate)")
    return subject


def _check_display_name(name: str) -> str:
    """One line of visible text: the header code quotes and RFC 2047-encodes it as needed."""
    if any(char in _LINE_BREAKS or unicodedata.category(char) in ("Cc", "Cs") for char in name):
        raise InvalidEmailError("the sender's display name contains a line break or a control character")
    return " ".join(name.split())[:100]


def _parse_address(value: str, role: str) -> Address:
    """Exactly one mailbox, optionally with a display name; anything ambiguous is refused, since
    the same string is later read again by smtplib and by the receiving server."""
    shown = repr(value) if len(value) <= 100 else repr(value[:100]) + "..."
    if any(char in _LINE_BREAKS for char in value):
        raise InvalidEmailError(f"the {role} address {shown} contains a line break, which is not allowed")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise InvalidEmailError(f"the {role} address {shown} contains an invisible control character")
    if not value.strip():
        raise InvalidEmailError(f"the {role} address is empty")
    try:
        header = email_policy.default.header_factory("To", value)
        addresses = header.addresses
        defects = header.defects
        groups = header.groups
    except Exception:  # the stdlib parser raises IndexError and friends on some garbage
        raise InvalidEmailError(f"the {role} address {shown} is not a valid email address") from None
    if len(addresses) != 1 or len(getaddresses([value])) != 1:
        raise InvalidEmailError(
            f"the {role} address {shown} is not exactly one email address; list each recipient separately"
        )
    parsed = addresses[0]
    if defects or groups[0].display_name is not None or not parsed.username or not parsed.domain:
        raise InvalidEmailError(f"the {role} address {shown} is not a valid email address")
    if parseaddr(value)[1] != parsed.addr_spec:
        # Two parsers disagreeing is exactly the ambiguity that header smuggling relies on.
        raise InvalidEmailError(f"the {role} address {shown} is ambiguous; write it as name@example.com")
    if not parsed.addr_spec.isascii():
        raise InvalidEmailError(
            f"the {role} address {shown} has non-ASCII letters in the address itself, which is not supported"
        )
    try:
        return Address(display_name=parsed.display_name, addr_spec=parsed.addr_spec)
    except Exception:
        raise InvalidEmailError(f"the {role} address {shown} is not a valid email address") from None


def parse_sender(value: str) -> Address:
    """The one reading of a From value (MAIL_FROM, an SMTP or Google account): one mailbox, with an
    optional display name that is kept in From (RFC 2047-encoded on the wire when it is not ASCII)."""
    return _parse_address(value, "sender")


def build_message(email: OutgoingEmail, from_address: str, date: datetime | None = None) -> EmailMessage:
    """Build the exact message that goes on the wire, refusing anything that could change its meaning.

    `date` defaults to now; a naive `date` is taken as UTC. Body line endings become CRLF on the wire.
    """
    if not _MESSAGE_ID.fullmatch(email.message_id):
        raise InvalidEmailError(f"the message id {email.message_id[:100]!r} is not of the form <something@domain>")
    if not email.to:
        raise InvalidEmailError("the email has no recipient")
    sender = _parse_address(from_address, "sender")
    if email.from_name is not None:
        # Who asked for it, by name; the address stays the account's, so SPF/DKIM and the sender match.
        sender = Address(display_name=_check_display_name(email.from_name), addr_spec=sender.addr_spec)
    reply_to = _parse_address(email.reply_to, "reply-to") if email.reply_to else None
    recipients = [_parse_address(address, "recipient") for address in email.to]
    subject = _ExactSubject(_check_subject(email.subject))
    try:
        email.body.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEmailError("the body is not valid text (it contains a lone surrogate)") from None

    when = datetime.now(UTC) if date is None else date
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

    msg = EmailMessage(policy=MESSAGE_POLICY)
    msg["From"] = sender
    if reply_to is not None:
        msg["Reply-To"] = reply_to
    msg["To"] = recipients
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when, usegmt=True)
    msg["Message-ID"] = email.message_id
    msg.set_content(email.body, charset="utf-8")
    return msg


# --- mailers ------------------------------------------------------------------------------------


class Mailer(Protocol):
    """Something that delivers an email now, or raises a `SendError` saying why not."""

    @property
    def description(self) -> str:
        """Where mail goes, for logs and status messages (never contains secrets)."""
        ...

    def send(self, email: OutgoingEmail) -> str:
        """Deliver `email`; returns a short description of where it went."""
        ...

    def was_delivered(self, message_id: str) -> bool | None:
        """Whether the message with this id reached its destination; None when that cannot be told."""
        ...


def _server_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return " ".join(f"{code} {text}".split())[:_MAX_SERVER_TEXT]


def _is_transient_code(code: int) -> bool:
    return 400 <= code < 500


def _by_code(code: int, reason: str) -> SendError:
    """4xx means "not now" in SMTP; everything else from a reply that names a problem is final."""
    return TransientSendError(reason) if _is_transient_code(code) else PermanentSendError(reason)


class _TracksData:
    """Notes when the DATA phase began: a lost connection after that leaves the outcome unknown."""

    in_data = False

    def data(self, msg: Any) -> Any:
        self.in_data = True
        return super().data(msg)  # type: ignore[misc]


class _SMTP(_TracksData, smtplib.SMTP):
    pass


class _SMTPSSL(_TracksData, smtplib.SMTP_SSL):
    pass


class SmtpMailer:
    """Delivers over SMTP, one connection per email, so a failed send leaves nothing half-open."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        username: str | None = None,
        password: str | None = None,
        from_address: str = DEFAULT_FROM_ADDRESS,
        timeout: float = 30.0,
        *,
        credentials_hint: str = "check SMTP_USERNAME and SMTP_PASSWORD",
    ) -> None:
        if security not in DEFAULT_PORTS:
            raise ValueError(f"unknown SMTP security {security!r}; use ssl, starttls or none")
        self.host = host
        self.port = port
        self.security: Security = security
        self.username = username
        self._password = password
        self.from_address = from_address
        self.timeout = timeout
        self.credentials_hint = credentials_hint

    def __repr__(self) -> str:  # the default would be harmless, but never risk printing the password
        return (
            f"SmtpMailer(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, from_address={self.from_address!r})"
        )

    @property
    def description(self) -> str:
        return f"SMTP {self.host}:{self.port} ({self.security})"

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, email: OutgoingEmail) -> str:
        msg = build_message(email, self.from_address)  # refuses bad input before any connection
        session: list[_TracksData] = []
        try:
            self._deliver(msg, session)
        except SendError:
            raise
        except Exception as exc:
            in_data = bool(session) and session[0].in_data
            if in_data and not isinstance(exc, smtplib.SMTPResponseException | UnicodeError):
                raise AmbiguousSendError(
                    f"the connection to the mail server at {self._where} broke after the message was handed "
                    "over, before the server confirmed it"
                ) from exc
            error = self._classify(exc)
            if isinstance(exc, UnicodeError):
                raise error from None  # its args may contain the password
            raise error from exc
        return self._where

    def was_delivered(self, message_id: str) -> bool | None:
        return None  # plain SMTP cannot be asked afterwards

    def _connect(self) -> _SMTP | _SMTPSSL:
        if self.security == "ssl":
            return _SMTPSSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        smtp = _SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            try:
                smtp.ehlo()
                smtp.starttls(context=ssl.create_default_context())  # never falls back to plain text
                smtp.ehlo()
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _deliver(self, msg: EmailMessage, session: list[_TracksData]) -> None:
        smtp = self._connect()
        session.append(smtp)
        delivered = False
        try:
            if self.username and self._password:
                smtp.login(self.username, self._password)
            refused = smtp.send_message(msg)
            delivered = True
            if refused:
                taken = [a for a in getaddresses(msg.get_all("To", [])) if a[1] not in refused]
                details = "; ".join(f"{rcpt} ({_server_text(*answer)})" for rcpt, answer in refused.items())
                raise PermanentSendError(
                    f"the email went to {', '.join(a[1] for a in taken)}, but the mail server at "
                    f"{self._where} refused {details}"
                )
        finally:
            if delivered:
                try:
                    smtp.quit()  # the server already took the message; a failing QUIT changes nothing
                except (smtplib.SMTPException, OSError):
                    pass
            smtp.close()

    def _classify(self, exc: BaseException) -> SendError:
        """Map whatever smtplib/ssl/socket raised to a retry decision and an explanation."""
        where = self._where
        scrub = self._scrub
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            text = scrub(_server_text(exc.smtp_code, exc.smtp_error))
            reason = f"the mail server refused the login ({text}): {self.credentials_hint}"
            return _by_code(exc.smtp_code, reason)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            answers = exc.recipients.items()
            details = "; ".join(f"{rcpt} ({scrub(_server_text(*answer))})" for rcpt, answer in answers)
            reason = f"the mail server at {where} refused the recipients: {details}"
            # Greylisting answers 450/451 per recipient: only a pure-4xx refusal is worth retrying.
            if answers and all(_is_transient_code(code) for code, _ in exc.recipients.values()):
                return TransientSendError(reason)
            return PermanentSendError(reason)
        if isinstance(exc, smtplib.SMTPSenderRefused):
            text = scrub(_server_text(exc.smtp_code, exc.smtp_error))
            reason = f"the mail server at {where} refused the sender address {self.from_address} ({text})"
            return _by_code(exc.smtp_code, reason)
        if isinstance(exc, smtplib.SMTPResponseException):
            text = scrub(_server_text(exc.smtp_code, exc.smtp_error))
            what = {
                smtplib.SMTPDataError: "refused the message",
                smtplib.SMTPConnectError: "refused the connection",
                smtplib.SMTPHeloError: "refused the greeting",
            }.get(type(exc), "answered with an error")
            reason = f"the mail server at {where} {what} ({text})"
            if 500 <= exc.smtp_code < 600:
                return PermanentSendError(reason)
            return TransientSendError(reason)  # 4xx, or a garbled reply from a flaky connection
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientSendError(f"the mail server at {where} closed the connection unexpectedly")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentSendError(
                f"the mail server at {where} does not support what is needed ({exc}); check SMTP_SECURITY and SMTP_PORT"
            )
        if isinstance(exc, smtplib.SMTPException):
            return PermanentSendError(f"talking to the mail server at {where} failed: {scrub(str(exc))}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentSendError(
                f"the TLS certificate of {where} could not be verified ({exc.verify_message}); check SMTP_HOST"
            )
        if isinstance(exc, ssl.SSLError):
            return TransientSendError(
                f"the TLS handshake with {where} failed ({exc.reason or exc}); "
                "if this persists, check that SMTP_SECURITY matches SMTP_PORT (ssl: 465, starttls: 587)"
            )
        if isinstance(exc, ConnectionRefusedError):
            return TransientSendError(f"nothing accepted the connection at {where} (connection refused)")
        if isinstance(exc, TimeoutError):
            return TransientSendError(f"the mail server at {where} did not answer within {self.timeout:g}s")
        if isinstance(exc, socket.gaierror):
            return TransientSendError(f"could not look up the mail server {self.host!r} ({exc.strerror})")
        if isinstance(exc, OSError):
            return TransientSendError(f"could not talk to the mail server at {where} ({exc.strerror or exc})")
        if isinstance(exc, UnicodeError):
            return PermanentSendError(
                f"the mail server login needs plain ASCII, but the username or password is not: {self.credentials_hint}"
            )
        return PermanentSendError(f"sending through {where} failed unexpectedly ({type(exc).__name__})")

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text


def _safe_name(message_id: str) -> str:
    """A file name that is the same for every retry of one email and cannot escape the directory."""
    core = message_id.strip().removeprefix("<").removesuffix(">")
    safe = re.sub(r"[^A-Za-z0-9._@-]", "_", core).lstrip(".")[:120]
    if safe != core or not safe:
        safe = f"{safe}-{hashlib.sha256(message_id.encode()).hexdigest()[:16]}"
    return safe


class OutboxMailer:
    """Writes each email as an .eml file instead of sending it: for development, and so nothing is
    silently lost when no mail server is configured."""

    def __init__(self, directory: Path | str, from_address: str = DEFAULT_FROM_ADDRESS) -> None:
        self.directory = Path(directory)
        self.from_address = from_address

    def __repr__(self) -> str:
        return f"OutboxMailer(directory={str(self.directory)!r}, from_address={self.from_address!r})"

    @property
    def description(self) -> str:
        return f"outbox {self.directory}"

    def path_for(self, message_id: str) -> Path:
        return self.directory / f"{_safe_name(message_id)}.eml"

    def was_delivered(self, message_id: str) -> bool | None:
        return self.path_for(message_id).exists()

    def send(self, email: OutgoingEmail) -> str:
        data = build_message(email, self.from_address).as_bytes()
        path = self.path_for(email.message_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".eml.tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp_name, path)  # readers see the old file or the new one, never half
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TransientSendError(f"could not write {path} ({exc.strerror or exc})") from exc
        return str(path)


def sender_address(settings: Settings) -> Address:
    """MAIL_FROM, else an SMTP login that is an address, else the Google account, else a local default.

    The workflow takes its Message-ID domain from the same value (`.domain`), so the two never disagree.
    """
    if settings.mail_from:
        return parse_sender(settings.mail_from)
    if settings.smtp_username and "@" in settings.smtp_username:  # "apikey"-style logins are no address
        return parse_sender(settings.smtp_username)
    return parse_sender(settings.google_email_address or DEFAULT_FROM_ADDRESS)


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
        )
    return OutboxMailer(settings.effective_outbox_dir, from_address)
