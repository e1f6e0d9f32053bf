"""Secrets the local stack makes for itself when none is configured, kept in the state dir (mode 0600)."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from pydantic import SecretStr

# What this module writes (token_urlsafe: 43 characters), and what settings demand of a configured worker
# secret; an API token may be any printable ASCII (settings.py), so one written by hand is kept too.
WELL_FORMED = re.compile(r"[A-Za-z0-9._~-]{16,}")
PRINTABLE = re.compile(r"[!-~]{16,}")


def local_secret(state_dir: Path, name: str, kept_if: re.Pattern[str] = WELL_FORMED) -> str:
    """The secret kept in `state_dir/name`, made first if there is none or what is there is not one.

    Written whole or not at all, and made once: a complete file is linked into place only if none is there
    (two processes making it at once agree on the one that won), and a file left empty by a crash or a full
    disk is replaced, never used (an empty worker secret would turn the worker's check of state calls off).
    """
    path = state_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            kept = path.read_text().strip()
        except FileNotFoundError:
            kept = ""
        if kept_if.fullmatch(kept):
            return kept
        if path.exists():
            path.unlink(missing_ok=True)  # empty or damaged: made again below
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{name}-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32))
                file.flush()
                os.fsync(file.fileno())
            os.link(scratch, path)  # fails if another process's file got there first: then that one is read
        except FileExistsError:
            pass
        finally:
            Path(scratch).unlink(missing_ok=True)
    raise RuntimeError(f"could not make a secret in {path}")


def configured_or_local(
    value: SecretStr | None, state_dir: Path, name: str, kept_if: re.Pattern[str] = WELL_FORMED
) -> str:
    return value.get_secret_value() if value else local_secret(state_dir, name, kept_if)
