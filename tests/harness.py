"""The pieces tests and benchmarks share: the app as its own process, an SMTP sink, an API client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.slack.card import EDIT_ACTION
from devstack.production import ProductionStack
from devstack.stack import LocalStack
from settings import REPO_ROOT
from tests.fakes.slack_server import (
    Call,
    FakeSlack,
    action_payload,
    assistant_root,
    assistant_thread_started,
    command_fields,
    event_body,
    home_action_payload,
    message_event,
    sign,
    view_submission_payload,
)
from tests.fakes.socket_mode import Envelope, FakeSocketMode

API_TOKEN = "test-token-4f1c9a"
SLACK_BOT_TOKEN = "xoxb-test-0000-bot-token"
SLACK_SIGNING_SECRET = "test-signing-secret-8e2d"
WORKER_SECRET = "test-worker-secret-5b7a"  # the engine fixtures put it in the iWF server's config
SLACK_APP_TOKEN = "xapp-1-A0APP-0000-test-app-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the engine ---------------------------------------------------------------


@dataclass
class Engine:
    """The engine the tests run on: the dev server profile (LocalStack) or the production one."""

    stack: LocalStack | ProductionStack
    iwf_url: str
    temporal_host_port: str

    def _parts(self) -> list[str]:
        """The engine's processes, clients first: iWF server(s), Temporal, then its database if any."""
        order = ["iwf", "temporal", "postgres"]
        parts = [name for name in self.stack.started if name.split("-")[0] in order]
        return sorted(parts, key=lambda name: order.index(name.split("-")[0]))

    def crash(self) -> None:
        """SIGKILL every engine process (PostgreSQL included in the production profile)."""
        for name in self._parts():
            self.stack.started[name].kill()

    def recover(self) -> None:
        for name in reversed(self._parts()):
            self.stack.started[name].start(120)


# --- SMTP sink -------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    at: float = field(default_factory=time.time)


@dataclass
class SmtpSink:
    """aiosmtpd on loopback. Faults on demand: `reject_with` answers DATA with an SMTP error; `drop_after_data`
    takes the message, then closes the connection without answering (the sender cannot know it arrived);
    `hold_replies` takes the message and keeps the answer back until the event is set; `hold_recipients`
    keeps back the answer to RCPT (before any message is sent) until its event is set, `recipient_arrived`
    telling when one is held.

    `fault`, if set, is asked about each message (its aiosmtpd envelope) before the switches above, from the
    sink's own thread, and may answer: an SMTP reply such as "451 4.3.0 try again" (the message is refused),
    "drop" (as drop_after_data), "lose" (the connection breaks before the message is taken), "hold SECONDS"
    (taken, answered that much later), or None (no fault).

    `sent_folder`, if set, is handed every message the sink takes, as it takes it (before any drop or
    hold): the account's Sent folder, which Gmail fills the same way."""

    port: int
    received: list[Received] = field(default_factory=list)
    reject_with: str | None = None
    drop_after_data: bool = False
    hold_replies: threading.Event | None = None
    data_arrived: threading.Event = field(default_factory=threading.Event)
    hold_recipients: threading.Event | None = None
    recipient_arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fault: Callable[[Any], str | None] | None = None
    refuse_recipients: dict[str, str] = field(default_factory=dict)  # address -> the RCPT reply, e.g. "550 ..."
    sent_folder: Callable[[bytes], None] | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse_recipients:
            return self.refuse_recipients[address]
        held = self.hold_recipients
        if held is not None:
            self.recipient_arrived.set()
            while not held.is_set():
                await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self.fault(envelope) if self.fault else None
        drop, hold = self.drop_after_data, 0.0
        if fault == "lose":
            server.transport.close()
            return "421 closing"  # never reaches the sender, and nothing was taken
        if fault == "drop":
            drop = True
        elif fault and fault.startswith("hold "):
            hold = float(fault.split()[1])
        elif fault:
            return fault
        if self.reject_with:
            return self.reject_with
        # SMTP carries CRLF; compare texts with the line endings Python uses.
        message = message_from_bytes(envelope.content.replace(b"\r\n", b"\n"), policy=policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        if self.sent_folder is not None:
            # Filed whatever becomes of this connection, as a provider files what it took: the sender dying
            # now (a kill mid-answer) cancels this handler, and must not take the copy back with it.
            await asyncio.shield(asyncio.to_thread(self.sent_folder, envelope.content))
        self.data_arrived.set()
        if drop:
            server.transport.close()
            return "421 closing"  # never reaches the sender: the connection is already gone
        if hold:
            await asyncio.sleep(hold)
        held = self.hold_replies
        while held is not None and not held.is_set():
            await asyncio.sleep(0.05)
        return "250 OK"

    @staticmethod
    def text_of(received: Received) -> str:
        """The body as the user wrote it: canonical CRLF line ends folded back to \\n."""
        content = received.message.get_content()
        return str(content).replace("\r\n", "\n").strip()

    def with_message_id(self, message_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.message["Message-ID"] == message_id]

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]


# --- fake OpenAI -------------------------------------------------------------------


# --- the app, as its own process ------------------------------------------------------


@dataclass
class AppProcess:
    env: dict[str, str]
    log_path: Path
    base_url: str
    popen: subprocess.Popen[bytes] | None = None
    cwd: Path = REPO_ROOT  # another checkout runs another version of the app (benchmarks compare two)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "bot"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"app exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", int(self.env["PORT"])), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"app did not listen: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, as in a crash or an OOM kill."""
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def variant_of(app: AppProcess, state: Path, **env: str) -> AppProcess:
    """A second app process like `app`, on its own ports and state, with some settings changed."""
    port = free_port()
    changed = {**app.env, "PORT": str(port), "WORKER_PORT": str(free_port()), "STATE_DIR": str(state), **env}
    return AppProcess(env=changed, log_path=state / "app.log", base_url=f"http://127.0.0.1:{port}")


class Api:
    """A thin client for the app's HTTP API, with the polling the tests need."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str):
        self.session = session
        self.base_url = base_url

    async def call(self, method: str, path: str, json: Any = None, token: str | None = API_TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.base_url + path, json=json, headers=headers) as response:
            return response.status, await response.json()

    async def start(self, email_id: str, timezone: str = "UTC") -> None:
        status, body = await self.call("POST", f"/api/emails/{email_id}", {"timezone": timezone})
        assert status in (200, 201), body

    async def say(self, email_id: str, text: str, message_id: str | None = None) -> dict[str, Any]:
        status, body = await self.call(
            "POST", f"/api/emails/{email_id}/messages", {"text": text, "message_id": message_id}
        )
        assert status == 202, body
        return dict(body)

    async def describe(self, email_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/emails/{email_id}")
        assert status == 200, body
        return dict(body)

    async def wait_for(self, email_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        """Poll describe until the status is one of `statuses` with nothing pending."""
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                view = await self.describe(email_id)
            except (AssertionError, aiohttp.ClientError):
                await asyncio.sleep(0.3)  # e.g. the app is restarting
                continue
            if view["status"] in statuses and not view["pending_requests"]:
                return view
            await asyncio.sleep(0.1)
        raise AssertionError(f"{email_id} never reached {statuses}; last view: {view}")


async def wait_for_mail(sink: SmtpSink, address: str, count: int = 1, timeout: float = 30) -> list[Received]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sink.to(address)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} email(s) to {address}, got {len(sink.to(address))}")


async def kill_while_the_server_holds_its_answer(
    api: Api, app: AppProcess, sink: SmtpSink, email_id: str, text: str
) -> None:
    """Says `text` (an email due at once) and SIGKILLs the app while the SMTP sink holds its answer to that
    email: the delivering execution has claimed the hand-over and dies in it. Then starts the app again."""
    sink.hold_replies = threading.Event()
    sink.data_arrived.clear()
    try:
        await say_until(api, email_id, text, sink.data_arrived)
        app.kill()
    finally:
        sink.hold_replies.set()
        sink.hold_replies = None
    await asyncio.to_thread(app.start)


async def say_until(api: Api, email_id: str, text: str, reached: threading.Event) -> None:
    """Says `text` and returns once `reached` is set (the sink got that far with the email).

    Not "say, then wait": on a busy machine the request's workflow task may run on into the delivery (the
    send time already due when the timer is set), and the answer to the say comes only with that task's
    end, which the sink is holding back. The say is left to finish, or to fail once the app is killed."""
    saying = asyncio.ensure_future(api.say(email_id, text))
    try:
        assert await asyncio.to_thread(reached.wait, 30), "the email never got that far"
    finally:
        if not saying.done():
            saying.add_done_callback(lambda done: done.cancelled() or done.exception())
        elif saying.exception() is not None:
            raise saying.exception()  # type: ignore[misc]


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def app_env(
    port: int,
    iwf_url: str,
    temporal_host_port: str,
    state: Path,
    openai_url: str,
    smtp_port: int,
    slack_api_url: str | None = None,
) -> dict[str, str]:
    """The app's environment for tests: every outside service on loopback, short timeouts."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SMTP_", "GOOGLE_", "SLACK_"))},
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WORKER_PORT": str(free_port()),
        "IWF_SERVER_URL": iwf_url,
        "TEMPORAL_HOST_PORT": temporal_host_port,
        "EMBEDDED_ENGINE": "false",
        "STATE_DIR": str(state),
        "API_TOKEN": API_TOKEN,
        "WORKER_SECRET": WORKER_SECRET,
        "OPENAI_BASE_URL": openai_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_TIMEOUT_SECONDS": "2",
        "OPENAI_MAX_RETRIES": "0",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT_SECONDS": "5",
        "MAIL_FROM": "assistant@example.org",
        "SEND_BACKOFF_SECONDS": "1",
        # Most tests time sends to the second; the undo window has tests of its own (UNDO_SECONDS set there).
        "UNDO_SECONDS": "0",
        "SEND_MAX_ATTEMPTS": "3",
    }
    if slack_api_url:
        env |= {
            "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "SLACK_API_URL": slack_api_url,
        }
    return env


def socket_mode_env(env: dict[str, str]) -> dict[str, str]:
    """An app env (from app_env with a Slack API URL) switched to Socket Mode: an app-level token and
    no signing secret, so no /slack/events route either."""
    return {k: v for k, v in env.items() if k != "SLACK_SIGNING_SECRET"} | {"SLACK_APP_TOKEN": SLACK_APP_TOKEN}


class SlackCards:
    """What both Slack drivers read back from the fake Web API: the card the workflow posts and edits."""

    def __init__(self, fake: FakeSlack):
        self.fake = fake

    async def card(self, channel: str, thread_ts: str, timeout: float = 20) -> str:
        """The ts of the bot's card in a thread, once the workflow has posted it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            posts = [
                c
                for c in self.fake.of("chat.postMessage", channel=channel, thread_ts=thread_ts)
                if c.args.get("blocks") and c.ok  # a post Slack took: one answered 429 posted nothing
            ]
            if posts:
                assert len(posts) == 1, "one card per thread"
                index = self.fake.calls.index(posts[0])
                return str(self._ts_of(index))
            await asyncio.sleep(0.1)
        raise AssertionError(f"no card in thread {thread_ts}")

    def _ts_of(self, index: int) -> str:
        # The fake numbers its ts in call order; recover the one it answered by replaying the counter.
        return self.fake.answered_ts[index]

    def card_states(self, channel: str, card_ts: str) -> list[Call]:
        """The card's updates Slack took: one answered 429 (or refused) never showed."""
        return [c for c in self.fake.of("chat.update", channel=channel, ts=card_ts) if c.ok]

    # Transport-specific: a DM, an event, and an interactive payload (whose answer, if any, is returned).
    async def dm(self, user: str, text: str, *, thread_ts: str | None = None) -> tuple[str, str]:
        raise NotImplementedError

    async def event(self, event: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def interactive(self, payload: dict[str, Any], answers: bool = False) -> dict[str, Any] | None:
        raise NotImplementedError

    async def press(
        self, action_id: str, value: str, user: str, channel: str, message_ts: str, thread_ts: str
    ) -> dict[str, Any]:
        """A click on a card's button; returns the payload (its trigger_id opens a modal)."""
        payload = action_payload(action_id, value, user, channel, message_ts, thread_ts)
        await self.interactive(payload)
        return payload

    async def open_editor(
        self, email_id: str, user: str, channel: str, card_ts: str, thread_ts: str, timeout: float = 10
    ) -> dict[str, Any]:
        """Clicks Edit on the card and returns the modal the app opened with that click's trigger_id."""
        click = await self.press(EDIT_ACTION, email_id, user, channel, card_ts, thread_ts)
        deadline = time.monotonic() + timeout
        while not self.fake.of("views.open", trigger_id=click["trigger_id"]):
            assert time.monotonic() < deadline, "the modal never opened"
            await asyncio.sleep(0.05)
        return self.fake.views[max(self.fake.views)]

    async def home_press(self, action_id: str, value: str, user: str) -> None:
        """A click on a button of the user's Home tab, as last published."""
        home = self.fake.homes.get(user, {"type": "home"})
        await self.interactive(home_action_payload(action_id, value, user, home))

    async def submit(self, user: str, opened: dict[str, Any], values: dict[str, Any]) -> dict[str, Any] | None:
        """The modal's Save: the app's answer (response_action errors), or None when it closes the modal."""
        return await self.interactive(view_submission_payload(user, opened, values), answers=True)

    async def open_home(self, user: str) -> None:
        await self.event(
            {
                "type": "app_home_opened",
                "user": user,
                "channel": f"D{user}",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            }
        )

    async def start_assistant_thread(self, user: str) -> tuple[str, str]:
        """The user opens a chat with the app: Slack creates the thread's root, then sends the event."""
        channel, thread_ts = f"D{user}", self.fake.new_ts()
        self.fake.messages[(channel, thread_ts)] = assistant_root(user, thread_ts)
        await self.event(assistant_thread_started(user, channel, thread_ts))
        return channel, thread_ts

    async def say_in_thread(self, user: str, channel: str, thread_ts: str, text: str) -> str:
        """A user's message in a thread (an assistant chat included); returns its ts."""
        ts = self.fake.new_ts()
        event = message_event(user, ts, text, thread_ts=thread_ts)
        self.fake.keep(channel, event)
        await self.event(event)
        return ts

    async def wait_card(self, channel: str, card_ts: str, text: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until the card's latest content contains `text`; returns that content."""
        deadline = time.monotonic() + timeout
        latest: dict[str, Any] = {}
        while time.monotonic() < deadline:
            updates = self.card_states(channel, card_ts)
            if updates:
                latest = updates[-1].args
                if text in json.dumps(latest, ensure_ascii=False):
                    return latest
            await asyncio.sleep(0.1)
        raise AssertionError(f"card never showed {text!r}; latest: {json.dumps(latest)[:800]}")


class Slack(SlackCards):
    """Plays Slack's side in HTTP mode: signs and POSTs events, commands and button clicks to the app."""

    def __init__(self, session: aiohttp.ClientSession, app: AppProcess, fake: FakeSlack):
        super().__init__(fake)
        self.session, self.url, self.app = session, f"{app.base_url}/slack/events", app
        self._signed: set[tuple[int, str]] = set()  # (timestamp, body) already delivered

    async def post(
        self, body: str, content_type: str, headers: dict[str, str] | None = None, signed: dict[str, str] | None = None
    ) -> tuple[int, str]:
        all_headers = {
            "Content-Type": content_type,
            **(sign(SLACK_SIGNING_SECRET, body) if signed is None else signed),
            **(headers or {}),
        }
        async with self.session.post(self.url, data=body.encode(), headers=all_headers) as response:
            return response.status, await response.text()

    async def deliver(self, body: str, retry: int) -> int:
        """One delivery of an event as Slack makes it: signed at its own second, retries numbered."""
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        signed = sign(SLACK_SIGNING_SECRET, body, timestamp=int(time.time()) - 10 + retry)
        status, _ = await self.post(body, "application/json", headers, signed=signed)
        return status

    async def event(self, event: dict[str, Any]) -> tuple[int, str]:
        status, text = await self.post(event_body(event, f"Ev{time.time_ns()}"), "application/json")
        assert status == 200, (status, text)
        return status, text

    async def interactive(self, payload: dict[str, Any], answers: bool = False) -> dict[str, Any] | None:
        """POSTed form-encoded as `payload`, like every interaction; the answer is the response body."""
        body = urlencode({"payload": json.dumps(payload)})
        # Each delivery of one payload signed at a second of its own, as Slack's are, so delivering it again is
        # not taken for a replay (a clock-based offset could land two deliveries on the same second).
        timestamp = int(time.time())
        while (timestamp, body) in self._signed:
            timestamp -= 1
        self._signed.add((timestamp, body))
        signed = sign(SLACK_SIGNING_SECRET, body, timestamp=timestamp)
        status, text = await self.post(body, "application/x-www-form-urlencoded", signed=signed)
        assert status == 200, (status, text)
        return json.loads(text) if text.strip() else None

    async def dm(
        self,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        retries: int = 1,
        encoded: bool = False,
        subtype: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> tuple[str, str]:
        """A user's DM to the bot, shaped as Slack sends it; returns (channel, ts).

        `text` is what the user typed, encoded as Slack does (entities, autolinked addresses and links)
        unless `encoded`, when it is already Slack's text (mentions, labelled links). `subtype` is e.g.
        file_share (with `files`) or thread_broadcast. `retries` > 1 re-delivers it as Slack does."""
        channel, ts = f"D{user}", self.fake.new_ts()
        event = message_event(user, ts, text, thread_ts=thread_ts, encoded=encoded, subtype=subtype, files=files)
        self.fake.keep(channel, event)
        body = event_body(event, event_id=f"Ev{ts.replace('.', '')}")
        first = int(time.time()) - retries  # each delivery's own second, whatever the clock does meanwhile
        for attempt in range(retries):
            retry = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"} if attempt else {}
            # Slack signs each delivery anew; a retry comes later, so with another timestamp.
            signed = sign(SLACK_SIGNING_SECRET, body, timestamp=first + attempt)
            status, _ = await self.post(body, "application/json", retry, signed=signed)
            assert status == 200
        return channel, ts


class SocketSlack(SlackCards):
    """Plays Slack's side in Socket Mode: the same helpers as `Slack`, as envelopes on the app's websocket
    (tests/fakes/socket_mode.py). Each helper waits for the ack unless told not to; `last` is the
    envelope it sent."""

    def __init__(self, fake: FakeSlack):
        super().__init__(fake)
        assert fake.socket_mode is not None, "a FakeSlack with a socket_mode"
        self.socket: FakeSocketMode = fake.socket_mode
        self.last: Envelope | None = None

    async def interactive(self, payload: dict[str, Any], answers: bool = False) -> dict[str, Any] | None:
        """An interactive envelope; a view_submission accepts a response payload, which travels in the ack."""
        envelope = await self.socket.send("interactive", payload, accepts_response_payload=answers)
        self.last = envelope
        ack = await self.socket.wait_ack(envelope)
        return ack.payload or None

    async def event(self, event: dict[str, Any], *, wait_ack: bool = True, lose_acks: int = 0) -> Envelope:
        """An events_api envelope whose payload is the event_callback body HTTP mode would POST."""
        payload = json.loads(event_body(event, event_id=f"Ev{time.time_ns()}"))
        envelope = await self.socket.send("events_api", payload, lose_acks=lose_acks)
        self.last = envelope
        if wait_ack and lose_acks:
            await self.socket.wait_acks(envelope, 1)  # the ack came, and was lost
        elif wait_ack:
            await self.socket.wait_ack(envelope)
        return envelope

    async def dm(
        self,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        encoded: bool = False,
        wait_ack: bool = True,
        lose_acks: int = 0,
    ) -> tuple[str, str]:
        """A user's DM to the bot as an events_api envelope; returns (channel, ts), the envelope is `last`.
        `lose_acks` drops the app's first acks on the way, so Slack would deliver it again."""
        channel, ts = f"D{user}", self.fake.new_ts()
        event = message_event(user, ts, text, thread_ts=thread_ts, encoded=encoded)
        self.fake.keep(channel, event)
        await self.event(event, wait_ack=wait_ack, lose_acks=lose_acks)
        return channel, ts

    async def click(
        self, action_id: str, value: str, user: str, channel: str, message_ts: str, thread_ts: str
    ) -> Envelope:
        """A button click: an interactive envelope with the block_actions payload."""
        payload = action_payload(action_id, value, user, channel, message_ts, thread_ts)
        envelope = await self.socket.send("interactive", payload)
        self.last = envelope
        await self.socket.wait_ack(envelope)
        return envelope

    async def command(self, text: str, user: str, *, wait_ack: bool = True) -> Envelope:
        """/schedule-email: a slash_commands envelope, which accepts a response payload (the ephemeral
        answer travels in the ack)."""
        fields = command_fields(text, user, self.fake.response_url(user))
        envelope = await self.socket.send("slash_commands", dict(fields), accepts_response_payload=True)
        self.last = envelope
        if wait_ack:
            await self.socket.wait_ack(envelope)
        return envelope


# --- waiting on the fake Slack --------------------------------------------------------------------------


async def until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


def home_sections(home: dict[str, Any]) -> dict[str, str]:
    """Each listed subject -> the header of its section."""
    sections: dict[str, str] = {}
    current = ""
    for block in home.get("blocks", []):
        if block["type"] == "header":
            current = block["text"]["text"]
        elif block["type"] == "section" and block["text"]["text"].startswith("*"):
            sections[block["text"]["text"].split("*")[1]] = current
    return sections


async def wait_home(fake: FakeSlack, user: str, check: Callable[[dict[str, str]], bool], after: int = 0) -> Call:
    """The first views.publish of `user`'s Home tab (after the `after`-th) whose sections pass `check`."""
    call: Call = await until(
        lambda: next(
            (c for c in fake.of("views.publish", user_id=user)[after:] if check(home_sections(c.args["view"]))), None
        ),
        f"a Home tab of {user} as expected",
    )
    return call
