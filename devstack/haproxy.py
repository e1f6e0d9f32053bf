"""HAProxy from Debian in front of the replicas: one address for iWF, one for the workers, one for the API.

A replica that refuses connections is skipped at once (`retries` with `redispatch` send the request to
another one), and health checks take a dead one out of rotation within about two seconds, so a
replica's death costs no request that had not reached it yet.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import ManagedProcess, PidFile, StackError


@dataclass(frozen=True)
class Backend:
    """One frontend port and the servers behind it, checked with an HTTP GET on `check_path`."""

    name: str
    port: int
    check_path: str
    servers: list[tuple[str, int]] = field(default_factory=list)  # (address, port)
    check_ports: list[int] | None = None  # when the health endpoint is on another port of the server


def config_text(health_port: int, backends: list[Backend]) -> str:
    lines = [
        "# Written by devstack.haproxy. In the foreground (-db) HAProxy reports servers going down and up",
        "# on stderr; no line per request.",
        "global",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    option dontlognull",
        "    timeout connect 2s",
        "    timeout client 10m",
        "    timeout server 10m",  # a state (a model call with its retries) may run for minutes
        "    timeout http-request 10s",
        "    retries 3",
        "    option redispatch 1",  # a retry after a refused connection goes to another server
        "    default-server inter 1s fall 2 rise 1",
        "",
        "frontend health",
        f"    bind 127.0.0.1:{health_port}",
        "    monitor-uri /healthz",
    ]
    for backend in backends:
        lines += [
            "",
            f"frontend {backend.name}",
            f"    bind 127.0.0.1:{backend.port}",
            f"    default_backend {backend.name}",
            "",
            f"backend {backend.name}",
            "    balance roundrobin",
            f"    option httpchk GET {backend.check_path}",
        ]
        for index, (address, port) in enumerate(backend.servers):
            check_port = f" port {backend.check_ports[index]}" if backend.check_ports else ""
            lines.append(f"    server {backend.name}-{index + 1} {address}:{port} check{check_port}")
    return "\n".join(lines) + "\n"


def binary() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)
    if not found:
        raise StackError("HAProxy is not installed: apt-get install -y haproxy")
    return found


def is_healthy(health_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def server(state_dir: Path, health_port: int, backends: list[Backend]) -> ManagedProcess:
    config = state_dir / "haproxy.cfg"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(config_text(health_port, backends))
    return ManagedProcess(
        name="haproxy",
        argv=[binary(), "-db", "-f", str(config)],  # -db: in the foreground, no daemon
        log_path=state_dir / "logs" / "haproxy.log",
        is_healthy=lambda: is_healthy(health_port),
        pid_file=PidFile.of(state_dir, "haproxy"),
    )
