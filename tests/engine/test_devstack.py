"""The embedded engine's ownership of its processes, with the real Temporal dev server and iWF server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from devstack.processes import PidFile
from devstack.stack import LocalStack
from devstack.temporal import register_search_attributes
from settings import REPO_ROOT, Settings
from tests.harness import Engine, free_port

pytestmark = pytest.mark.engine


def _settings(state: Path) -> Settings:
    binary = os.environ.get("IWF_SERVER_BIN")
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=state,
        iwf_server_url=f"http://127.0.0.1:{free_port()}",
        temporal_host_port=f"127.0.0.1:{free_port()}",
        iwf_server_bin=Path(binary) if binary else None,
    )


def _pids(state: Path) -> dict[str, int]:
    found = {}
    for name in ("temporal", "iwf"):
        process = PidFile.of(state, name).process()
        assert process is not None, f"no live pid file for {name}"
        found[name] = process.pid
    return found


def test_servers_left_by_a_crashed_run_are_adopted_and_then_stopped(engine: Engine, tmp_path: Path) -> None:
    """`engine` only makes this skip where the engine cannot run; this test starts stacks of its own."""
    settings = _settings(tmp_path)
    crashed = LocalStack(settings)
    crashed.start()
    left = _pids(tmp_path)
    # The run that started them dies without stopping anything: its object is simply forgotten.
    del crashed

    again = LocalStack(settings)
    again.start()
    assert {name: process.pid for name, process in again.started.items()} == left, "adopted, not restarted"
    again.stop()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in left.values())
    assert list((tmp_path / "pids").glob("*.pid")) == []


def test_a_namespace_of_its_own_is_made_by_the_embedded_engine(engine: Engine, tmp_path: Path) -> None:
    """TEMPORAL_NAMESPACE is a setting of the embedded engine too: the dev server used to make only
    "default", and registering the search attributes in any other stopped `make run` with an error."""
    settings = _settings(tmp_path).model_copy(update={"temporal_namespace": "email-agent-own"})
    stack = LocalStack(settings)
    try:
        stack.start()
        assert register_search_attributes(settings.temporal_host_port, "email-agent-own") == [], "all there"
    finally:
        stack.stop()


def test_make_stop_stops_exactly_the_owned_pids(engine: Engine, tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    stack.start()
    left = _pids(tmp_path)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "devstack", "stop"],
            cwd=REPO_ROOT,
            env={**os.environ, "STATE_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "temporal" in result.stdout and "iwf" in result.stdout, result.stdout
        for pid in left.values():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert bystander.poll() is None, "a process without a pid file is never touched"
        again = subprocess.run(
            [sys.executable, "-m", "devstack", "stop"],
            cwd=REPO_ROOT,
            env={**os.environ, "STATE_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "nothing to stop" in again.stdout
    finally:
        bystander.kill()
        stack.stop()
