"""Other versions of the app, run beside this checkout in one benchmark: each a detached git worktree,
run with this checkout's interpreter and dependencies."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from settings import REPO_ROOT


@dataclass(frozen=True)
class Variant:
    name: str
    app_dir: Path


def checkout(rev: str, into: Path) -> Variant:
    """A detached worktree of `rev`, run with this checkout's interpreter and dependencies."""
    name = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    target = into / f"app-{name}"
    subprocess.run(["git", "worktree", "add", "--detach", str(target), name], cwd=REPO_ROOT, check=True)
    return Variant(name, target)


def remove(variant: Variant) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(variant.app_dir)], cwd=REPO_ROOT, check=False)
