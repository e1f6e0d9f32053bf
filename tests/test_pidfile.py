"""Pid files name our processes by pid *and* start time, so a recycled pid is never stopped by mistake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devstack.processes import ManagedProcess, PidFile, StackError, stop_owned


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


SLEEPER = "import time; time.sleep(60)"
WRAPPER = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]); time.sleep(60)"


def _started_wrapper(tmp_path: Path, name: str) -> tuple[ManagedProcess, psutil.Process]:
    """A server behind a wrapper, as iWF runs behind devstack/iwf-quiet: the wrapper leads the session."""
    server = ManagedProcess(
        name, [sys.executable, "-c", WRAPPER], tmp_path / f"{name}.log", lambda: True, PidFile.of(tmp_path, name)
    )
    server.start(timeout=5)
    assert server.pid is not None
    wrapper = psutil.Process(server.pid)
    deadline = time.monotonic() + 5
    while not wrapper.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    [child] = wrapper.children()
    return server, child


def test_a_stop_reaches_what_outlived_the_wrapper_it_started(tmp_path: Path) -> None:
    server, child = _started_wrapper(tmp_path, "iwf")
    os.kill(server.pid or 0, signal.SIGKILL)  # the wrapper dies alone; the server keeps its port
    server.stop(timeout=5)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_make_stop_reaches_what_outlived_a_wrapper_an_earlier_run_started(tmp_path: Path) -> None:
    server, child = _started_wrapper(tmp_path, "iwf")
    os.kill(server.pid or 0, signal.SIGKILL)
    assert server.popen is not None and server.popen.wait(5) is not None  # reaped: its pid names nothing now
    [stopped] = stop_owned(tmp_path, timeout=5)
    assert stopped.startswith("iwf (what outlived pid") and not PidFile.of(tmp_path, "iwf").path.exists()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_server_that_never_becomes_healthy_is_not_left_running(tmp_path: Path) -> None:
    never = ManagedProcess(
        "temporal", [sys.executable, "-c", WRAPPER], tmp_path / "t.log", lambda: False, PidFile.of(tmp_path, "temporal")
    )
    with pytest.raises(StackError, match="not healthy"):
        never.start(timeout=1)
    assert never.popen is not None and never.popen.poll() is not None
    assert not PidFile.of(tmp_path, "temporal").path.exists()
    assert stop_owned(tmp_path) == []
