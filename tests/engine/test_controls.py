"""The owner's decisions that need no model, through the real engine: send now and its undo window, undo,
the owner's own edit (one revision, validated in code), an idle draft closing, and listing one's emails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus

from bot.slack.threads import thread_email_id
from tests.fakes.slack_server import TEAM, FakeSlack
from tests.harness import Api, AppProcess, Engine, Slack, SmtpSink, unique, variant_of, wait_for_mail

pytestmark = pytest.mark.engine


@pytest.fixture
async def undoable(app_process: AppProcess, tmp_path: Path) -> AsyncIterator[Api]:
    """An app with a 4-second undo window (the suite's app has none, to time sends to the second)."""
    app = variant_of(app_process, tmp_path, UNDO_SECONDS="4")
    await asyncio.to_thread(app.start)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield Api(session, app.base_url)
    app.stop()


async def test_a_send_soon_waits_the_undo_window_and_undo_holds_it(undoable: Api, smtp_sink: SmtpSink) -> None:
    api = undoable
    wid = unique("undo")
    await api.start(wid)
    await api.say(wid, "to: un@example.com; subject: Oops; body: Wrong words; send in 1 seconds")
    view = await api.wait_for(wid, "scheduled")
    assert view["undo_until"] and "Sending in 4 seconds" in view["last_reply"]
    assert datetime.fromisoformat(view["send_at"]) == datetime.fromisoformat(view["undo_until"])
    status, body = await api.call("POST", f"/api/emails/{wid}/undo", {"message_id": "u1"})
    assert status == 202 and body["ok"], body
    view = await api.wait_for(wid, "waiting")
    assert not view["will_send"] and view["undo_until"] is None and "Undone" in view["last_reply"]
    # A message without a time does not arm it again: it stays on hold.
    await api.say(wid, "subject: Better words")
    view = await api.wait_for(wid, "waiting")
    assert (view["subject"], view["will_send"], view["send_at"]) == ("Better words", False, None), view
    await asyncio.sleep(5)
    assert smtp_sink.to("un@example.com") == [], "held: nothing went out"
    status, body = await api.call("POST", f"/api/emails/{wid}/undo", {"message_id": "u1"})
    assert (status, body["already"]) == (202, True), "a retried click changes nothing"
    # Send now: after the undo window, once.
    status, _ = await api.call("POST", f"/api/emails/{wid}/send-now", {"message_id": "n1"})
    assert status == 202
    view = await api.wait_for(wid, "scheduled")
    assert view["undo_until"] and view["will_send"]
    await api.wait_for(wid, "sent", timeout=30)
    await asyncio.sleep(1)
    assert len(smtp_sink.to("un@example.com")) == 1


async def test_words_not_understood_as_the_email_is_due_hold_it_and_a_drafting_model_cannot_rearm_it(
    undoable: Api, smtp_sink: SmtpSink
) -> None:
    """A change sent in the last seconds that the model fails on: the email waits for its owner instead of
    going out without it. A later reply that only drafts, repeating an old time, does not arm it again."""
    api = undoable
    wid = unique("due-hold")
    await api.start(wid)
    await api.say(wid, "to: dh@example.com; subject: Old words; body: B; send in 1 seconds")
    armed = await api.wait_for(wid, "scheduled")
    await api.say(wid, "RATE429 change the subject to New words")
    view = await api.wait_for(wid, "waiting")
    assert "put it on hold" in view["last_reply"] and not view["will_send"] and view["send_at"] is None, view
    assert armed["will_send"]
    later = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S")  # the zone is UTC
    await api.say(wid, f"subject: Newer words; redraft repeating {later}")
    view = await api.wait_for(wid, "waiting")
    assert (view["subject"], view["will_send"]) == ("Newer words", False), view
    await asyncio.sleep(6)  # past the old time and its undo window
    assert smtp_sink.to("dh@example.com") == [], "nothing went out without the owner"


async def test_a_retry_after_the_undo_window_shows_no_undo(
    app_process: AppProcess, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    """Sent after its undo window, refused once (451): through the back-off the email shows no Undo."""
    app = variant_of(app_process, tmp_path, UNDO_SECONDS="4", SEND_BACKOFF_SECONDS="8")
    await asyncio.to_thread(app.start)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    api = Api(session, app.base_url)
    wid = unique("undo-retry")
    refused_once: list[str] = []

    def once(envelope: Any) -> str | None:
        if "ur@example.com" in envelope.rcpt_tos and not refused_once:
            refused_once.append("451")
            return "451 4.3.0 try again later"
        return None

    smtp_sink.fault = once
    try:
        await api.start(wid)
        await api.say(wid, "to: ur@example.com; subject: Retry; body: B; send in 1 seconds")
        assert (await api.wait_for(wid, "scheduled"))["undo_until"] is not None
        deadline = time.monotonic() + 30
        view = await api.describe(wid)
        while not view["send_attempts"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            view = await api.describe(wid)
        assert (view["send_attempts"], view["status"]) == (1, "scheduled"), view  # backing off 8 s
        assert view["undo_until"] is None, "no 'Sending in 0 s - Undo' through the back-off"
        await api.wait_for(wid, "sent", timeout=30)
        assert len(smtp_sink.to("ur@example.com")) == 1
    finally:
        smtp_sink.fault = None
        await session.close()
        app.stop()


async def test_send_now_of_a_later_email_sends_it_now(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("send-now")
    await api.start(wid)
    await api.say(wid, "to: sn@example.com; subject: Later; body: Or now; tomorrow at 9am")
    later = await api.wait_for(wid, "scheduled")
    assert datetime.fromisoformat(later["send_at"]) > datetime.now(UTC) + timedelta(hours=1)
    status, _ = await api.call("POST", f"/api/emails/{wid}/send-now", {})
    assert status == 202
    await api.wait_for(wid, "sent", timeout=30)
    await wait_for_mail(smtp_sink, "sn@example.com")


async def test_the_owners_edit_is_one_revision_without_the_model(api: Api, smtp_sink: SmtpSink, fake_openai) -> None:  # type: ignore[no-untyped-def]
    wid = unique("edit")
    await api.start(wid, timezone="Europe/Paris")
    await api.say(wid, "to: ed@example.com; subject: Draft; body: First")
    before = await api.wait_for(wid, "waiting")
    calls = len(fake_openai.requests)
    soon = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M")
    edit = {"to": ["ed@example.com", "ed2@example.com"], "subject": "Édité", "body": "Mine\nnow", "send_at_local": soon}
    status, body = await api.call("POST", f"/api/emails/{wid}/edit", edit)
    assert status == 202, body
    view = await api.wait_for(wid, "scheduled")
    assert (view["to"], view["subject"], view["body"]) == (["ed@example.com", "ed2@example.com"], "Édité", "Mine\nnow")
    assert view["revision"] == before["revision"] + 1 and view["unconfirmed"] == [], "typed by the owner: vouched"
    assert len(fake_openai.requests) == calls, "no model call"
    # A bad edit is refused with the reason, and changes nothing.
    status, _ = await api.call(
        "POST", f"/api/emails/{wid}/edit", {**edit, "to": ["not an address"], "send_at_local": "2020-01-01T09:00"}
    )
    assert status == 202
    await asyncio.sleep(1)
    refused = await api.wait_for(wid, "scheduled", "waiting")
    assert refused["to"] == view["to"] and refused["revision"] == view["revision"]
    assert "not applied" in refused["last_reply"] and "in the past" in refused["last_reply"]
    await api.call("POST", f"/api/emails/{wid}/cancel")


async def test_an_idle_draft_closes_and_says_so(app_process: AppProcess, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    app = variant_of(app_process, tmp_path, DRAFT_TTL_DAYS="0.00004")  # about 3 seconds
    await asyncio.to_thread(app.start)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, app.base_url)
            wid = unique("idle")
            await api.start(wid)
            await api.say(wid, "to: id@example.com; subject: Forgotten; body: Never finished")
            await api.wait_for(wid, "waiting")
            view = await api.wait_for(wid, "canceled", timeout=30)
            assert "without activity" in view["last_reply"] and view["pending_requests"] == 0
            status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "hello?"})
            assert status == 409 and body["error"]["code"] == "closed"
            # An email whose delivery is unknown may have gone out: closing never says "nothing was sent".
            unknown = unique("idle-unknown")
            await api.start(unknown)
            smtp_sink.drop_after_data = True
            try:
                await api.say(unknown, "to: iu@example.com; subject: Maybe; body: Out; send in 1 seconds")
                await api.wait_for(unknown, "unconfirmed", timeout=30)
            finally:
                smtp_sink.drop_after_data = False
            deadline = time.monotonic() + 30
            view = await api.describe(unknown)
            while "without activity" not in view["last_reply"] and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                view = await api.describe(unknown)
            assert view["status"] == "unconfirmed" and "still unknown" in view["last_reply"], view["last_reply"]
            assert "nothing was sent" not in view["last_reply"]
            status, body = await api.call("POST", f"/api/emails/{unknown}/messages", {"text": "hello?"})
            assert status == 409 and body["error"]["code"] == "closed"
    finally:
        app.stop()


async def test_requests_to_an_email_closing_while_its_card_is_held_are_refused_not_lost(
    app_process: AppProcess, fake_slack: FakeSlack, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    """An idle "delivery unknown" email closes, but Slack rate-limits its card's last update, so the workflow
    stays open for minutes in that step. A message or a click then must be refused ("closed"), not accepted
    into a channel nothing reads any more; and the card must offer no buttons that can do nothing."""
    app = variant_of(app_process, tmp_path, DRAFT_TTL_DAYS="0.00004")  # about 3 seconds
    await asyncio.to_thread(app.start)
    user = f"UCLOSE{unique('c')[-8:]}"
    try:
        async with aiohttp.ClientSession() as session:
            api, slack = Api(session, app.base_url), Slack(session, app, fake_slack)
            smtp_sink.drop_after_data = True
            try:
                channel, ts = await slack.dm(user, "to: cl@example.com; subject: Maybe; body: Out; send in 1 seconds")
                wid = thread_email_id(TEAM, channel, ts)
                await api.wait_for(wid, "unconfirmed", timeout=30)
            finally:
                smtp_sink.drop_after_data = False
            card = await slack.card(channel, ts)
            await slack.wait_card(channel, card, "Delivery unknown")
            fake_slack.retry_after, fake_slack.rate_limit_next[f"chat.update:{card}"] = 30, 10_000
            try:
                view = await until_view(api, wid, lambda v: v["closed"], "the email closed")
                assert view["status"] == "unconfirmed" and not view["will_send"] and view["plan"].startswith("Closed")
                status, body = await api.call(
                    "POST", f"/api/emails/{wid}/messages", {"text": "send it again", "actor": user}
                )
                assert status == 409 and body["error"]["code"] == "finished", body
                status, body = await api.call("POST", f"/api/emails/{wid}/cancel", {"actor": user})
                assert status == 409 and body["error"]["code"] == "finished", body
                assert (await api.describe(wid))["pending_requests"] == 0
            finally:
                fake_slack.retry_after, fake_slack.rate_limit_next[f"chat.update:{card}"] = 1, 0
            last = await slack.wait_card(channel, card, "without activity")
            assert not [b for b in last["blocks"] if b["type"] == "actions"], "no buttons on a closed email"
    finally:
        app.stop()


async def test_an_email_whose_card_slack_refuses_for_good_still_goes_out_and_ends(
    app_process: AppProcess, fake_slack: FakeSlack, engine: Engine, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    """Slack refuses every update of a card (429s that never end). The email does not wait for its card: it
    goes out at its time; the card step gives up after CARD_RETRY_SECONDS, and the workflow ends (it does not
    stay open for a card nobody can show), answering later calls as closed."""
    app = variant_of(app_process, tmp_path, CARD_RETRY_SECONDS="4")
    await asyncio.to_thread(app.start)
    user = f"UGIVE{unique('g')[-8:]}"
    try:
        async with aiohttp.ClientSession() as session:
            api, slack = Api(session, app.base_url), Slack(session, app, fake_slack)
            channel, ts = await slack.dm(user, "to: gu@example.com; subject: Never shown; body: Hi; send in 20 seconds")
            card = await slack.card(channel, ts)
            await slack.wait_card(channel, card, "Scheduled")
            fake_slack.retry_after, fake_slack.rate_limit_next[f"chat.update:{card}"] = 30, 10_000
            try:
                wid = thread_email_id(TEAM, channel, ts)
                [mail] = await wait_for_mail(smtp_sink, "gu@example.com", timeout=60)
                assert mail.message["Subject"] == "Never shown"
                handle = (await TemporalClient.connect(engine.temporal_host_port)).get_workflow_handle(wid)
                deadline = time.monotonic() + 60
                while (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
                    assert time.monotonic() < deadline, "the workflow stayed open for a card Slack never took"
                    await asyncio.sleep(0.5)
                refused = [c for c in fake_slack.of("chat.update", ts=card) if c.answer == "ratelimited"]
                assert len(refused) >= 2, "the card step tried, and gave up"
                view = await api.describe(wid)
                assert view["status"] == "sent"
                status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "again", "actor": user})
                assert status == 409 and body["error"]["code"] == "closed", body
            finally:
                fake_slack.retry_after, fake_slack.rate_limit_next[f"chat.update:{card}"] = 1, 0
    finally:
        app.stop()


async def until_view(api: Api, wid: str, check: Any, what: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = await api.describe(wid)
        if check(view):
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"never: {what}")


async def test_an_owner_lists_their_emails(api: Api) -> None:
    owner = unique("lister")
    ids = [unique("mine") for _ in range(3)]
    for wid in ids:
        await api.call("POST", f"/api/emails/{wid}", {"owner": owner})
    await api.call("POST", f"/api/emails/{unique('theirs')}", {"owner": "someone-else"})
    first = ids[0]
    await api.call(
        "POST",
        f"/api/emails/{first}/messages",
        {"text": "to: li@example.com; subject: Listed; body: B; tomorrow at 9am", "actor": owner},
    )
    await api.wait_for(first, "scheduled")
    status, issued = await api.call("POST", "/api/tokens", {"user": owner})
    listed: dict[str, dict[str, object]] = {}
    for _ in range(50):  # visibility follows the workflows within moments
        status, body = await api.call("GET", f"/api/emails?owner={owner}", token=issued["token"])
        assert status == 200, body
        listed = {item["id"]: item["email"] for item in body["emails"]}
        if set(listed) == set(ids) and listed[first]["status"] == "scheduled":
            break
        await asyncio.sleep(0.2)
    assert set(listed) == set(ids), listed
    assert listed[first]["subject"] == "Listed" and listed[first]["will_send"]
    status, _ = await api.call("GET", "/api/emails?owner=someone-else", token=issued["token"])
    assert status == 403
