"""A real IMAP server on loopback (pymap's in-memory backend, as its own process) playing the mail account's
Sent folder: the SMTP sink files what it accepts here, as Gmail does, and the app asks it by Message-ID."""

from __future__ import annotations

import imaplib
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import free_port

GMAIL_SENT = "[Gmail]/Sent Mail"  # the name Gmail gives it (in English), with the characters that need quoting


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ImapServer:
    """`pymap dict` with one account and one Sent folder; `file` appends a message to it."""

    username: str = "assistant@example.org"
    password: str = "imap-test-password-7c1e"
    folder: str = GMAIL_SENT
    port: int = field(default_factory=free_port)
    tls: tuple[Path, Path] | None = None  # (certificate chain, key): STARTTLS offered with them
    process: subprocess.Popen[bytes] | None = None

    def start(self, log_path: Path) -> None:
        pymap = Path(sys.executable).parent / "pymap"
        command = [str(pymap), "--host", "127.0.0.1", "--port", str(self.port)]
        if self.tls is not None:
            command += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        command += ["dict"]
        command += ["--demo-user", self.username, "--demo-password", self.password]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pymap did not start; see {log_path}") from None
                time.sleep(0.1)
        with self._session() as imap:
            imap.create(_quoted(self.folder))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def _session(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(self.username, self.password)
        return imap

    def file(self, message: bytes) -> None:
        """File a copy in the Sent folder, as the mail provider does when it accepts a message."""
        with self._session() as imap:
            status, answer = imap.append(_quoted(self.folder), None, None, message)
            if status != "OK":
                raise RuntimeError(f"APPEND refused: {answer!r}")

    def message_ids(self) -> list[str]:
        """The Message-IDs in the Sent folder, in the order they were filed."""
        with self._session() as imap:
            _, count = imap.select(_quoted(self.folder), readonly=True)
            if count[0] in (b"0", None):
                return []
            _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            ids = []
            for item in data:
                if isinstance(item, tuple):
                    header = item[1].decode("ascii", "replace").strip()
                    ids.append(header.partition(":")[2].strip())
            return ids
