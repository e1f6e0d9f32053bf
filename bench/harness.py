"""One stack for a benchmark or a chaos run, all on loopback with aiosmtpd, the fake model and the fake Slack:
`embedded` (its own Temporal dev server and iWF server on free ports, the app as its own process) or
`production` (PostgreSQL, the Temporal server, iWF servers and app replicas behind HAProxy)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from devstack.plan import Plan
from devstack.production import ProductionStack
from devstack.stack import LocalStack
from settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.fakes.socket_mode import FakeSocketMode
from tests.harness import SLACK_APP_TOKEN, WORKER_SECRET, AppProcess, SmtpSink, app_env, free_port


@dataclass
class Embedded:
    state: Path
    stack: LocalStack
    iwf_url: str
    temporal_host_port: str
    sink: SmtpSink
    fake_ai: FakeOpenAI
    fake_slack: FakeSlack
    app: AppProcess


@asynccontextmanager
async def embedded(
    state: Path,
    extra_env: dict[str, str] | None = None,
    socket_mode: bool = False,
    app_dir: Path | None = None,
    iwf_env: dict[str, str] | None = None,
    iwf_binary: Path | None = None,
) -> AsyncIterator[Embedded]:
    """`socket_mode`: the fake Slack also serves Socket Mode and the app connects to it with an app-level
    token, beside its HTTP endpoint (both modes in one app). `app_dir`: run the app from another checkout
    (benchmarks compare versions). `iwf_env`, `iwf_binary`: the iWF server's extra environment, another
    build of it (benchmarks of its memory)."""
    iwf_url, temporal_hp = f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    binary = iwf_binary or os.environ.get("IWF_SERVER_BIN")
    stack = LocalStack(
        Settings(
            _env_file=None,
            state_dir=state / "engine",
            iwf_server_url=iwf_url,
            temporal_host_port=temporal_hp,
            iwf_server_bin=Path(binary) if binary else None,
            worker_secret=WORKER_SECRET,
        ),
        iwf_env=iwf_env or {},
    )
    stack.start()
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    fake_ai = FakeOpenAI()
    fake_slack = FakeSlack(socket_mode=FakeSocketMode(app_token=SLACK_APP_TOKEN) if socket_mode else None)
    await fake_ai.start()
    await fake_slack.start()
    (state / "app").mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = app_env(port, iwf_url, temporal_hp, state / "app", fake_ai.base_url, sink.port, fake_slack.api_url)
    env |= {"SLACK_APP_TOKEN": SLACK_APP_TOKEN} if socket_mode else {}
    app = AppProcess(env=env | (extra_env or {}), log_path=state / "app.log", base_url=f"http://127.0.0.1:{port}")
    if app_dir is not None:
        app.cwd = app_dir
    try:
        app.start()
        yield Embedded(state, stack, iwf_url, temporal_hp, sink, fake_ai, fake_slack, app)
    finally:
        app.stop()
        await fake_slack.stop()
        await fake_ai.stop()
        controller.stop()
        stack.stop()


@dataclass
class Production:
    """The production profile with its app replicas; clients use the load balancer's API address."""

    state: Path
    stack: ProductionStack
    sink: SmtpSink
    fake_ai: FakeOpenAI
    fake_slack: FakeSlack

    @property
    def base_url(self) -> str:
        return self.stack.plan.api_url


def production_state_in(state: Path) -> Path:
    """`state`, made enterable by PostgreSQL's own user when we are root (tempfile's dirs are 0700)."""
    state.chmod(0o711)
    return state


@asynccontextmanager
async def production(
    state: Path, *, iwf_replicas: int = 2, app_replicas: int = 2, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Production]:
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    fake_ai, fake_slack = FakeOpenAI(), FakeSlack()
    await fake_ai.start()
    await fake_slack.start()
    plan = Plan.on_free_ports(state / "engine", iwf_replicas=iwf_replicas, app_replicas=app_replicas)
    # The replicas' settings as the tests give them; the stack sets each one's ports and addresses.
    env = app_env(0, plan.iwf_url, plan.temporal_host_port, state, fake_ai.base_url, sink.port, fake_slack.api_url)
    stack = ProductionStack(Settings(_env_file=None, state_dir=state / "engine"), plan, env | (extra_env or {}))
    try:
        await asyncio.to_thread(stack.start)
        yield Production(state, stack, sink, fake_ai, fake_slack)
    finally:
        await asyncio.to_thread(stack.stop)
        await fake_slack.stop()
        await fake_ai.stop()
        controller.stop()


def write_results(path: Path, output: dict[str, Any], quick: bool = False) -> Path:
    """The results file, or for a smoke run (`--quick`) a copy in the temp dir: its numbers never replace
    the committed ones."""
    out = Path(tempfile.gettempdir()) / path.name if quick else path
    out.write_text(json.dumps(output, indent=2) + "\n")
    print(f"written to {out}")
    return out
