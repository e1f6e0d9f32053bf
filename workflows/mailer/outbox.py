"""The local outbox: each email as an .eml file, for development and for installs without a mail server."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from workflows.mailer.errors import TransientSendError
from workflows.mailer.message import OutgoingEmail, build_message
from workflows.mailer.smtp import DEFAULT_FROM_ADDRESS

__all__ = ["OutboxMailer"]


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

    def was_delivered(self, message_id: str, settle: bool = True) -> bool | None:
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
