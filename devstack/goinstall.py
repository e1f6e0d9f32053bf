"""`go install` of a server program into a git-ignored folder, under a name of our choosing.

Go names a binary after its package directory (`server`, `sql`), which would collide; each one is built
into a scratch GOBIN and then renamed, so nothing else on PATH is shadowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.processes import StackError


def go_install(package: str, version: str, local_bin: Path, name: str, timeout: float = 1800) -> Path:
    """Return `local_bin/name`, building `package@version` first if it is not there yet."""
    target = local_bin / name
    if target.exists():
        return target
    go = shutil.which("go")
    if not go:
        raise StackError(f"the Go toolchain is needed to build {name} (go install {package}) and is not on PATH")
    local_bin.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=local_bin, prefix=".gobin-") as scratch:
        command = [go, "install", f"{package}@{version}"]
        result = subprocess.run(
            command,
            env={**os.environ, "GOBIN": scratch},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"could not build {name}: `go install {package}@{version}` "
                f"(GOPROXY={os.environ.get('GOPROXY', '(go env default)')}) failed with:\n{result.stderr.strip()}"
            )
        built = Path(scratch) / package.rstrip("/").rsplit("/", 1)[1]
        built.replace(target)
    return target
