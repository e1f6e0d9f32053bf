"""Pid files name our processes by pid *and* start time, so a recycled pid is never stopped by mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devstack.processes import PidFile


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
