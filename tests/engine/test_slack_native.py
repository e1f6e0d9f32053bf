"""Slack's own surfaces, end to end, in HTTP mode and in Socket Mode: Send now and the undo window, the edit
modal, App Home kept live, and the AI-app assistant threads. Each test runs once per mode, against two app
processes (one signed HTTP, one on a Socket Mode websocket) with a 4-second undo window, the real engine, the
fake model, a fake Slack Web API recording every call, and mail through aiosmtpd. Payloads are shaped as
Slack's documentation shows them (tests/fakes/slack_server.py)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bot.slack.assistant import GREETING, LISTING_QUESTION, STATUS_WRITING
from bot.slack.card import CANCEL_ACTION, EDIT_ACTION, SEND_NOW_ACTION, UNDO_ACTION
from bot.slack.home import OPEN_THREAD_ACTION
from bot.slack.modal import BODY, SEND_AT, SUBJECT, TO
from bot.slack.threads import thread_email_id
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM, Call, FakeSlack
from tests.fakes.socket_mode import FakeSocketMode
from tests.harness import (
    SLACK_APP_TOKEN,
    Api,
    AppProcess,
    Engine,
    Slack,
    SlackCards,
    SmtpSink,
    SocketSlack,
    app_env,
    free_port,
    socket_mode_env,
    until,
    wait_for_mail,
    wait_home,
)

pytestmark = pytest.mark.engine

UNDO = 4


def user_id(prefix: str) -> str:
    return f"U{prefix.upper()}{time.time_ns() % 10**9}"


def action_ids(content: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in content.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


@pytest.fixture(scope="module")
async def native_fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(socket_mode=FakeSocketMode(app_token=SLACK_APP_TOKEN))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
def native_apps(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    native_fake: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, AppProcess]]:
    apps: dict[str, AppProcess] = {}
    for mode in ("http", "socket"):
        state, port = tmp_path_factory.mktemp(f"native-{mode}"), free_port()
        env = app_env(
            port,
            engine.iwf_url,
            engine.temporal_host_port,
            state,
            fake_openai.base_url,
            smtp_sink.port,
            slack_api_url=native_fake.api_url,
        ) | {"UNDO_SECONDS": str(UNDO)}
        env = socket_mode_env(env) if mode == "socket" else env
        apps[mode] = AppProcess(env=env, log_path=state / "app.log", base_url=f"http://127.0.0.1:{port}")
        apps[mode].start()
    yield apps
    for app in apps.values():
        app.stop()


@pytest.fixture(params=["http", "socket"])
async def slack(
    request: pytest.FixtureRequest, native_apps: dict[str, AppProcess], native_fake: FakeSlack
) -> AsyncIterator[SlackCards]:
    if request.param == "http":
        with native_fake.nothing_refused():
            async with aiohttp.ClientSession() as session:
                yield Slack(session, native_apps["http"], native_fake)
        return
    driver = SocketSlack(native_fake)
    await driver.socket.wait_connected()
    with native_fake.nothing_refused():
        yield driver
    assert driver.socket.errors == [], "every frame the app sent was a valid ack"


@pytest.fixture
async def api(native_apps: dict[str, AppProcess]) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Api(session, native_apps["http"].base_url)


async def ephemeral(fake: FakeSlack, user: str, text: str) -> Call:
    return await until(
        lambda: next((c for c in fake.of("chat.postEphemeral", user=user) if text in c.args.get("text", "")), None),
        f"an ephemeral {text!r} to {user}",
    )


def user_turns(view: dict[str, Any], text: str) -> int:
    return sum(1 for t in view["conversation"] if t["role"] == "assistant" and text in t["text"])


# --- Send now and the undo window -------------------------------------------------------------------------


async def test_send_now_waits_the_undo_window_undo_holds_it_and_strangers_change_nothing(
    slack: SlackCards, api: Api, smtp_sink: SmtpSink
) -> None:
    owner, stranger = user_id("now"), user_id("intruder")
    address = f"{owner.lower()}@example.com"
    channel, ts = await slack.dm(owner, f"to: {address}; subject: Later; body: Or now; tomorrow at 9am")
    card = await slack.card(channel, ts)
    scheduled = await slack.wait_card(channel, card, "Scheduled")
    assert action_ids(scheduled) == [SEND_NOW_ACTION, EDIT_ACTION, CANCEL_ACTION]
    email_id = thread_email_id(TEAM, channel, ts)

    await slack.press(SEND_NOW_ACTION, email_id, stranger, channel, card, ts)
    await ephemeral(slack.fake, stranger, "only the person who started")
    view = await api.describe(email_id)
    assert view["status"] == "scheduled" and view["undo_until"] is None, "a stranger's click changed nothing"

    await slack.press(SEND_NOW_ACTION, email_id, owner, channel, card, ts)
    going = await slack.wait_card(channel, card, "Sending in")
    assert action_ids(going)[0] == UNDO_ACTION and SEND_NOW_ACTION not in action_ids(going)
    # No Edit while it is about to go: the modal has no "when the window ends" to offer, and saved with an
    # empty time it would quietly put on hold the email the user just told to go. An older card's Edit says so.
    assert EDIT_ACTION not in action_ids(going)
    opened = len(slack.fake.of("views.open"))
    await slack.press(EDIT_ACTION, email_id, owner, channel, card, ts)
    await ephemeral(slack.fake, owner, "Press Undo on the card first")
    assert len(slack.fake.of("views.open")) == opened, "no editor opened"
    await slack.press(UNDO_ACTION, email_id, owner, channel, card, ts)
    held = await slack.wait_card(channel, card, "Undone")
    assert UNDO_ACTION not in action_ids(held) and SEND_NOW_ACTION in action_ids(held)
    await asyncio.sleep(UNDO + 1)
    assert smtp_sink.to(address) == [], "undone within the window: nothing went out"
    view = await api.describe(email_id)
    assert view["status"] == "waiting" and not view["will_send"]

    click = await slack.press(SEND_NOW_ACTION, email_id, owner, channel, card, ts)
    await slack.interactive(click)  # Slack delivers the same click again: one decision
    [mail] = await wait_for_mail(smtp_sink, address, timeout=UNDO + 20)
    assert mail.message["Subject"] == "Later"
    await slack.wait_card(channel, card, "Sent")
    view = await api.describe(email_id)
    assert view["status"] == "sent" and user_turns(view, "Sending now") == 2, "two clicks on Send now, not three"
    await asyncio.sleep(1)
    assert len(smtp_sink.to(address)) == 1


# --- the edit modal -----------------------------------------------------------------------------------------


def modal_values(to: str, subject: str, body: str, when: datetime | None) -> dict[str, Any]:
    return {
        TO: {"value": {"type": "plain_text_input", "value": to}},
        SUBJECT: {"value": {"type": "plain_text_input", "value": subject}},
        BODY: {"value": {"type": "plain_text_input", "value": body}},
        SEND_AT: {"value": {"type": "datetimepicker", "selected_date_time": int(when.timestamp()) if when else None}},
    }


async def test_the_edit_modal_validates_in_code_and_applies_one_revision_without_the_model(
    slack: SlackCards, api: Api, fake_openai: FakeOpenAI
) -> None:
    owner, stranger = user_id("editor"), user_id("peeker")
    slack.fake.timezones[owner] = "Europe/Paris"
    address = f"{owner.lower()}@example.com"
    channel, ts = await slack.dm(owner, f"to: {address}; subject: Draft; body: First")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Not scheduled yet")
    email_id = thread_email_id(TEAM, channel, ts)
    before = await api.describe(email_id)

    await slack.press(EDIT_ACTION, email_id, stranger, channel, card, ts)
    await ephemeral(slack.fake, stranger, "Only the person who started")
    click = await slack.press(EDIT_ACTION, email_id, owner, channel, card, ts)
    [opened_call] = await until(lambda: slack.fake.of("views.open", trigger_id=click["trigger_id"]), "views.open")
    opened = slack.fake.views[max(slack.fake.views)]
    assert opened["callback_id"] == "edit_email_modal" and opened_call.args["view"]["blocks"] == opened["blocks"]
    fields = {b["block_id"]: b["element"] for b in opened["blocks"] if b["type"] == "input"}
    assert (fields[TO]["initial_value"], fields[SUBJECT]["initial_value"]) == (address, "Draft")
    assert fields[SEND_AT]["type"] == "datetimepicker" and "initial_date_time" not in fields[SEND_AT]
    calls = len(fake_openai.requests)

    past = datetime.now(UTC) - timedelta(days=1)
    answer = await slack.submit(owner, opened, modal_values("not an address", "", "Mine", past))
    assert answer is not None and answer["response_action"] == "errors"
    assert set(answer["errors"]) == {TO, SUBJECT, SEND_AT} and "in the past" in answer["errors"][SEND_AT]
    assert (await api.describe(email_id))["revision"] == before["revision"], "nothing applied"

    when = datetime.now(UTC) + timedelta(days=1)
    good = modal_values(f"{address}, second-{address}", "Edited", "Mine\nnow", when)
    assert await slack.submit(owner, opened, good) is None, "a valid edit closes the modal"
    edited = await slack.wait_card(channel, card, "Edited")
    assert "Scheduled" in json.dumps(edited) or "Your edit is applied" in json.dumps(edited)
    view = await api.wait_for(email_id, "scheduled")
    assert (view["to"], view["subject"], view["body"]) == ([address, f"second-{address}"], "Edited", "Mine\nnow")
    assert view["revision"] == before["revision"] + 1 and view["unconfirmed"] == []
    assert datetime.fromisoformat(view["send_at"]).replace(second=0) == when.replace(second=0, microsecond=0)
    assert len(fake_openai.requests) == calls, "no model call"
    assert await slack.submit(owner, opened, good) is None, "the same submit again"
    await asyncio.sleep(0.5)
    assert (await api.describe(email_id))["revision"] == view["revision"], "one revision"
    await api.call("POST", f"/api/emails/{email_id}/cancel", {"actor": owner})


async def test_an_edit_made_from_an_older_version_does_not_undo_newer_words(slack: SlackCards, api: Api) -> None:
    """The owner opens Edit, then asks in the thread for a new subject (a new revision), then saves the modal
    with only the time changed: saving the older To/Subject/Body would silently undo their words. Refused."""
    owner = user_id("stale")
    address = f"{owner.lower()}@example.com"
    channel, ts = await slack.dm(owner, f"to: {address}; subject: Draft; body: First")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Not scheduled yet")
    email_id = thread_email_id(TEAM, channel, ts)
    opened = await slack.open_editor(email_id, owner, channel, card, ts)
    before = await api.describe(email_id)

    await slack.dm(owner, "subject: Newer words", thread_ts=ts)
    deadline = time.monotonic() + 30
    while (await api.describe(email_id))["revision"] == before["revision"]:
        assert time.monotonic() < deadline, "the reply never made a new revision"
        await asyncio.sleep(0.2)

    when = datetime.now(UTC) + timedelta(days=1)
    await slack.submit(owner, opened, modal_values(address, "Draft", "First", when))
    shown = await slack.wait_card(channel, card, "changed after you opened the editor")
    view = await api.describe(email_id)
    assert view["subject"] == "Newer words" and view["revision"] == before["revision"] + 1, view
    assert not view["will_send"], "the older version's time was not applied either"
    assert "Newer words" in json.dumps(shown)
    await api.call("POST", f"/api/emails/{email_id}/cancel", {"actor": owner})


async def test_an_edit_opened_before_a_hold_does_not_arm_the_email_again(slack: SlackCards, api: Api) -> None:
    """A hold changes the time, not the words (the revision stays): the modal opened before it, saved as it
    was, would schedule the email again. Its version is older, so it is refused and the email stays on hold."""
    owner = user_id("holdstale")
    address = f"{owner.lower()}@example.com"
    channel, ts = await slack.dm(owner, f"to: {address}; subject: Hold; body: Wait; send tomorrow at 9am")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Scheduled")
    email_id = thread_email_id(TEAM, channel, ts)
    opened = await slack.open_editor(email_id, owner, channel, card, ts)
    scheduled = await api.describe(email_id)

    await slack.dm(owner, "hold it for now", thread_ts=ts)
    held = await api.wait_for(email_id, "waiting")
    assert not held["will_send"] and held["revision"] == scheduled["revision"], "a hold keeps the words"

    when = datetime.fromisoformat(scheduled["send_at"])
    await slack.submit(owner, opened, modal_values(address, "Hold", "Wait", when))
    await slack.wait_card(channel, card, "changed after you opened the editor")
    view = await api.describe(email_id)
    assert not view["will_send"] and view["send_at"] is None, view
    await api.call("POST", f"/api/emails/{email_id}/cancel", {"actor": owner})


# --- App Home -------------------------------------------------------------------------------------------------


async def test_app_home_lists_the_users_emails_and_follows_their_changes(slack: SlackCards, api: Api) -> None:
    owner, stranger = user_id("homer"), user_id("nosy")
    slack.fake.timezones[owner] = "America/New_York"
    later = f"Later {owner}"
    draft = f"Draft {owner}"
    channel, first = await slack.dm(owner, f"to: h@example.com; subject: {later}; body: B; tomorrow at 9am")
    await slack.wait_card(channel, await slack.card(channel, first), "Scheduled")
    _, second = await slack.dm(owner, f"to: h@example.com; subject: {draft}; body: B")
    await slack.wait_card(channel, await slack.card(channel, second), "Not scheduled yet")
    scheduled_id, waiting_id = thread_email_id(TEAM, channel, first), thread_email_id(TEAM, channel, second)

    await slack.open_home(owner)
    opened = await wait_home(
        slack.fake, owner, lambda s: s.get(later) == "Going out" and s.get(draft) == "Waiting for you"
    )
    text = json.dumps(opened.args["view"])
    assert re.search(r"9:00 AM E[SD]T", text) and "(America/New_York)" in text, "times in the user's zone"
    buttons = {b["block_id"]: b["elements"] for b in opened.args["view"]["blocks"] if b["type"] == "actions"}
    going = {e["action_id"]: e for e in buttons[f"home-{scheduled_id}"]}
    assert set(going) == {SEND_NOW_ACTION, CANCEL_ACTION, OPEN_THREAD_ACTION}
    assert going[OPEN_THREAD_ACTION]["url"].endswith(f"/archives/{channel}/p{first.replace('.', '')}")

    published = len(slack.fake.of("views.publish", user_id=owner))
    await slack.home_press(CANCEL_ACTION, waiting_id, owner)  # from the Home tab: no channel, no card
    await wait_home(slack.fake, owner, lambda s: s.get(draft) == "Recently sent or canceled", after=published)
    assert (await api.describe(waiting_id))["status"] == "canceled"

    await slack.home_press(CANCEL_ACTION, scheduled_id, stranger)
    notice = await until(lambda: slack.fake.of("views.publish", user_id=stranger), "the stranger told on their Home")
    assert "only the person who started" in json.dumps(notice[-1].args["view"])
    assert (await api.describe(scheduled_id))["status"] == "scheduled", "a stranger's click changed nothing"

    published = len(slack.fake.of("views.publish", user_id=owner))
    await slack.dm(owner, f"subject: {later} v2", thread_ts=first)
    await wait_home(slack.fake, owner, lambda s: s.get(f"{later} v2") == "Going out", after=published)
    await api.call("POST", f"/api/emails/{scheduled_id}/cancel", {"actor": owner})


# --- the assistant surface ------------------------------------------------------------------------------------


async def test_an_assistant_thread_is_one_email_with_status_and_title_and_dms_still_work(
    slack: SlackCards, api: Api
) -> None:
    user = user_id("ai")
    channel, thread = await slack.start_assistant_thread(user)
    greeting = await until(lambda: slack.fake.of("chat.postMessage", channel=channel, thread_ts=thread), "greeting")
    assert greeting[0].args["text"] == GREETING
    [prompts] = await until(lambda: slack.fake.of("assistant.threads.setSuggestedPrompts", thread_ts=thread), "prompts")
    assert prompts.args["channel_id"] == channel
    assert LISTING_QUESTION in [p["title"] for p in prompts.args["prompts"]] and len(prompts.args["prompts"]) <= 4
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, thread)}")
    assert status == 404, "opening a chat starts no email"

    subject = f"Assisted {user}"
    await slack.say_in_thread(user, channel, thread, f"PONDER; to: ai@example.com; subject: {subject}; body: Hi")
    card = await slack.card(channel, thread)
    await slack.wait_card(channel, card, "Not scheduled yet")

    def settled() -> list[Call]:
        calls = slack.fake.of("assistant.threads.setStatus", channel_id=channel, thread_ts=thread)
        return calls if calls and calls[-1].args["status"] == "" else []

    statuses = [c.args["status"] for c in await until(settled, "the status cleared")]
    assert STATUS_WRITING in statuses, "'is writing' while the model worked"
    assert statuses.index(STATUS_WRITING) < len(statuses) - 1 and statuses[-1] == ""
    titles = await until(lambda: slack.fake.of("assistant.threads.setTitle", thread_ts=thread), "a title")
    assert titles[-1].args["title"] == subject and titles[-1].args["channel_id"] == channel
    view = await api.describe(thread_email_id(TEAM, channel, thread))
    assert view["card"]["assistant"] is True and view["owner"] == user and view["subject"] == subject

    # The plain DM path, beside it: no assistant calls for that thread.
    dm_channel, ts = await slack.dm(user, "to: plain@example.com; subject: Plain; body: Hi")
    await slack.wait_card(dm_channel, await slack.card(dm_channel, ts), "Not scheduled yet")
    assert not slack.fake.of("assistant.threads.setStatus", thread_ts=ts)
    assert not slack.fake.of("assistant.threads.setTitle", thread_ts=ts)

    # "What have I scheduled?" opening a chat is answered from the listing, and starts no email.
    _, asking = await slack.start_assistant_thread(user)
    await slack.say_in_thread(user, channel, asking, LISTING_QUESTION)
    answers = await until(
        lambda: [c for c in slack.fake.of("chat.postMessage", thread_ts=asking) if c.args["text"] != GREETING],
        "the listing",
    )
    assert "Nothing is scheduled" in answers[0].args["text"]
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, asking)}")
    assert status == 404


async def test_app_home_costs_nothing_for_a_user_who_never_opens_it(slack: SlackCards) -> None:
    user = user_id("nohome")
    subject = f"Unwatched {user}"
    channel, ts = await slack.dm(user, f"to: h@example.com; subject: {subject}; body: B; tomorrow at 9am")
    await slack.wait_card(channel, await slack.card(channel, ts), "Scheduled")
    await asyncio.sleep(1.5)  # past the refresher's throttle: a refresh would have been published by now
    assert slack.fake.of("views.publish", user_id=user) == [], "published the Home tab of a user not looking"
    await slack.open_home(user)
    await wait_home(slack.fake, user, lambda s: s.get(subject) == "Going out")
