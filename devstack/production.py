"""The production shape on one machine: PostgreSQL, the Temporal server, N iWF servers and N app replicas,
with HAProxy giving the iWF servers, the workers and the API one address each. All on loopback.

    python -m devstack.production up        # `make prod-up`; `make stop` stops it (pid files)
    python -m devstack.production status

Every email's worker URL is the load balancer's, never a replica's, so any replica serves any email and
the loss of one costs nothing but capacity. Where each part listens is a `Plan` (devstack/plan.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devstack import haproxy, iwf, postgres, temporal_server, temporal_setup
from devstack.plan import Plan
from devstack.processes import ManagedProcess, PidFile, StackError
from devstack.secrets import PRINTABLE, configured_or_local
from settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class ProductionStack:
    """Starts the parts in dependency order, owns them through pid files, and can kill any one of them."""

    settings: Settings
    plan: Plan
    app_env: dict[str, str] | None = None  # the replicas' environment (default: ours), before their own ports
    started: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def iwf_names(self) -> list[str]:
        return [f"iwf-{i + 1}" for i in range(len(self.plan.iwf_ports))]

    @property
    def app_names(self) -> list[str]:
        return [f"app-{i + 1}" for i in range(len(self.plan.app_ports))]

    @property
    def postgres_password(self) -> str:
        return configured_or_local(self.settings.postgres_password, self.plan.state_dir, "postgres-password")

    @property
    def api_token(self) -> str:
        return configured_or_local(self.settings.api_token, self.plan.state_dir, "api-token", PRINTABLE)

    def start(self) -> None:
        """Bring up whatever is not running; on failure, stop what this call started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        plan, settings = self.plan, self.settings
        plan.state_dir.mkdir(parents=True, exist_ok=True)
        server_bin, sql_tool = self._temporal_binaries()
        iwf_bin = settings.iwf_server_bin or iwf.install(REPO_ROOT / ".local" / "bin")

        db = self.database()
        db.init()
        self._ensure(db.process(plan.state_dir), 60)
        created = temporal_server.create_schemas(sql_tool, db)
        if created:
            log.info("created databases %s", ", ".join(created))
        self._ensure(self._temporal(server_bin), 120)
        registered = temporal_setup.register(plan.temporal_host_port, plan.namespace)
        if registered:
            # The frontend caches namespaces and search attributes for up to a minute: restart it to read them.
            log.info("registered %s; restarting Temporal so it sees them at once", ", ".join(registered))
            self.restart("temporal-server")
        for name, port in zip(self.iwf_names, plan.iwf_ports, strict=True):
            self._ensure(self._iwf(iwf_bin, name, port), 60)
        self._ensure(self._haproxy(), 30)
        for name, ports in zip(self.app_names, plan.app_ports, strict=True):
            self._ensure(self._app(name, *ports), 60)
        if plan.app_ports:  # until HAProxy's own health checks have seen a replica come up
            wait_until(lambda: _http_ok(f"{plan.api_url}/healthz"), 30, "the API through HAProxy")

    def _temporal_binaries(self) -> tuple[Path, Path]:
        settings = self.settings
        if settings.temporal_server_bin and settings.temporal_sql_tool_bin:
            return settings.temporal_server_bin, settings.temporal_sql_tool_bin
        server_bin, sql_tool = temporal_server.install(REPO_ROOT / ".local" / "bin")
        return settings.temporal_server_bin or server_bin, settings.temporal_sql_tool_bin or sql_tool

    def database(self) -> postgres.Postgres:
        return postgres.Postgres(
            programs=postgres.bin_dir(self.settings.postgres_bin_dir),
            data_dir=self.plan.state_dir / "postgres",
            port=self.plan.postgres_port,
            password=self.postgres_password,
        )

    def _temporal(self, binary: Path) -> ManagedProcess:
        return temporal_server.server(
            binary,
            self.plan.state_dir,
            ports=self.plan.temporal_ports,
            shards=self.plan.shards,
            postgres_port=self.plan.postgres_port,
            password=self.postgres_password,
        )

    def _iwf(self, binary: Path, name: str, port: int) -> ManagedProcess:
        return iwf.server(
            binary,
            self.plan.state_dir,
            f"http://127.0.0.1:{port}",
            self.plan.temporal_host_port,
            self.plan.namespace,
            name=name,
            log_level=self.settings.iwf_log_level,
            worker_secret=configured_or_local(self.settings.worker_secret, self.plan.state_dir, "worker-secret"),
        )

    def _haproxy(self) -> ManagedProcess:
        plan = self.plan
        backends = [
            haproxy.Backend("iwf", plan.iwf_lb_port, "/info/healthcheck", [("127.0.0.1", p) for p in plan.iwf_ports])
        ]
        if plan.app_ports:
            publics = [public for public, _ in plan.app_ports]
            backends += [
                haproxy.Backend(
                    "worker", plan.worker_lb_port, "/healthz", [("127.0.0.1", w) for _, w in plan.app_ports], publics
                ),
                haproxy.Backend("api", plan.api_lb_port, "/healthz", [("127.0.0.1", p) for p in publics]),
            ]
        return haproxy.server(plan.state_dir, plan.lb_health_port, backends)

    def _app(self, name: str, public: int, worker: int) -> ManagedProcess:
        plan = self.plan
        state = plan.state_dir / name
        env = {
            # Shared by every replica unless the given environment says otherwise.
            "API_TOKEN": self.api_token,
            "OUTBOX_DIR": str(self.settings.effective_outbox_dir),
            # A blank variable counts as unset (as settings.py reads it): it must not undo the shared token.
            **{k: v for k, v in (self.app_env if self.app_env is not None else os.environ).items() if v},
            # What the iWF servers send on every state call (their config's defaultheaders).
            "WORKER_SECRET": configured_or_local(self.settings.worker_secret, plan.state_dir, "worker-secret"),
            # Each replica's own.
            "HOST": "127.0.0.1",
            "PORT": str(public),
            "WORKER_HOST": "127.0.0.1",
            "WORKER_PORT": str(worker),
            "WORKER_URL": plan.worker_url,  # the load balancer: any replica serves any email
            "IWF_SERVER_URL": plan.iwf_url,
            "TEMPORAL_HOST_PORT": plan.temporal_host_port,
            "EMBEDDED_ENGINE": "false",
            "STATE_DIR": str(state),
        }
        return ManagedProcess(
            name=name,
            argv=[sys.executable, "-m", "bot"],
            log_path=plan.state_dir / "logs" / f"{name}.log",
            is_healthy=lambda: _http_ok(f"http://127.0.0.1:{public}/healthz"),
            pid_file=PidFile.of(plan.state_dir, name),
            cwd=REPO_ROOT,
            env=env,
        )

    def _ensure(self, process: ManagedProcess, timeout: float) -> None:
        """Adopt our own process left running by an earlier `up`, otherwise start it."""
        if process.adopt() and process.is_healthy():
            log.info("%s: running (pid %s)", process.name, process.pid)
        else:
            if process.pid is not None:
                process.stop()
            log.info("%s: starting (log: %s)", process.name, process.log_path)
            process.start(timeout)
        self.started[process.name] = process

    # --- what tests and the chaos run do to it ----------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL one part (its whole process group), as a crash or an OOM kill would."""
        self.started[name].kill()

    def revive(self, name: str) -> None:
        self.started[name].start(120)

    def restart(self, name: str, *, kill: bool = False) -> None:
        process = self.started[name]
        if kill:
            process.kill()
        else:
            process.stop()
        process.start(120)

    def remove(self, name: str) -> None:
        """Kill a replica for good: it is not started again, and not stopped at the end."""
        self.started.pop(name).kill()

    def stop(self) -> None:
        """Clients before their servers."""
        for name in self._stop_order():
            self.started.pop(name).stop()

    def _stop_order(self) -> Iterator[str]:
        order = ["app", "haproxy", "iwf", "temporal", "postgres"]
        yield from sorted(self.started, key=lambda name: order.index(name.split("-")[0]))


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m devstack.production", description=__doc__)
    parser.add_argument("command", choices=["up", "status"])
    args = parser.parse_args(argv)
    settings = Settings()
    plan = Plan.from_settings(settings)
    stack = ProductionStack(settings, plan)
    names = ["postgres", "temporal-server", *stack.iwf_names, "haproxy", *stack.app_names]
    if args.command == "status":
        for name in names:
            process = PidFile.of(plan.state_dir, name).process()
            print(f"{name}: {'running, pid ' + str(process.pid) if process else 'not running'}")
        return 0
    started = time.monotonic()
    try:
        stack.start()
    except StackError as error:
        log.error("the production profile could not start: %s", error)
        return 1
    print(
        f"up in {time.monotonic() - started:.1f} s: API {plan.api_url} (token: API_TOKEN or "
        f"{plan.state_dir / 'api-token'}), iWF {plan.iwf_url}, workers {plan.worker_url}, "
        f"Temporal {plan.temporal_host_port}, PostgreSQL 127.0.0.1:{plan.postgres_port}; "
        f"logs in {plan.state_dir / 'logs'}; `make stop` stops it all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
