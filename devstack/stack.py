"""The embedded engine: a Temporal dev server and an iWF server, started only if not already running.

Used by `make run`, the tests and the benchmarks alike. In production none of
this runs: IWF_SERVER_URL points at an existing iWF server backed by a
Temporal cluster and EMBEDDED_ENGINE=false.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack import iwf, temporal
from devstack.processes import ManagedProcess
from devstack.secrets import configured_or_local
from settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)


@dataclass
class LocalStack:
    settings: Settings
    started: dict[str, ManagedProcess] = field(default_factory=dict)
    iwf_env: dict[str, str] = field(default_factory=dict)  # added to the iWF server's environment

    def start(self) -> None:
        """Start what is missing; if any part fails, stop what this call started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._ensure(
            temporal.dev_server(settings.state_dir, settings.temporal_host_port, settings.temporal_namespace),
            settings.temporal_host_port,
            lambda: temporal.is_serving(settings.temporal_host_port),
            timeout=90,
        )
        # A server (or its database file) may predate a search attribute the workflows now use.
        created = temporal.register_search_attributes(settings.temporal_host_port, settings.temporal_namespace)
        if created:
            log.info("temporal: registered the search attributes %s", ", ".join(created))
        self._ensure(
            iwf.server(
                self._iwf_binary(install=False),
                settings.state_dir,
                settings.iwf_server_url,
                settings.temporal_host_port,
                settings.temporal_namespace,
                log_level=settings.iwf_log_level,
                worker_secret=configured_or_local(settings.worker_secret, settings.state_dir, "worker-secret"),
                env=self.iwf_env,
            ),
            settings.iwf_server_url,
            lambda: iwf.is_healthy(settings.iwf_server_url),
            timeout=60,
        )

    def _iwf_binary(self, *, install: bool) -> Path:
        if self.settings.iwf_server_bin:
            return self.settings.iwf_server_bin
        local_bin = REPO_ROOT / ".local" / "bin"
        return iwf.install(local_bin) if install else local_bin / "iwf-server"

    def _ensure(self, process: ManagedProcess, where: str, serving: Callable[[], bool], timeout: float) -> None:
        """Adopt our own server left by a crashed run, leave a stranger's alone, start what is missing."""
        ours = process.adopt()
        if serving():
            if ours:
                log.info("%s: adopted pid %s, left running by an earlier run", process.name, process.pid)
                self.started[process.name] = process
            else:
                log.info("%s: already serving on %s (not started here; left alone)", process.name, where)
            return
        if ours:
            log.info("%s: pid %s from an earlier run is not serving; restarting it", process.name, process.pid)
            process.stop()
        if process.name == "iwf":
            process.argv = iwf.command(self._iwf_binary(install=True), Path(process.argv[-2]))
        log.info("%s: starting (log: %s)", process.name, process.log_path)
        process.start(timeout)
        self.started[process.name] = process

    def restart(self, name: str, *, kill: bool = False) -> None:
        """Stop (or SIGKILL) one of our processes and start it again on the same state."""
        process = self.started[name]
        if kill:
            process.kill()
        else:
            process.stop()
        process.start(90)

    def stop(self) -> None:
        # iWF first: it is a client of Temporal.
        for name in ("iwf", "temporal"):
            if name in self.started:
                self.started.pop(name).stop()
