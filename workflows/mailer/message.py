"""The exact message that goes on the wire, built with the email package and refusing anything that
could change its meaning (header injection, ambiguous addresses, subjects that read back differently)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from email import message_from_string
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Any

from pydantic import BaseModel, Field

from workflows.mailer.errors import InvalidEmailError

__all__ = ["MESSAGE_POLICY", "OutgoingEmail", "build_message", "parse_sender"]

# 7bit keeps the wire format valid for servers without 8BITMIME (smtplib never declares it), so
# non-ASCII bodies go out as quoted-printable or base64 instead of raw UTF-8; otherwise this is
# exactly `email.policy.SMTP` (CRLF line endings, RFC 2047 for non-ASCII headers).
MESSAGE_POLICY = email_policy.SMTP.clone(cte_type="7bit")

# Everything `str.splitlines()` treats as a line end; the email package refuses these in headers,
# and CR/LF in particular would let a value start a header of its own.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# RFC 5322 msg-id with dot-atom-text on both sides (what we generate); no spaces, no folding.
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+>", re.ASCII)


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


DISPLAY_NAME_LIMIT = 100


def on_behalf_of(name_format: str, name: str) -> str:
    """The From display name for `name` ("Alice (via email-agent)"), the name shortened rather than the
    format cut: a long name must not lose the "(via ...)" that says the assistant sent it."""
    room = max(1, DISPLAY_NAME_LIMIT - len(name_format.format(name="")))
    if len(name) > room:
        name = name[: room - 1].rstrip() + "…"
    return name_format.format(name=name)


def _check_display_name(name: str) -> str:
    """One line of visible text: the header code quotes and RFC 2047-encodes it as needed."""
    if any(char in _LINE_BREAKS or unicodedata.category(char) in ("Cc", "Cs") for char in name):
        raise InvalidEmailError("the sender's display name contains a line break or a control character")
    return " ".join(name.split())[:DISPLAY_NAME_LIMIT]


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
