"""The embedded engine: a Temporal dev server and an iWF server, started only if not already running.

Used by `make run`, the tests and the benchmarks alike. In production none of
this runs: IWF_SERVER_URL points at an existing iWF server backed by a
Temporal cluster and EMBEDDED_ENGINE=false.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from devstack import iwf, temporal
from devstack.processes import ManagedProcess
from settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)


@dataclass
class LocalStack:
    settings: Settings
    started: dict[str, ManagedProcess] = field(default_factory=dict)

    def start(self) -> None:
        """Start what is missing; if any part fails, stop what this call started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        state_dir = self.settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        if temporal.is_serving(self.settings.temporal_host_port):
            log.info("temporal: already serving on %s", self.settings.temporal_host_port)
        else:
            self._launch(temporal.dev_server(state_dir, self.settings.temporal_host_port), timeout=90)
        if iwf.is_healthy(self.settings.iwf_server_url):
            log.info("iwf: already serving on %s", self.settings.iwf_server_url)
        else:
            binary = self.settings.iwf_server_bin or iwf.install(REPO_ROOT / ".local" / "bin")
            process = iwf.server(
                binary,
                state_dir,
                self.settings.iwf_server_url,
                self.settings.temporal_host_port,
                self.settings.temporal_namespace,
            )
            self._launch(process, timeout=60)

    def _launch(self, process: ManagedProcess, timeout: float) -> None:
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
