"""The Temporal server itself (not the dev server): built with `go install`, on PostgreSQL.

The config is ours, written as a Temporal config template (`# enable-template`): the database password,
the database host and the address the services announce come from the environment when the server
starts, so the same file serves the launcher and a Kubernetes ConfigMap, and no secret is written to disk.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import temporal
from devstack.goinstall import go_install
from devstack.postgres import SUPERUSER, Postgres
from devstack.processes import ManagedProcess, PidFile, StackError

MODULE = "go.temporal.io/server"
VERSION = "v1.32.1"  # v1.32.2 wants Go >= 1.26.10
SERVER_PACKAGE = f"{MODULE}/cmd/server"
SQL_TOOL_PACKAGE = f"{MODULE}/cmd/tools/sql"

# The schemas ship inside the SQL tool (embedded); these are their names there.
DATABASES = {"temporal": "postgresql/v12/temporal", "temporal_visibility": "postgresql/v12/visibility"}

# Read by the config template when the server starts.
ENV_PASSWORD = "TEMPORAL_POSTGRES_PASSWORD"  # noqa: S105 - the name of a variable
ENV_DB_HOST = "TEMPORAL_POSTGRES_HOST"
ENV_DB_PORT = "TEMPORAL_POSTGRES_PORT"
ENV_BROADCAST = "TEMPORAL_BROADCAST_ADDRESS"
ENV_BIND = "TEMPORAL_BIND_IP"


def install(local_bin: Path) -> tuple[Path, Path]:
    """The server and its SQL tool (about 4-5 min cold on 2 cores, seconds with a warm Go cache)."""
    server = go_install(SERVER_PACKAGE, VERSION, local_bin, "temporal-server")
    sql_tool = go_install(SQL_TOOL_PACKAGE, VERSION, local_bin, "temporal-sql-tool")
    return server, sql_tool


@dataclass(frozen=True)
class Ports:
    """Each of the four services has a gRPC and a membership port; the frontend also serves HTTP."""

    frontend: int
    frontend_membership: int
    frontend_http: int
    history: int
    history_membership: int
    matching: int
    matching_membership: int
    worker: int
    worker_membership: int

    @classmethod
    def from_list(cls, ports: list[int]) -> Ports:
        return cls(*ports)


PORT_COUNT = len(Ports.__dataclass_fields__)


def _template(name: str, default: str) -> str:
    """A placeholder the server replaces with an environment variable when it reads the file."""
    return f"{{{{ env {json.dumps(name)} | default {json.dumps(default)} | toJson }}}}"


def config_text(*, ports: Ports, shards: int, dynamic_config_path: str, log_level: str = "warn") -> str:
    """The server config: JSON (valid YAML) whose string values for secrets and addresses are templates."""

    def store(database: str, max_conns: int) -> dict[str, object]:
        return {
            "sql": {
                "pluginName": "postgres12",
                "databaseName": database,
                "connectAddr": "@DB_ADDRESS@",
                "connectProtocol": "tcp",
                "user": SUPERUSER,
                "password": "@PASSWORD@",
                "maxConns": max_conns,
                "maxIdleConns": max_conns,
                "maxConnLifetime": "1h",
            }
        }

    def service(grpc: int, membership: int, http: int | None = None) -> dict[str, object]:
        rpc: dict[str, object] = {"grpcPort": grpc, "membershipPort": membership, "bindOnIP": "@BIND@"}
        if http:
            rpc["httpPort"] = http
        return {"rpc": rpc}

    config = {
        "log": {"stdout": True, "level": log_level},
        "persistence": {
            "defaultStore": "default",
            "visibilityStore": "visibility",
            "numHistoryShards": shards,
            "datastores": {"default": store("temporal", 20), "visibility": store("temporal_visibility", 5)},
        },
        "global": {"membership": {"maxJoinDuration": "30s", "broadcastAddress": "@BROADCAST@"}},
        "services": {
            "frontend": service(ports.frontend, ports.frontend_membership, ports.frontend_http),
            "history": service(ports.history, ports.history_membership),
            "matching": service(ports.matching, ports.matching_membership),
            "worker": service(ports.worker, ports.worker_membership),
        },
        "clusterMetadata": {
            "enableGlobalNamespace": False,
            "failoverVersionIncrement": 10,
            "masterClusterName": "active",
            "currentClusterName": "active",
            "clusterInformation": {
                "active": {"enabled": True, "initialFailoverVersion": 1, "rpcName": "frontend", "rpcAddress": "@RPC@"}
            },
        },
        "dcRedirectionPolicy": {"policy": "noop"},
        "dynamicConfigClient": {"filepath": dynamic_config_path, "pollInterval": "10s"},
    }
    text = json.dumps(config, indent=2)
    db_address = (
        f'{{{{ printf "%s:%s" (env "{ENV_DB_HOST}" | default "127.0.0.1") (env "{ENV_DB_PORT}" | default "5432") '
        "| toJson }}"
    )
    for placeholder, value in {
        '"@DB_ADDRESS@"': db_address,
        '"@PASSWORD@"': _template(ENV_PASSWORD, ""),
        '"@BIND@"': _template(ENV_BIND, "127.0.0.1"),
        '"@BROADCAST@"': _template(ENV_BROADCAST, "127.0.0.1"),
        '"@RPC@"': f'{{{{ printf "%s:{ports.frontend}" (env "{ENV_BROADCAST}" | default "127.0.0.1") | toJson }}}}',
    }.items():
        text = text.replace(placeholder, value)
    return "# enable-template (Temporal renders this file with its environment; written by devstack)\n" + text + "\n"


def dynamic_config_text() -> str:
    """The dev server's shared dynamic config (devstack.temporal: update enabled for iWF's locked RPCs), one
    source; its values are booleans."""
    assert all(value in ("true", "false") for value in temporal.DYNAMIC_CONFIG.values())
    values = {key: value == "true" for key, value in temporal.DYNAMIC_CONFIG.items()}
    return json.dumps({key: [{"value": value}] for key, value in values.items()}, indent=2) + "\n"


def create_schemas(sql_tool: Path, db: Postgres) -> list[str]:
    """Create Temporal's two databases if missing, then bring both schemas to the tool's latest version."""
    created = []
    for database, schema in DATABASES.items():
        base = [
            str(sql_tool),
            "--plugin",
            "postgres12",
            "--ep",
            "127.0.0.1",
            "--port",
            str(db.port),
            "--user",
            SUPERUSER,
            "--db",
            database,
        ]
        steps = [["update-schema", "--schema-name", schema]]
        if not db.database_exists(database):
            steps = [["create-database"], ["setup-schema", "--version", "0.0"], *steps]
            created.append(database)
        for step in steps:
            # The password through the tool's SQL_PASSWORD, not its argv: any local user can read a command line.
            result = subprocess.run(
                [*base, *step],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                env={**os.environ, "SQL_PASSWORD": db.password},
            )
            if result.returncode != 0:
                raise StackError(
                    f"temporal-sql-tool {' '.join(step)} on {database} failed:\n{result.stdout}\n{result.stderr}"
                )
    return created


def server(
    binary: Path,
    state_dir: Path,
    *,
    ports: Ports,
    shards: int,
    postgres_port: int,
    password: str,
    log_level: str = "warn",
) -> ManagedProcess:
    conf_dir = state_dir / "temporal"
    conf_dir.mkdir(parents=True, exist_ok=True)
    dynamic = conf_dir / "dynamic-config.yaml"
    dynamic.write_text(dynamic_config_text())
    config = conf_dir / "config.yaml"
    config.write_text(config_text(ports=ports, shards=shards, dynamic_config_path=str(dynamic), log_level=log_level))
    host_port = f"127.0.0.1:{ports.frontend}"
    return ManagedProcess(
        name="temporal-server",
        argv=[str(binary), "--config-file", str(config), "--allow-no-auth", "start"],
        log_path=state_dir / "logs" / "temporal-server.log",
        is_healthy=lambda: temporal.is_serving(host_port),
        pid_file=PidFile.of(state_dir, "temporal-server"),
        env={ENV_PASSWORD: password, ENV_DB_HOST: "127.0.0.1", ENV_DB_PORT: str(postgres_port)},
    )
