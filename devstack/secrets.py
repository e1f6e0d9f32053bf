"""Secrets the local stack makes for itself when none is configured, kept in the state dir (mode 0600)."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import SecretStr


def local_secret(state_dir: Path, name: str) -> str:
    path = state_dir / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def configured_or_local(value: SecretStr | None, state_dir: Path, name: str) -> str:
    return value.get_secret_value() if value else local_secret(state_dir, name)
