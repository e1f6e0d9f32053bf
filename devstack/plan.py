"""Where each part of the production profile listens: fixed ports for `make prod-up`, free ones for tests.

Every address is on loopback; the three load-balancer ports are the profile's public face.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path

from devstack import temporal_server
from settings import Settings


def _port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


@dataclass(frozen=True)
class Plan:
    """Where everything listens. The three load-balancer ports are the profile's public face."""

    state_dir: Path
    postgres_port: int
    temporal_ports: temporal_server.Ports
    iwf_ports: tuple[int, ...]
    app_ports: tuple[tuple[int, int], ...]  # (public, worker) of each app replica
    lb_health_port: int
    iwf_lb_port: int
    worker_lb_port: int
    api_lb_port: int
    namespace: str = "default"
    shards: int = 4

    @classmethod
    def from_settings(cls, settings: Settings) -> Plan:
        """Fixed ports: the public ones from the usual settings, the private ones counted from PROD_PORT_BASE."""
        base = settings.prod_port_base
        temporal_ports = [_port_of(settings.temporal_host_port)] + [base + 40 + i for i in range(1, 9)]
        return cls(
            state_dir=settings.state_dir,
            postgres_port=base,
            temporal_ports=temporal_server.Ports.from_list(temporal_ports),
            iwf_ports=tuple(base + 10 + i for i in range(settings.prod_iwf_replicas)),
            app_ports=tuple((base + 20 + i, base + 30 + i) for i in range(settings.prod_app_replicas)),
            lb_health_port=base + 1,
            iwf_lb_port=_port_of(settings.iwf_server_url),
            worker_lb_port=settings.worker_port,
            api_lb_port=settings.port,
            namespace=settings.temporal_namespace,
            shards=settings.prod_history_shards,
        )

    @classmethod
    def on_free_ports(cls, state_dir: Path, *, iwf_replicas: int, app_replicas: int, shards: int = 4) -> Plan:
        ports = iter(_free_ports(4 + temporal_server.PORT_COUNT + iwf_replicas + 2 * app_replicas + 3))
        return cls(
            state_dir=state_dir,
            postgres_port=next(ports),
            temporal_ports=temporal_server.Ports.from_list([next(ports) for _ in range(temporal_server.PORT_COUNT)]),
            iwf_ports=tuple(next(ports) for _ in range(iwf_replicas)),
            app_ports=tuple((next(ports), next(ports)) for _ in range(app_replicas)),
            lb_health_port=next(ports),
            iwf_lb_port=next(ports),
            worker_lb_port=next(ports),
            api_lb_port=next(ports),
            shards=shards,
        )

    @property
    def temporal_host_port(self) -> str:
        return f"127.0.0.1:{self.temporal_ports.frontend}"

    @property
    def iwf_url(self) -> str:
        return f"http://127.0.0.1:{self.iwf_lb_port}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_lb_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_lb_port}"


def _free_ports(count: int) -> list[int]:
    """Distinct free ports below 32768: Temporal stores membership ports as a PostgreSQL smallint, and
    the kernel's ephemeral range starts above it. Each is held open until all are chosen."""
    rng = random.Random()  # noqa: S311 - ports, not secrets
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(20000, 32000)))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()
