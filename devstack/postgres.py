"""PostgreSQL from Debian's packages, as Temporal's database: a cluster of our own in the state dir.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to Debian's `postgres` user
and the server runs as that user. It listens on 127.0.0.1 only, with a password (scram) for TCP.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import ManagedProcess, PidFile, StackError

SUPERUSER = "temporal"  # the one role; Temporal's schema tool creates its databases with it


def bin_dir(configured: Path | None) -> Path:
    """The configured folder, else the newest Debian PostgreSQL (`/usr/lib/postgresql/<major>/bin`)."""
    if configured:
        return configured
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise StackError("PostgreSQL is not installed: apt-get install -y postgresql (or set POSTGRES_BIN_DIR)")
    return found[-1].parent


def run_as() -> str | None:
    """The user the server must run as: Debian's `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root needs the `postgres` system user (apt-get install postgresql)") from None
    return "postgres"


@dataclass(frozen=True)
class Postgres:
    programs: Path
    data_dir: Path
    port: int
    password: str

    @property
    def user(self) -> str | None:
        return run_as()

    def _check_reachable(self) -> None:
        """The server's user must be able to walk down to its data dir; a 0700 parent (pytest's) stops it."""
        if self.user is None:
            return
        uid = pwd.getpwnam(self.user).pw_uid
        for parent in reversed(self.data_dir.parents):
            if not parent.exists():
                return
            info = parent.stat()
            if info.st_uid != uid and not info.st_mode & 0o001:
                raise StackError(
                    f"PostgreSQL runs as {self.user!r}, who cannot enter {parent} (mode {oct(info.st_mode & 0o777)}); "
                    "put the state dir somewhere it can reach"
                )

    def init(self) -> None:
        """Create the cluster once (initdb); a cluster that exists is kept as it is."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._check_reachable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        pwfile = self.data_dir.parent / ".pgpass-init"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        try:
            if self.user:
                shutil.chown(self.data_dir, self.user, self.user)
                shutil.chown(pwfile, self.user, self.user)
            argv = [
                str(self.programs / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-host",
                "scram-sha-256",
                "--auth-local",
                "peer" if self.user else "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
            ]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, user=self.user)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def is_ready(self) -> bool:
        result = subprocess.run(
            [str(self.programs / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            timeout=5,
            check=False,
        )
        return result.returncode == 0

    def process(self, state_dir: Path) -> ManagedProcess:
        return ManagedProcess(
            name="postgres",
            argv=[
                str(self.programs / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),  # the Unix socket stays inside the private data dir
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",  # Temporal's four services each keep their own pools
                "-c",
                "logging_collector=off",
                "-c",
                "log_min_messages=warning",
            ],
            log_path=state_dir / "logs" / "postgres.log",
            is_healthy=self.is_ready,
            pid_file=PidFile.of(state_dir, "postgres"),
            user=self.user,
        )

    def database_exists(self, name: str) -> bool:
        result = subprocess.run(
            [
                str(self.programs / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{name}'",  # noqa: S608 - our own constant names
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"psql could not list databases: {result.stderr.strip()}")
        return result.stdout.strip() == "1"
