"""Delivery over SMTP, one connection per email, with every failure mapped to a retry decision."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, Literal

from workflows.mailer.errors import (
    AmbiguousSendError,
    PartlyDeliveredError,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from workflows.mailer.message import OutgoingEmail, build_message
from workflows.mailer.sent_folder import ImapSentFolder

__all__ = ["DEFAULT_FROM_ADDRESS", "DEFAULT_PORTS", "SMTP_DEADLINE_TIMEOUTS", "Security", "SmtpMailer"]

Security = Literal["ssl", "starttls", "none"]

DEFAULT_FROM_ADDRESS = "email-agent@localhost"
DEFAULT_PORTS: dict[str, int] = {"ssl": 465, "starttls": 587, "none": 25}
_MAX_SERVER_TEXT = 200
# smtplib's time-out bounds each socket operation, not a session: a set-up (connect, greeting, TLS) taking
# more than two time-outs is given up before anything is sent, and a session is cut two time-outs after its
# set-up, so whatever is handed over is handed over within four. The delivery step counts on that bound to
# know when an interrupted hand-over is over.
SMTP_DEADLINE_TIMEOUTS = 4


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
    cut = False  # the session passed its deadline and its socket was shut down

    def data(self, msg: Any) -> Any:
        self.in_data = True
        return super().data(msg)  # type: ignore[misc]


class _SMTP(_TracksData, smtplib.SMTP):
    pass


class _SMTPSSL(_TracksData, smtplib.SMTP_SSL):
    pass


def _cut(smtp: _SMTP | _SMTPSSL) -> None:
    """Ends a session past its deadline: a blocked read or write returns at once with an error."""
    smtp.cut = True
    sock = smtp.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
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
        sent_folder: ImapSentFolder | None = None,
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
        self.sent_folder = sent_folder

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
            cut = bool(session) and session[0].cut
            if in_data and not isinstance(exc, smtplib.SMTPResponseException | UnicodeError):
                if cut:
                    what = f"took the message but did not confirm it within {self.timeout * 2:g}s"
                    raise AmbiguousSendError(f"the mail server at {self._where} {what}") from exc
                raise AmbiguousSendError(
                    f"the connection to the mail server at {self._where} broke after the message was handed "
                    "over, before the server confirmed it"
                ) from exc
            if cut:
                raise TransientSendError(
                    f"the mail server at {self._where} did not finish within {self.timeout * 2:g}s"
                ) from exc
            error = self._classify(exc)
            if isinstance(exc, UnicodeError):
                raise error from None  # its args may contain the password
            raise error from exc
        return self._where

    def was_delivered(self, message_id: str, settle: bool = True) -> bool | None:
        """SMTP cannot be asked afterwards; the account's Sent folder can, when there is one to ask."""
        return self.sent_folder.contains(message_id, settle) if self.sent_folder else None

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
        started = time.monotonic()
        smtp = self._connect()
        session.append(smtp)
        if time.monotonic() - started > self.timeout * 2:
            # Each step of the set-up has its own time-out, and a server may drip its greeting: a set-up past
            # two time-outs is given up before anything is sent, so the session (cut two time-outs later)
            # stays within the bound the delivery step counts on.
            smtp.close()
            raise TransientSendError(
                f"the mail server at {self._where} took more than {self.timeout * 2:g}s to set up the session; "
                "nothing was sent"
            )
        watchdog = threading.Timer(self.timeout * 2, _cut, (smtp,))
        watchdog.daemon = True
        watchdog.start()
        delivered = False
        try:
            if self.username and self._password:
                smtp.login(self.username, self._password)
            refused = smtp.send_message(msg)
            delivered = True
            if refused:
                taken = [a[1] for a in getaddresses(msg.get_all("To", [])) if a[1] not in refused]
                details = "; ".join(f"{rcpt} ({_server_text(*answer)})" for rcpt, answer in refused.items())
                raise PartlyDeliveredError(f"the mail server at {self._where} refused {details}", taken)
        finally:
            watchdog.cancel()
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
