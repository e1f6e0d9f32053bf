"""Processes die, servers refuse: the email still goes out once, or the user is told why not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.harness import Api, AppProcess, Engine, SmtpSink, free_port, unique, wait_for_mail

pytestmark = pytest.mark.engine


async def test_app_killed_while_scheduled_sends_once_after_restart(
    api: Api, app_process: AppProcess, smtp_sink: SmtpSink
) -> None:
    wid = unique("app-kill")
    await api.start(wid)
    await api.say(wid, "to: ivy@example.com; subject: Survivor; body: Still here; send in 3 seconds")
    await api.wait_for(wid, "scheduled")
    app_process.kill()
    await asyncio.sleep(4)  # the timer fires while no worker is up; iWF keeps retrying the state
    assert smtp_sink.to("ivy@example.com") == []
    app_process.start()
    view = await api.wait_for(wid, "sent", timeout=60)
    await wait_for_mail(smtp_sink, "ivy@example.com")
    await asyncio.sleep(2)
    mails = smtp_sink.to("ivy@example.com")
    assert len(mails) == 1 and mails[0].message["Message-ID"] == view["sent_message_id"]


async def test_engine_restarted_while_scheduled_sends_once(api: Api, engine: Engine, smtp_sink: SmtpSink) -> None:
    wid = unique("engine-kill")
    await api.start(wid)
    await api.say(wid, "to: jay@example.com; subject: Durable; body: Timers live in Temporal; send in 5 seconds")
    await api.wait_for(wid, "scheduled")
    # SIGKILL every engine process (iWF, Temporal, and PostgreSQL in the production profile); Temporal comes
    # back from its SQLite file or database, iWF from Temporal.
    engine.crash()
    engine.recover()
    await api.wait_for(wid, "sent", timeout=90)
    await wait_for_mail(smtp_sink, "jay@example.com")
    await asyncio.sleep(2)
    assert len(smtp_sink.to("jay@example.com")) == 1


async def test_transient_smtp_failures_retry_a_bounded_number_of_times(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("smtp-451")
    await api.start(wid)
    smtp_sink.reject_with = "451 4.3.0 try again later"
    try:
        await api.say(wid, "to: kim@example.com; subject: Retry; body: Please; send in 1 seconds")
        view = await api.wait_for(wid, "failed", timeout=60)
    finally:
        smtp_sink.reject_with = None
    assert view["send_attempts"] == 3, "SEND_MAX_ATTEMPTS=3 in the test app"
    assert "451" in view["last_error"]
    assert "after 3 attempts" in view["last_reply"]
    assert view["send_at"] is None
    # The user can try again: the email goes out once the server accepts.
    await api.say(wid, "send in 1 seconds")
    await api.wait_for(wid, "sent", timeout=30)
    assert len(smtp_sink.to("kim@example.com")) == 1


async def test_permanent_smtp_refusal_is_not_retried(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("smtp-554")
    await api.start(wid)
    smtp_sink.reject_with = "554 5.7.1 message rejected"
    try:
        await api.say(wid, "to: lee@example.com; subject: Nope; body: Rejected; send in 1 seconds")
        view = await api.wait_for(wid, "failed", timeout=30)
    finally:
        smtp_sink.reject_with = None
    assert view["send_attempts"] == 1
    assert "554" in view["last_error"]


class _RejectAll:
    def __call__(
        self, server: object, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        return AuthResult(success=False, handled=False)


class _Handler:
    received = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.received += 1
        return "250 OK"


@pytest.fixture
def auth_smtp() -> Iterator[tuple[int, _Handler]]:
    handler = _Handler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_RejectAll(),
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield port, handler
    controller.stop()


@pytest.mark.filterwarnings("ignore::UserWarning")
async def test_smtp_auth_refused_fails_with_the_reason(
    app_process: AppProcess, auth_smtp: tuple[int, _Handler], tmp_path: Path
) -> None:
    """A second app, configured like Gmail with a wrong app password, against a server that refuses it."""
    port, handler = auth_smtp
    env = {
        **app_process.env,
        "PORT": str(free_port()),
        "WORKER_PORT": str(free_port()),
        "STATE_DIR": str(tmp_path),
        "SMTP_PORT": str(port),
        "SMTP_USERNAME": "me@example.org",
        "SMTP_PASSWORD": "wrong-app-password-123",
    }
    other = AppProcess(env=env, log_path=tmp_path / "app.log", base_url=f"http://127.0.0.1:{env['PORT']}")
    other.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, other.base_url)
            wid = unique("smtp-535")
            await api.start(wid)
            await api.say(wid, "to: max@example.com; subject: Auth; body: Hi; send in 1 seconds")
            view = await api.wait_for(wid, "failed", timeout=30)
    finally:
        other.stop()
    assert view["send_attempts"] == 1, "an auth failure is not retried"
    assert "535" in view["last_error"]
    assert "wrong-app-password-123" not in view["last_error"] + view["last_reply"]
    assert "wrong-app-password-123" not in (tmp_path / "app.log").read_text()
    assert handler.received == 0
