"""Real parts on loopback: Temporal dev server + iWF server, the app as its own process, an SMTP sink
(aiosmtpd) and a fake OpenAI-compatible server. Nothing here is mocked in-process."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from devstack.plan import Plan
from devstack.processes import StackError
from devstack.production import ProductionStack
from devstack.stack import LocalStack
from settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.harness import WORKER_SECRET, Api, AppProcess, Engine, Slack, SmtpSink, app_env, free_port
from tests.imap_server import ImapServer

# ENGINE_PROFILE=production runs the engine tests on the production shape (devstack.production): PostgreSQL,
# the Temporal server, two iWF servers behind HAProxy. The default is the Temporal dev server.
ENGINE_PROFILE = os.environ.get("ENGINE_PROFILE", "dev")


def _engine_unavailable(error: StackError) -> None:
    if os.environ.get("REQUIRE_ENGINE") == "1":
        pytest.fail(f"the real engine is required (REQUIRE_ENGINE=1) but could not start: {error}")
    reason = " ".join(str(error).split())
    pytest.skip(f"real iWF engine unavailable on this machine: {reason[:400]}")


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine for the whole session, on free ports: the dev profile or, if asked, the production one."""
    if ENGINE_PROFILE == "production":
        yield from _production_engine()
        return
    if ENGINE_PROFILE != "dev":
        pytest.fail(f"ENGINE_PROFILE must be dev or production, not {ENGINE_PROFILE!r}")
    state = tmp_path_factory.mktemp("engine")
    iwf_url = f"http://127.0.0.1:{free_port()}"
    temporal_hp = f"127.0.0.1:{free_port()}"
    binary = os.environ.get("IWF_SERVER_BIN")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=state,
        iwf_server_url=iwf_url,
        temporal_host_port=temporal_hp,
        iwf_server_bin=Path(binary) if binary else None,
        worker_secret=WORKER_SECRET,
    )
    stack = LocalStack(settings)
    try:
        stack.start()
    except StackError as error:
        stack.stop()
        _engine_unavailable(error)
    yield Engine(stack, iwf_url, temporal_hp)
    stack.stop()


def _production_engine() -> Iterator[Engine]:
    """PostgreSQL, Temporal and two iWF servers behind HAProxy; the tests' app talks to the load balancer.

    The state dir is not pytest's (0700, which PostgreSQL's own user could not enter when we are root)."""
    state = Path(tempfile.mkdtemp(prefix="email-agent-prod-"))
    state.chmod(0o711)
    stack = ProductionStack(
        Settings(_env_file=None, state_dir=state, worker_secret=WORKER_SECRET),  # type: ignore[call-arg]
        Plan.on_free_ports(state, iwf_replicas=2, app_replicas=0),
    )
    try:
        stack.start()
    except StackError as error:
        stack.stop()
        _engine_unavailable(error)
    yield Engine(stack, stack.plan.iwf_url, stack.plan.temporal_host_port)
    stack.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture(scope="session")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapServer]:
    """The mail account's Sent folder, over real IMAP (pymap on loopback)."""
    server = ImapServer()
    server.start(tmp_path_factory.mktemp("imap") / "pymap.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
def app_process(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    fake_slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppProcess]:
    state = tmp_path_factory.mktemp("app")
    port = free_port()
    env = app_env(
        port,
        engine.iwf_url,
        engine.temporal_host_port,
        state,
        fake_openai.base_url,
        smtp_sink.port,
        slack_api_url=fake_slack.api_url,
    )
    app = AppProcess(env=env, log_path=state / "app.log", base_url=f"http://127.0.0.1:{port}")
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
async def api(app_process: AppProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Api(session, app_process.base_url)


@pytest.fixture
async def slack(app_process: AppProcess, fake_slack: FakeSlack) -> AsyncIterator[Slack]:
    with fake_slack.nothing_refused():
        async with aiohttp.ClientSession() as session:
            yield Slack(session, app_process, fake_slack)
