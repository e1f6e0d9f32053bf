"""The iWF server binary: installed with `go install`, configured by us, started as a child process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devstack.processes import ManagedProcess, PidFile, StackError
from settings import WORKER_SECRET_HEADER

IWF_MODULE = "github.com/indeedeng/iwf/cmd/server"
IWF_VERSION = "v1.19.3"
# Filters the server's output down to what an operator reads (see the script).
QUIET = Path(__file__).with_name("iwf-quiet")


def install(local_bin: Path) -> Path:
    """Return a runnable iwf-server, building it with the Go toolchain if it is not there yet.

    The binary `go install` produces is called `server`; we keep it as
    `iwf-server` in a git-ignored folder so nothing else on PATH is shadowed.
    """
    target = local_bin / "iwf-server"
    if target.exists():
        return target
    go = shutil.which("go")
    if not go:
        raise StackError("the Go toolchain is needed to install the iWF server (go install) and is not on PATH")
    local_bin.mkdir(parents=True, exist_ok=True)
    command = [go, "install", f"{IWF_MODULE}@{IWF_VERSION}"]
    result = subprocess.run(
        command,
        env={**os.environ, "GOBIN": str(local_bin)},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            f"could not install the iWF server: `GOBIN={local_bin} go {' '.join(command[1:])}` "
            f"(GOPROXY={os.environ.get('GOPROXY') or _go_env(go, 'GOPROXY')}) failed with:\n"
            f"{result.stderr.strip()}\n"
            "Remedies: a GOPROXY that serves github.com/indeedeng/iwf (a file:// proxy works, e.g. "
            "GOPROXY=file:///path/to/goproxy,https://proxy.golang.org GONOSUMDB=github.com/indeedeng/iwf), "
            "IWF_SERVER_BIN=/path/to/a/prebuilt/iwf-server, or IWF_SERVER_URL pointing at a running iWF server "
            "with EMBEDDED_ENGINE=false."
        )
    (local_bin / "server").rename(target)
    return target


def _go_env(go: str, name: str) -> str:
    result = subprocess.run([go, "env", name], capture_output=True, text=True, timeout=30, check=False)
    return result.stdout.strip() or "?"


# In a config that is not itself secret (a Kubernetes ConfigMap), the header's value is this placeholder and
# the iWF image's entrypoint (devstack/iwf-quiet) fills it in from the WORKER_SECRET environment variable.
WORKER_SECRET_PLACEHOLDER = "__WORKER_SECRET__"  # noqa: S105 - a placeholder, not a secret


def config_text(
    *,
    api_port: int,
    temporal_host_port: str,
    namespace: str,
    log_level: str = "warn",
    worker_secret: str | None = None,
) -> str:
    """A config of our own: the repo's default one expects S3 for external storage.

    JSON is valid YAML, so no YAML writer is needed. Also the Kubernetes ConfigMap (deploy/manifests.py).
    With `worker_secret`, every state call to the worker carries it in WORKER_SECRET_HEADER. The key is
    spelled `defaultheaders`: iWF reads its config with yaml.v3, which ignores the field's json tag
    (`defaultHeaders`) and matches the lowercased field name.
    """
    config: dict[str, Any] = {
        "log": {"stdout": True, "level": log_level, "levelKey": "level"},
        "api": {
            "port": api_port,
            "maxWaitSeconds": 10,
            "waitForStateCompletionMigration": {"signalWithStartOn": "old", "waitForOn": "old"},
            "queryWorkflowFailedRetryPolicy": {"initialIntervalSeconds": 1, "maximumAttempts": 5},
        },
        "interpreter": {"temporal": {"hostPort": temporal_host_port, "namespace": namespace}},
        "externalStorage": {"enabled": False},
    }
    if worker_secret:
        config["interpreter"]["interpreterActivityConfig"] = {"defaultheaders": {WORKER_SECRET_HEADER: worker_secret}}
    return json.dumps(config, indent=2) + "\n"


def write_config(
    path: Path,
    *,
    api_port: int,
    temporal_host_port: str,
    namespace: str,
    log_level: str = "warn",
    worker_secret: str | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)  # it may hold the worker secret
    path.write_text(
        config_text(
            api_port=api_port,
            temporal_host_port=temporal_host_port,
            namespace=namespace,
            log_level=log_level,
            worker_secret=worker_secret,
        )
    )
    return path


def command(binary: Path, config: Path) -> list[str]:
    return [str(QUIET), str(binary), "--config", str(config), "start"]


def is_healthy(server_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{server_url}/info/healthcheck", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def server(
    binary: Path,
    state_dir: Path,
    server_url: str,
    temporal_host_port: str,
    namespace: str,
    *,
    name: str = "iwf",
    log_level: str = "warn",
    worker_secret: str | None = None,
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    """`name` names its config, log and pid file: the production profile runs several (`iwf-1`, ...).
    `env`: added to the server's environment (benchmarks try Go runtime settings such as GOMEMLIMIT)."""
    port = int(server_url.rstrip("/").rsplit(":", 1)[1])
    config = write_config(
        state_dir / f"{name}-config.yaml",
        api_port=port,
        temporal_host_port=temporal_host_port,
        namespace=namespace,
        log_level=log_level,
        worker_secret=worker_secret,
    )
    return ManagedProcess(
        name=name,
        argv=command(binary, config),
        log_path=state_dir / "logs" / f"{name}.log",
        is_healthy=lambda: is_healthy(server_url),
        pid_file=PidFile.of(state_dir, name),
        env=env,
    )
