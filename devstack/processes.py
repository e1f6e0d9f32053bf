"""Child processes of the embedded stack: started detached, logged to files, owned through pid files.

Each server we start gets its own session (so a stop reaches every child it spawned) and a pid file in
`STATE_DIR/pids/`. The pid file is what makes ownership survive a crash of the process that started
it: the next start adopts a server whose pid file still names it, a normal stop then stops it, and
`python -m devstack stop` (`make stop`) stops exactly the processes the files name, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A part of the local engine could not be installed, started or reached."""


@dataclass(frozen=True)
class PidFile:
    """`<state>/pids/<name>.pid`: the pid and its start time, so a recycled pid is never taken for ours."""

    path: Path

    @classmethod
    def of(cls, state_dir: Path, name: str) -> PidFile:
        return cls(state_dir / "pids" / f"{name}.pid")

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": pid, "create_time": psutil.Process(pid).create_time()}
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(record))
        temp.replace(self.path)

    def record(self) -> tuple[int, float] | None:
        """The pid and start time the file names, whether that process still lives or not."""
        try:
            record = json.loads(self.path.read_text())
            return int(record["pid"]), float(record["create_time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def process(self) -> psutil.Process | None:
        """The live process this file names, or None (no file, process gone, or pid reused by another)."""
        named = self.record()
        if named is None:
            return None
        try:
            process = psutil.Process(named[0])
            if abs(process.create_time() - named[1]) > 0.5:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except psutil.Error:
            return None

    def leftovers(self) -> list[psutil.Process]:
        """What is left of the session the file's process led, once that process is gone: iWF's wrapper
        (devstack/iwf-quiet) dying alone leaves the server and its log filter running, holding the port."""
        named = self.record()
        return [] if named is None else session_leftovers(*named)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def stop_process(process: psutil.Process, sig: signal.Signals, timeout: float) -> None:
    """Signal the process (its whole group if it leads one, as our servers do), wait, then SIGKILL the rest."""
    group = [process, *_session_members(process.pid, process.create_time())]
    with contextlib.suppress(psutil.Error):
        group += [child for child in process.children(recursive=True) if child not in group]
    _signal(process.pid, sig)
    _wait_then_kill(group, timeout, lambda: _signal(process.pid, signal.SIGKILL))


def session_leftovers(leader_pid: int, started: float) -> list[psutil.Process]:
    """The members of the session `leader_pid` started (we start every server in a session of its own) that
    outlived it. None while the leader lives, or if its pid now names another process (then the session
    is not ours)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        leader = psutil.Process(leader_pid)
        if leader.status() != psutil.STATUS_ZOMBIE:
            return []  # alive (stopped through it), or a recycled pid: not ours to touch
    return _session_members(leader_pid, started)


def _session_members(leader_pid: int, started: float) -> list[psutil.Process]:
    """Processes of the session `leader_pid` leads, other than it, started after it (a child reparented away
    from a dead leader keeps the session, so it is found here and nowhere else)."""
    found = []
    for candidate in psutil.process_iter(["create_time"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if (
                candidate.pid != leader_pid
                and os.getsid(candidate.pid) == leader_pid
                and candidate.info["create_time"] >= started - 0.5
            ):
                found.append(candidate)
    return found


def stop_leftovers(leftovers: list[psutil.Process], sig: signal.Signals, timeout: float) -> None:
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
    _wait_then_kill(leftovers, timeout)


def _wait_then_kill(
    processes: list[psutil.Process], timeout: float, kill_group: Callable[[], None] | None = None
) -> None:
    """Wait for signalled processes to end; SIGKILL those still there after `timeout` (their group first)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    if not alive:
        return
    if kill_group is not None:
        kill_group()
    for survivor in alive:
        with contextlib.suppress(psutil.Error):
            survivor.kill()
    psutil.wait_procs(alive, timeout=5)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


@dataclass
class ManagedProcess:
    """One long-running server process we own: started by us, or adopted from a pid file we wrote.

    Its output goes to a log file, never to our terminal, so a crash leaves evidence behind.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    is_healthy: Callable[[], bool]
    pid_file: PidFile
    cwd: Path | None = None
    env: dict[str, str] | None = None
    user: str | None = None  # run as this user (PostgreSQL refuses to run as root)
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    adopted: psutil.Process | None = field(default=None, init=False)
    session: tuple[int, float] | None = field(default=None, init=False)  # its leader's pid and start time

    @property
    def pid(self) -> int | None:
        if self.popen is not None:
            return self.popen.pid
        return self.adopted.pid if self.adopted is not None else None

    def start(self, timeout: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env={**os.environ, **(self.env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
            )
        finally:
            log.close()
        self.adopted = None
        self.pid_file.write(self.popen.pid)
        self.session = self.pid_file.record()
        try:
            self.wait_healthy(timeout)
        except StackError:
            self.stop()  # never healthy: not left running behind the error (nobody would own it)
            raise

    def adopt(self) -> bool:
        """Take over a server an earlier run started and did not stop (it crashed). True if there was one."""
        process = self.pid_file.process()
        if process is None:
            self.pid_file.remove()
            return False
        self.popen, self.adopted, self.session = None, process, self.pid_file.record()
        return True

    def _exited(self) -> int | None:
        if self.popen is not None:
            return self.popen.poll()
        if self.adopted is not None and not self.adopted.is_running():
            return -1
        return None

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self._exited()
            if code is not None:
                self.pid_file.remove()
                raise StackError(f"{self.name} exited with code {code}; last log lines:\n{self.tail()}")
            if self.is_healthy():
                return
            time.sleep(0.2)
        raise StackError(f"{self.name} not healthy after {timeout:.0f}s; last log lines:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: used by restart tests and chaos runs."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process()
        if process is not None:
            stop_process(process, sig, timeout)
        elif self.session is not None:
            stop_leftovers(session_leftovers(*self.session), sig, timeout)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)  # reap it: no zombie left behind
        self.pid_file.remove()

    def _process(self) -> psutil.Process | None:
        pid = self.pid
        if pid is None or self._exited() is not None:
            return None
        try:
            return self.adopted or psutil.Process(pid)
        except psutil.Error:
            return None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_owned(state_dir: Path, timeout: float = 15.0) -> list[str]:
    """Stop every process a pid file in `state_dir` names, clients before their servers: the app (and its
    replicas `app-N`), the load balancer, iWF (`iwf-N`), Temporal, PostgreSQL."""
    stopped = []
    order = ["app", "haproxy", "iwf", "temporal", "postgres"]

    def rank(path: Path) -> tuple[int, str]:
        family = path.stem.split("-")[0]
        return (order.index(family) if family in order else len(order), path.stem)

    files = sorted((state_dir / "pids").glob("*.pid"), key=rank)
    for path in files:
        pid_file = PidFile(path)
        process = pid_file.process()
        if process is not None:
            stop_process(process, signal.SIGTERM, timeout)
            stopped.append(f"{path.stem} (pid {process.pid})")
        elif leftovers := pid_file.leftovers():
            stop_leftovers(leftovers, signal.SIGTERM, timeout)
            stopped.append(f"{path.stem} (what outlived pid {pid_file.record()[0]}: {len(leftovers)} processes)")  # type: ignore[index]
        pid_file.remove()
    return stopped
