"""The Slack edge in Socket Mode, end to end: the app as its own process with an app-level token and no
signing secret, its official slack_sdk Socket Mode client connected over a real websocket on loopback to
the fake Socket Mode server (tests/fakes/socket_mode.py), the fake Web API, the real engine (reached
through a TCP proxy the tests can cut or hold), the fake model, and mail through aiosmtpd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from bot.slack.command import USAGE
from bot.slack.threads import thread_email_id
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM, FakeSlack
from tests.fakes.socket_mode import FakeSocketMode
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import (
    SLACK_APP_TOKEN,
    SLACK_BOT_TOKEN,
    Api,
    AppProcess,
    Engine,
    SmtpSink,
    SocketSlack,
    app_env,
    free_port,
    socket_mode_env,
    wait_for_mail,
)

pytestmark = pytest.mark.engine

LISTENER_FAILED = "Failed to run listener function"  # slack_bolt's default listener error handler


def user_id(prefix: str) -> str:
    return f"U{prefix.upper()}{time.time_ns() % 10**9}"


def has_buttons(content: dict[str, Any]) -> bool:
    return any(block.get("type") == "actions" for block in content.get("blocks", []))


def user_turns(view: dict[str, Any]) -> list[str]:
    return [t["text"] for t in view["conversation"] if t["role"] == "user"]


@pytest.fixture(scope="module")
async def socket_fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(socket_mode=FakeSocketMode(app_token=SLACK_APP_TOKEN))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def engine_proxy(engine: Engine) -> AsyncIterator[TcpProxy]:
    host, _, port = engine.iwf_url.removeprefix("http://").partition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture(scope="module")
def socket_app(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    socket_fake: FakeSlack,
    engine_proxy: TcpProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppProcess]:
    """The app in Socket Mode only: SLACK_APP_TOKEN and SLACK_BOT_TOKEN, no SLACK_SIGNING_SECRET."""
    state = tmp_path_factory.mktemp("socket-app")
    port = free_port()
    env = app_env(
        port,
        engine_proxy.url,
        engine.temporal_host_port,
        state,
        fake_openai.base_url,
        smtp_sink.port,
        slack_api_url=socket_fake.api_url,
    )
    app = AppProcess(env=socket_mode_env(env), log_path=state / "app.log", base_url=f"http://127.0.0.1:{port}")
    app.start()
    yield app
    app.stop()


@pytest.fixture
async def slack(socket_app: AppProcess, socket_fake: FakeSlack, engine_proxy: TcpProxy) -> AsyncIterator[SocketSlack]:
    driver = SocketSlack(socket_fake)
    await driver.socket.wait_connected()
    with socket_fake.nothing_refused():
        yield driver
    engine_proxy.flow()
    assert driver.socket.errors == [], "every frame the app sent was a valid ack"


@pytest.fixture
async def api(socket_app: AppProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Api(session, socket_app.base_url)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.01)


async def wait_for_log(app: AppProcess, text: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.log_path.read_text(errors="replace").count(text) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the app never logged {text!r} {count} times: {app.log_tail()}")


async def test_the_app_connects_with_the_app_token_and_has_no_http_route(
    slack: SocketSlack, api: Api, socket_app: AppProcess
) -> None:
    opens = slack.fake.of("apps.connections.open")
    assert opens, "the URL came from apps.connections.open"
    assert {c.token for c in opens} == {SLACK_APP_TOKEN}, "opened with the xapp- token, never the bot token"
    user = user_id("tok")
    channel, ts = await slack.dm(user, "note: which token?")
    await slack.card(channel, ts)  # the Web API at work: users.info, then the card
    others = [c for c in slack.fake.calls if c.method != "apps.connections.open"]
    assert {"users.info", "chat.postMessage"} <= {c.method for c in others}, [c.method for c in others]
    assert all(c.token == SLACK_BOT_TOKEN for c in others), "the Web API is called with the bot token"
    async with api.session.post(f"{socket_app.base_url}/slack/events", data=b"{}") as response:
        assert response.status == 404, "no signing secret: no HTTP endpoint for Slack"


async def test_dm_card_and_the_cancel_button(slack: SocketSlack, api: Api, smtp_sink: SmtpSink) -> None:
    user = user_id("sock")
    to = f"{user.lower()}@example.com"
    slack.fake.timezones[user] = "Europe/Berlin"
    channel, ts = await slack.dm(user, f"to: {to}; subject: Maybe; body: Perhaps; send in 5 seconds")
    dm = slack.last
    assert dm is not None and dm.ack.payload is None, "an event is acked with its envelope_id alone"
    card = await slack.card(channel, ts)
    scheduled = await slack.wait_card(channel, card, "Scheduled")
    assert has_buttons(scheduled)
    email_id = thread_email_id(TEAM, channel, ts)
    click = await slack.click("cancel_email", email_id, user, channel, card, ts)
    assert click.ack.payload is None
    canceled = await slack.wait_card(channel, card, "Canceled")
    assert not has_buttons(canceled)
    assert (await api.describe(email_id))["status"] == "canceled"
    await asyncio.sleep(5)  # past the time it would have gone out
    assert smtp_sink.to(to) == []


async def test_a_dm_is_scheduled_and_sent_once(slack: SocketSlack, api: Api, smtp_sink: SmtpSink) -> None:
    user = user_id("once")
    to = f"{user.lower()}@example.com"
    channel, ts = await slack.dm(user, f"to: {to}; subject: Once; body: Only once; send in 2 seconds")
    card = await slack.card(channel, ts)
    [mail] = await wait_for_mail(smtp_sink, to)
    assert mail.message["Subject"] == "Once" and SmtpSink.text_of(mail) == "Only once"
    sent = await slack.wait_card(channel, card, "Sent")
    assert not has_buttons(sent)
    assert (await api.describe(thread_email_id(TEAM, channel, ts)))["status"] == "sent"
    await asyncio.sleep(1)
    assert len(smtp_sink.to(to)) == 1


async def test_a_redelivered_and_a_duplicated_envelope_make_one_request(
    slack: SocketSlack, api: Api, fake_openai: FakeOpenAI
) -> None:
    user = user_id("redeliver")
    marker = f"hello over the socket from {user}"
    # The app's first ack is lost on the way: Slack delivers the envelope again, retry_attempt 1.
    channel, ts = await slack.dm(user, marker, lose_acks=1)
    envelope = slack.last
    assert envelope is not None and not envelope.acked
    await slack.socket.redeliver(envelope)
    await slack.socket.wait_ack(envelope)
    await slack.socket.duplicate(envelope)  # and once more, the very same frame
    await slack.socket.wait_acks(envelope, 3)
    assert [(d.retry_attempt, d.retry_reason) for d in envelope.deliveries] == [(0, ""), (1, "timeout"), (1, "timeout")]
    card = await slack.card(channel, ts)  # one card, though the event came three times
    await slack.wait_card(channel, card, "Waiting for you")
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
    assert user_turns(view) == [marker]
    assert len(fake_openai.requests_for(marker)) == 1, "the model saw the request once"


async def test_schedule_email_command_acks_with_the_ephemeral_answer(
    slack: SocketSlack, api: Api, smtp_sink: SmtpSink
) -> None:
    user = user_id("cmd")
    to = f"{user.lower()}@example.com"
    envelope = await slack.command(f"to: {to}; subject: Hello; body: Hi Cal; send in 2 seconds", user)
    answer = envelope.ack.payload
    assert answer is not None and answer["response_type"] == "ephemeral" and "On it" in answer["text"]
    [mail] = await wait_for_mail(smtp_sink, to)
    assert mail.message["Subject"] == "Hello"
    [root] = slack.fake.of("chat.postMessage", channel=user)
    assert to in root.args["text"]
    view = await api.describe(root.args["metadata"]["event_payload"]["email_id"])
    assert view["status"] == "sent" and view["owner"] == user
    usage = await slack.command("  ", user_id("cmdempty"))
    assert usage.ack.payload == {"response_type": "ephemeral", "text": USAGE}, "usage help, in the ack"


async def test_the_app_reconnects_on_a_disconnect_message_and_on_a_dropped_connection(
    slack: SocketSlack, api: Api
) -> None:
    socket = slack.socket
    for lose_it in (socket.disconnect, socket.drop):
        before, opened = await socket.wait_connected(), len(slack.fake.of("apps.connections.open"))
        await lose_it()
        after = await socket.wait_connected(before.number + 1)
        await socket.wait_closed(before)
        assert len(slack.fake.of("apps.connections.open")) == opened + 1, "a new URL for the new connection"
        assert after.number > before.number
        user = user_id("reconnect")
        channel, ts = await slack.dm(user, f"hello after {lose_it.__name__}")
        assert slack.last is not None and slack.last.deliveries[-1].connection == after.number
        await slack.card(channel, ts)
        view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
        assert user_turns(view) == [f"hello after {lose_it.__name__}"]


async def test_the_app_killed_mid_conversation_gets_the_follow_up_on_reconnection(
    slack: SocketSlack, api: Api, socket_app: AppProcess, smtp_sink: SmtpSink, fake_openai: FakeOpenAI
) -> None:
    user = user_id("crash")
    to = f"{user.lower()}@example.com"
    first = f"to: {to}; subject: Draft; body: Before the crash"
    channel, ts = await slack.dm(user, first)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Waiting for you")
    connection = await slack.socket.wait_connected()
    socket_app.kill()  # SIGKILL: no cleanup, the socket just goes away
    await slack.socket.wait_closed(connection)
    assert connection.close_code != 1000, "not a clean close"
    follow_up = "subject: After the crash; send in 2 seconds"
    await slack.dm(user, follow_up, thread_ts=ts, wait_ack=False)  # Slack has nowhere to deliver it
    envelope = slack.last
    assert envelope is not None and envelope.deliveries == []
    await asyncio.to_thread(socket_app.start)
    await slack.socket.wait_ack(envelope)  # delivered on the new connection, and acked
    assert envelope.deliveries[0].connection > connection.number
    [mail] = await wait_for_mail(smtp_sink, to)
    assert mail.message["Subject"] == "After the crash" and SmtpSink.text_of(mail) == "Before the crash"
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "sent")
    assert user_turns(view) == [first, follow_up], "nothing lost, nothing doubled"
    await asyncio.sleep(1)
    assert len(smtp_sink.to(to)) == 1
    assert len(fake_openai.requests_for(follow_up)) == 1


async def test_the_app_killed_while_handing_over_an_envelope_gets_it_again_and_takes_it_once(
    slack: SocketSlack,
    api: Api,
    socket_app: AppProcess,
    engine_proxy: TcpProxy,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
) -> None:
    """The engine call for the follow-up is in flight (held at the proxy) when the app is killed: no ack,
    so Slack delivers the envelope again to the restarted app. The dead app's call and the new one then
    reach the engine together; the workflow's de-duplication by message makes them one request."""
    user = user_id("inflight")
    to = f"{user.lower()}@example.com"
    first = f"to: {to}; subject: Draft; body: Words"
    channel, ts = await slack.dm(user, first)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Waiting for you")
    connection = await slack.socket.wait_connected()
    engine_proxy.hold()
    follow_up = "subject: Held in flight; send in 2 seconds"
    await slack.dm(user, follow_up, thread_ts=ts, wait_ack=False)
    envelope = slack.last
    assert envelope is not None
    await wait_until(lambda: engine_proxy.held_chunks >= 1, "the app's engine call is on its way")
    socket_app.kill()
    await slack.socket.wait_closed(connection)
    assert envelope.acks == [], "the app died before its hand-over finished: no ack"
    await asyncio.to_thread(socket_app.start)
    await wait_until(lambda: len(envelope.deliveries) == 2, "delivered again on the new connection")
    await wait_until(lambda: engine_proxy.held_chunks >= 2, "the restarted app's engine call is on its way too")
    engine_proxy.flow()  # both calls reach the engine now, the dead app's first
    await slack.socket.wait_ack(envelope)
    assert [(d.retry_attempt, d.retry_reason) for d in envelope.deliveries] == [(0, ""), (1, "timeout")]
    await wait_until(lambda: engine_proxy.answers_to_nobody >= 1, "the engine answered the dead app's call too")
    [mail] = await wait_for_mail(smtp_sink, to)
    assert mail.message["Subject"] == "Held in flight"
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "sent")
    assert user_turns(view) == [first, follow_up]
    await asyncio.sleep(1)
    assert len(smtp_sink.to(to)) == 1
    assert len(fake_openai.requests_for(follow_up)) == 1


async def test_an_envelope_not_handed_to_the_engine_is_not_acked_and_comes_again(
    slack: SocketSlack, api: Api, socket_app: AppProcess, engine_proxy: TcpProxy
) -> None:
    """Socket Mode keeps HTTP mode's rule: a handler that fails (here the engine is out of reach) leaves
    the envelope unacked, and Slack's retry is taken once the engine is back."""
    failures = socket_app.log_path.read_text(errors="replace").count(LISTENER_FAILED)
    engine_proxy.down()
    user = user_id("down")
    channel, ts = await slack.dm(user, "hello while the engine is down", wait_ack=False)
    envelope = slack.last
    assert envelope is not None
    await wait_for_log(socket_app, LISTENER_FAILED, failures + 1)
    # Envelopes are handled concurrently; one acked after the failure was logged shows the socket still
    # carries acks, so the failed one's silence is a decision, not a lost frame.
    own = {"type": "message", "channel_type": "im", "channel": channel, "user": "UBOT", "bot_id": "B0BOT"}
    await slack.event(own | {"text": "card", "ts": slack.fake.new_ts()})
    assert envelope.acks == [], "not handed over: not acked"
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, ts)}")
    assert status == 503, "the API says the engine is out of reach"
    engine_proxy.flow()
    await slack.socket.redeliver(envelope)
    await slack.socket.wait_ack(envelope)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Waiting for you")
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
    assert user_turns(view) == ["hello while the engine is down"]


async def test_a_graceful_stop_closes_the_connection(slack: SocketSlack, socket_app: AppProcess) -> None:
    connection = await slack.socket.wait_connected()
    socket_app.stop()  # SIGTERM
    await slack.socket.wait_closed(connection)
    assert connection.close_code == 1000, "the app closed its websocket properly"
    await asyncio.to_thread(socket_app.start)
    after = await slack.socket.wait_connected(connection.number + 1)
    user = user_id("restart")
    channel, ts = await slack.dm(user, "hello after a restart")
    assert slack.last is not None and slack.last.deliveries[-1].connection == after.number
    await slack.card(channel, ts)
    log = socket_app.log_path.read_text(errors="replace")
    assert SLACK_APP_TOKEN not in log and SLACK_BOT_TOKEN not in log, "no token in the app's log"
    assert "Slack: Socket Mode connected" in log
