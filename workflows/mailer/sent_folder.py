"""Asking the account's Sent folder, over IMAP, whether a message with a given Message-ID was sent.

Only used when an SMTP hand-over ended without an answer (a disconnect after DATA, an execution killed
while the server held its reply): Gmail files every message it accepts over SMTP in the account's
Sent Mail, so finding the Message-ID there turns "delivery unknown" into "sent", and not finding it
after a short settle turns it into a definite failure that is worth sending again. Any trouble talking
to IMAP answers None ("cannot tell"), which leaves the email unconfirmed: never a guess.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Literal

__all__ = ["GMAIL_IMAP_HOST", "ImapSentFolder", "sent_folder_from_list"]

log = logging.getLogger(__name__)

GMAIL_IMAP_HOST = "imap.gmail.com"
NEWEST_TO_READ = 200  # messages whose Message-ID is read when a search finds nothing
DEFAULT_IMAP_PORTS: dict[str, int] = {"ssl": 993, "starttls": 143, "none": 143}
ImapSecurity = Literal["ssl", "starttls", "none"]

# One LIST answer line: (attributes) delimiter name, e.g. (\HasNoChildren \Sent) "/" "[Gmail]/Sent Mail"
_LIST_LINE = re.compile(rb'^\((?P<attributes>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
# A Message-ID as this project writes them: <token@domain>, nothing that needs quoting in a SEARCH.
_MESSAGE_ID = re.compile(r"^<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~@-]+>$")


def _unquote(name: bytes) -> bytes:
    if len(name) >= 2 and name.startswith(b'"') and name.endswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", name[1:-1])
    return name


def sent_folder_from_list(lines: Iterable[bytes | tuple[bytes, bytes] | None]) -> bytes | None:
    """The mailbox a LIST answer marks `\\Sent` (RFC 6154, as Gmail does), else one named "Sent"."""
    named_sent: bytes | None = None
    for line in lines:
        if isinstance(line, tuple):  # a name sent as a literal: ((attributes) "/" {n}, name)
            head, literal = line
            quoted = b'"' + literal.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            match = _LIST_LINE.match(re.sub(rb"\{\d+\+?\}$", b"", head) + quoted)
        else:
            match = _LIST_LINE.match(line) if line else None
        if match is None:
            continue
        attributes = match["attributes"].lower().split()
        name = _unquote(match["name"])
        if b"\\sent" in attributes:
            return name
        if name.lower() == b"sent":
            named_sent = name
    return named_sent


def mailbox_name(name: str) -> bytes:
    """A folder name as IMAP carries it: modified UTF-7 (RFC 3501, 5.1.3), so "Отправленные" (a Sent folder
    a Russian-language account shows) reaches the server in the form it lists. An ASCII name is taken as
    given: the name as the server lists it (already modified UTF-7, e.g. "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-")."""
    if name.isascii():
        return name.encode("ascii")
    out: list[bytes] = []
    pending: list[str] = []

    def shift_out() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
            out.append(b"&" + encoded + b"-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            shift_out()
            out.append(b"&-" if char == "&" else char.encode("ascii"))
        else:
            pending.append(char)
    shift_out()
    return b"".join(out)


def _quoted(mailbox: bytes) -> str:
    """A mailbox name as an IMAP quoted string (names are modified UTF-7: ASCII by construction)."""
    text = mailbox.decode("ascii")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSentFolder:
    """Searches the Sent folder by Message-ID; one short connection per question."""

    def __init__(
        self,
        host: str,
        port: int,
        security: ImapSecurity,
        username: str,
        password: str,
        folder: str | None = None,
        timeout: float = 15.0,
        settle_seconds: float = 5.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if security not in DEFAULT_IMAP_PORTS:
            raise ValueError(f"unknown IMAP security {security!r}; use ssl, starttls or none")
        self.host = host
        self.port = port
        self.security: ImapSecurity = security
        self.username = username
        self._password = password
        self.folder = folder
        self.timeout = timeout
        self.settle_seconds = settle_seconds
        self._sleep = sleep

    def __repr__(self) -> str:
        where = f"host={self.host!r}, port={self.port}, security={self.security!r}"
        return f"ImapSentFolder({where}, folder={self.folder!r})"

    @property
    def description(self) -> str:
        return f"the Sent folder at IMAP {self.host}:{self.port}"

    def contains(self, message_id: str, settle: bool = True) -> bool | None:
        """True if the message is there; False if it is not (with `settle`: still not, the settle time
        later); None if the folder cannot be asked. Never raises: any trouble is "cannot tell"."""
        if not _MESSAGE_ID.match(message_id):
            return None  # not one of ours: a SEARCH for it could not be trusted
        try:
            found = self._look(message_id)
            if found is False and settle and self.settle_seconds > 0:
                self._sleep(self.settle_seconds)
                found = self._look(message_id)
            return found
        except Exception as error:  # refused, dropped (abort), timed out, a host name idna refuses, ...
            # Never the error's text: a server may echo the credentials of a failed login.
            log.warning("checking %s failed (%s)", self.description, type(error).__name__)
            return None

    def _look(self, message_id: str) -> bool | None:
        imap = self._connect()
        try:
            imap.login(self.username, self._password)
            folder = mailbox_name(self.folder) if self.folder else self._discover(imap)
            if folder is None:
                log.warning("no Sent folder found at IMAP %s:%s; set IMAP_SENT_FOLDER", self.host, self.port)
                return None
            status, count = imap.select(_quoted(folder), readonly=True)
            if status != "OK":
                log.warning("IMAP %s:%s refused to open %r", self.host, self.port, folder)
                return None
            status, data = imap.search(None, "HEADER", "Message-ID", f'"{message_id}"')
            if status == "OK" and data and data[0] and data[0].split():
                return True
            # A search index may lag behind the folder (Gmail's does) or not cover headers: "not there" is
            # only said after reading the Message-IDs of the newest messages themselves.
            return self._among_newest(imap, int(count[0] or 0), message_id.encode("ascii"))
        finally:
            try:
                imap.logout()
            except Exception:
                imap.shutdown()

    @staticmethod
    def _among_newest(imap: imaplib.IMAP4, exists: int, message_id: bytes) -> bool | None:
        if exists <= 0:
            return False
        first = max(1, exists - NEWEST_TO_READ + 1)
        status, data = imap.fetch(f"{first}:{exists}", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if status != "OK":
            return None
        return any(isinstance(item, tuple) and message_id in item[1] for item in data)

    def _connect(self) -> imaplib.IMAP4:
        if self.security == "ssl":
            return imaplib.IMAP4_SSL(
                self.host, self.port, ssl_context=ssl.create_default_context(), timeout=self.timeout
            )
        imap = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            try:
                imap.starttls(ssl.create_default_context())  # never falls back to plain text
            except BaseException:
                imap.shutdown()
                raise
        return imap

    @staticmethod
    def _discover(imap: imaplib.IMAP4) -> bytes | None:
        status, lines = imap.list()
        return sent_folder_from_list(lines) if status == "OK" else None
