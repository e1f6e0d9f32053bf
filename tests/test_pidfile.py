"""Pid files name our processes by pid *and* start time, so a recycled pid is never stopped by mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devstack.processes import PidFile, stop_owned


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = PidFile.of(tmp_path, "iwf")
        pid_file.path.parent.mkdir(parents=True)
        # A pid file naming the stranger's pid but another start time: what a reboot or pid reuse leaves.
        pid_file.path.write_text(f'{{"pid": {stranger.pid}, "create_time": 1.0}}')
        assert pid_file.process() is None
        pid_file.write(stranger.pid)
        process = pid_file.process()
        assert process is not None and process.pid == stranger.pid
    finally:
        stranger.kill()
        stranger.wait()


def test_make_stop_stops_clients_before_their_servers(tmp_path: Path) -> None:
    """The production profile's parts: app replicas, the load balancer, iWF servers, Temporal, PostgreSQL."""
    names = ["postgres", "iwf-2", "app-1", "temporal-server", "haproxy", "iwf-1", "app-2"]
    sleepers = {name: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for name in names}
    try:
        for name, process in sleepers.items():
            PidFile.of(tmp_path, name).write(process.pid)
        stopped = [entry.split(" ")[0] for entry in stop_owned(tmp_path, timeout=5)]
        assert stopped == ["app-1", "app-2", "haproxy", "iwf-1", "iwf-2", "temporal-server", "postgres"]
        assert all(process.wait(5) is not None for process in sleepers.values())
    finally:
        for process in sleepers.values():
            process.kill()
            process.wait()
