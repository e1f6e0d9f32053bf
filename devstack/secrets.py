"""Secrets the local stack makes for itself when none is configured, kept in the state dir (mode 0600)."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from pydantic import SecretStr

# What this module writes (token_urlsafe: 43 characters), and what settings demand of a configured one.
WELL_FORMED = re.compile(r"[A-Za-z0-9._~-]{16,}")


def local_secret(state_dir: Path, name: str) -> str:
    """The secret kept in `state_dir/name`, made first if there is none or what is there is not one.

    Written whole or not at all (a temporary file renamed over it): a file left empty by a crash or a full
    disk must not become an empty secret, which would turn the worker's check of state calls into nothing.
    """
    path = state_dir / name
    if path.exists():
        kept = path.read_text().strip()
        if WELL_FORMED.fullmatch(kept):
            return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(32)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{name}-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(made)
            file.flush()
            os.fsync(file.fileno())
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return made


def configured_or_local(value: SecretStr | None, state_dir: Path, name: str) -> str:
    return value.get_secret_value() if value else local_secret(state_dir, name)
