"""A lost SMTP answer settled by the account's Sent folder, through the real engine: the sink files what it
takes in a real IMAP server (pymap), as Gmail does, and the app asks it by Message-ID instead of telling the
user "delivery unknown". Without a Sent folder to ask, the same faults stay "unconfirmed" (test_edges)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import (
    Api,
    AppProcess,
    Engine,
    SmtpSink,
    app_env,
    free_port,
    kill_while_the_server_holds_its_answer,
    say_until,
    unique,
    wait_for_mail,
)
from tests.imap_server import ImapServer

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def checking_app(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    imap_server: ImapServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppProcess]:
    """An app whose mail account has a Sent folder over IMAP (settle 1 s, so "not there" is quick)."""
    state: Path = tmp_path_factory.mktemp("sent-folder")
    port = free_port()
    env = app_env(port, engine.iwf_url, engine.temporal_host_port, state, fake_openai.base_url, smtp_sink.port)
    env |= {
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(imap_server.port),
        "IMAP_SECURITY": "none",
        "IMAP_USERNAME": imap_server.username,
        "IMAP_PASSWORD": imap_server.password,
        "IMAP_SENT_FOLDER": imap_server.folder,
        "IMAP_SETTLE_SECONDS": "1",
    }
    app = AppProcess(env=env, log_path=state / "app.log", base_url=f"http://127.0.0.1:{port}")
    app.start()
    yield app
    app.stop()


@pytest.fixture
async def checking_api(checking_app: AppProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield Api(session, checking_app.base_url)


@pytest.fixture
def filing(smtp_sink: SmtpSink, imap_server: ImapServer) -> Iterator[SmtpSink]:
    """The sink files every message it takes in the Sent folder, for this test only."""
    smtp_sink.sent_folder = imap_server.file
    yield smtp_sink
    smtp_sink.sent_folder = None
    smtp_sink.fault = None
    smtp_sink.drop_after_data = False
    if smtp_sink.hold_recipients is not None:
        smtp_sink.hold_recipients.set()
        smtp_sink.hold_recipients = None


async def test_a_connection_lost_after_the_server_took_the_message_is_confirmed_in_the_sent_folder(
    checking_api: Api, filing: SmtpSink, imap_server: ImapServer, checking_app: AppProcess
) -> None:
    wid = unique("filed")
    await checking_api.start(wid)
    filing.drop_after_data = True
    await checking_api.say(wid, "to: filed@example.com; subject: Taken; body: It arrived; send in 1 seconds")
    view = await checking_api.wait_for(wid, "sent", "unconfirmed", timeout=40)
    filing.drop_after_data = False
    assert view["status"] == "sent", view
    assert view["last_reply"].startswith("Sent to filed@example.com"), view["last_reply"]
    assert "checked the account's sent mail" in view["last_reply"]
    [mail] = await wait_for_mail(filing, "filed@example.com")
    assert mail.message["Message-ID"] == view["sent_message_id"]
    assert imap_server.message_ids().count(view["sent_message_id"]) == 1
    await asyncio.sleep(3)
    assert len(filing.to("filed@example.com")) == 1, "confirmed, so never sent again"
    assert imap_server.password not in checking_app.log_path.read_text(), "the IMAP password is never logged"


async def test_a_connection_lost_before_the_server_took_the_message_is_sent_again(
    checking_api: Api, filing: SmtpSink, imap_server: ImapServer
) -> None:
    """Not in the Sent folder, even after the settle: it did not go out, so it is retried like any transient
    failure, with the same Message-ID, and arrives once."""
    losses: list[str] = []

    def lose_the_first(envelope: Any) -> str | None:
        if "lost@example.com" in envelope.rcpt_tos and not losses:
            lost = message_from_bytes(envelope.content.replace(b"\r\n", b"\n"), policy=policy.default)
            losses.append(str(lost["Message-ID"]))
            return "lose"
        return None

    filing.fault = lose_the_first
    wid = unique("lost")
    await checking_api.start(wid)
    await checking_api.say(wid, "to: lost@example.com; subject: Again; body: Second try; send in 1 seconds")
    view = await checking_api.wait_for(wid, "sent", "unconfirmed", "failed", timeout=60)
    assert view["status"] == "sent", view
    assert len(losses) == 1, "the first hand-over was lost"
    [mail] = await wait_for_mail(filing, "lost@example.com")
    assert mail.message["Message-ID"] == view["sent_message_id"] == losses[0], "sent again with the same Message-ID"
    assert imap_server.message_ids().count(view["sent_message_id"]) == 1
    assert view["send_attempts"] == 1, "the lost hand-over counted as one failed attempt, then retried"


async def test_the_app_killed_while_the_server_holds_its_answer_is_settled_by_the_sent_folder(
    checking_api: Api, filing: SmtpSink, imap_server: ImapServer, checking_app: AppProcess
) -> None:
    """The delivering execution claimed the hand-over and died; the next one finds the earlier claim and,
    instead of "delivery unknown", finds the message in the Sent folder: sent, once."""
    wid = unique("killed-filed")
    await checking_api.start(wid)
    text = "to: kf@example.com; subject: Once; body: Only once; send in 1 seconds"
    await kill_while_the_server_holds_its_answer(checking_api, checking_app, filing, wid, text)
    view = await checking_api.wait_for(wid, "sent", "unconfirmed", timeout=120)
    assert view["status"] == "sent", view
    assert imap_server.message_ids().count(view["sent_message_id"]) == 1
    assert "checked the account's sent mail" in view["last_reply"]
    await asyncio.sleep(2)
    assert len(filing.to("kf@example.com")) == 1


async def test_the_app_killed_before_the_message_left_is_sent_once_after_its_hand_over_is_over(
    checking_api: Api, filing: SmtpSink, imap_server: ImapServer, checking_app: AppProcess
) -> None:
    """The delivering execution claimed the hand-over and died in the SMTP session before sending the
    message. The next execution finds the claim and nothing in the Sent folder, but that claim may still be
    sending (another replica, a slow server): it waits, durably, until any hand-over that old must be over
    (the ledger's take-over age), looks again, and only then sends. Once, and with the Message-ID of the
    first attempt."""
    wid = unique("taken-over")
    await checking_api.start(wid)
    filing.hold_recipients = threading.Event()
    filing.recipient_arrived.clear()
    try:
        text = "to: takeover@example.com; subject: Late; body: Not lost; send in 1 seconds"
        await say_until(checking_api, wid, text, filing.recipient_arrived)
        checking_app.kill()
    finally:
        filing.hold_recipients.set()
        filing.hold_recipients = None
    await asyncio.to_thread(checking_app.start)
    assert filing.to("takeover@example.com") == [], "killed before DATA: nothing was taken"

    reasons: set[str] = set()
    deadline = time.monotonic() + 150
    view: dict[str, Any] = {}
    clicked_at: datetime | None = None
    while time.monotonic() < deadline:
        try:
            view = await checking_api.describe(wid)
        except (AssertionError, aiohttp.ClientError):
            await asyncio.sleep(0.3)  # the engine may still be taking the restarted app's worker up
            continue
        reasons.add(view.get("last_error") or "")
        if clicked_at is None and view["status"] == "scheduled" and "interrupted moments ago" in view["last_error"]:
            # The owner clicks Send now while it waits: the card must not promise a time that passes unsent.
            clicked_at = datetime.now(UTC)
            status, _ = await checking_api.call("POST", f"/api/emails/{wid}/send-now", {"message_id": "now-1"})
            assert status in (200, 202)
            held = await checking_api.describe(wid)
            for _ in range(50):
                if "at the earliest" in held["last_reply"] or held["status"] == "sent":
                    break
                await asyncio.sleep(0.2)
                held = await checking_api.describe(wid)
            assert held["status"] == "scheduled" and held["will_send"], held
            assert "at the earliest" in held["last_reply"], held
            assert datetime.fromisoformat(held["send_at"]) > clicked_at + timedelta(seconds=5), held
        if view["status"] in ("sent", "unconfirmed", "failed") and not view["pending_requests"]:
            break
        await asyncio.sleep(0.3)
    assert view["status"] == "sent", view
    assert any("interrupted moments ago" in reason for reason in reasons), reasons
    assert clicked_at is not None, "Send now was never clicked during the wait"
    [mail] = await wait_for_mail(filing, "takeover@example.com")
    assert mail.message["Message-ID"] == view["sent_message_id"]
    assert imap_server.message_ids().count(view["sent_message_id"]) == 1
    assert "checked the account's sent mail" not in view["last_reply"], "it was sent, not found"
    await asyncio.sleep(2)
    assert len(filing.to("takeover@example.com")) == 1


async def _while_a_lost_hand_over_may_still_arrive(
    api: Api, app: AppProcess, filing: SmtpSink, wid: str, text: str, late: list[bytes]
) -> dict[str, Any]:
    """The server takes the message but files it late (into `late`); the app dies holding the answer; the next
    execution finds a young claim and nothing filed, and waits: returns the email's view in that wait."""
    filing.sent_folder = late.append  # taken, not filed yet
    await api.start(wid)
    await kill_while_the_server_holds_its_answer(api, app, filing, wid, text)
    deadline = time.monotonic() + 90
    view: dict[str, Any] = {}
    while not (view.get("status") == "scheduled" and "interrupted moments ago" in view.get("last_error", "")):
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.3)
        with contextlib.suppress(AssertionError, aiohttp.ClientError):  # the restarted worker may not be up yet
            view = await api.describe(wid)
    return view


async def test_words_edited_while_a_lost_hand_over_may_still_arrive_do_not_go_out_as_a_second_email(
    checking_api: Api, filing: SmtpSink, imap_server: ImapServer, checking_app: AppProcess
) -> None:
    """The delivering execution dies while the server holds its answer; the server took the message, but the
    provider files it in the Sent folder late (Gmail's index can lag). The next execution finds a young claim
    and nothing filed: that hand-over may still be going, so it waits. The owner edits meanwhile (new words,
    a new Message-ID), and the late copy is filed. The next round looks for the first copy before sending
    the new words: one email arrives, the one that was already out, and the owner is told why."""
    late: list[bytes] = []
    wid = unique("edited-late")
    text = "to: edlate@example.com; subject: First words; body: Hello; send in 1 seconds"
    view = await _while_a_lost_hand_over_may_still_arrive(checking_api, checking_app, filing, wid, text, late)
    await checking_api.say(wid, "subject: Second words")
    deadline = time.monotonic() + 60
    while view["subject"] != "Second words" or view["pending_requests"]:
        assert time.monotonic() < deadline and view["status"] == "scheduled", view
        await asyncio.sleep(0.3)
        view = await checking_api.describe(wid)
    [first] = filing.to("edlate@example.com")
    for content in late:  # the provider's index catches up
        imap_server.file(content)
    view = await checking_api.wait_for(wid, "sent", "unconfirmed", "failed", timeout=150)
    await asyncio.sleep(2)
    mails = filing.to("edlate@example.com")
    assert [m.message["Subject"] for m in mails] == ["First words"], "the new words went out as a second email"
    assert view["status"] == "sent" and view["sent_message_id"] == first.message["Message-ID"], view
    assert "did not send the new version" in view["last_reply"], view["last_reply"]


async def test_a_cancel_while_a_lost_hand_over_may_still_arrive_does_not_promise_it_was_not_sent(
    checking_api: Api, filing: SmtpSink, checking_app: AppProcess
) -> None:
    """In the same wait, a cancel is taken, but its answer and the card say that an earlier attempt may
    have delivered it, not "it will not be sent"."""
    late: list[bytes] = []
    wid = unique("canceled-late")
    text = "to: canlate@example.com; subject: Maybe out; body: Hello; send in 1 seconds"
    await _while_a_lost_hand_over_may_still_arrive(checking_api, checking_app, filing, wid, text, late)
    status, body = await checking_api.call("POST", f"/api/emails/{wid}/cancel", {})
    assert status == 200 and "may have delivered it" in body["detail"], body
    view = await checking_api.wait_for(wid, "canceled", timeout=60)
    assert "may still have delivered it" in view["last_reply"], view["last_reply"]
    assert len(filing.to("canlate@example.com")) == 1, "the copy the server took, and no other"
