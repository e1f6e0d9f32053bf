"""The Slack edge, end to end: signed requests to the running app, a fake Slack Web API recording every
call, the real engine, the fake model, and mail through aiosmtpd."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from bot.slack.app import FILES_ONLY, NO_WORDS, SHARED_NOT_READ
from bot.slack.assistant import GREETING
from bot.slack.card import APPLY_EDIT_ACTION
from bot.slack.command import COMMAND_REPEAT_SECONDS, COMMAND_REPEATED
from bot.slack.notes import NO_PROFILE
from bot.slack.threads import command_email_id, command_key, thread_email_id
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import (
    TEAM,
    Call,
    FakeSlack,
    action_body,
    action_payload,
    assistant_root,
    assistant_thread_started,
    command_body,
    edited_event,
    event_body,
    file_object,
    message_event,
    parent_deleted_event,
    sign,
)
from tests.harness import SLACK_SIGNING_SECRET, Api, AppProcess, Slack, SmtpSink, wait_for_mail
from workflows.model import MAX_REQUEST_CHARS

pytestmark = pytest.mark.engine


def user_id(prefix: str) -> str:
    return f"U{prefix.upper()}{time.time_ns() % 10**9}"


def has_buttons(content: dict[str, Any]) -> bool:
    return any(block.get("type") == "actions" for block in content.get("blocks", []))


async def test_dm_becomes_a_thread_a_card_and_one_email(slack: Slack, api: Api, smtp_sink: SmtpSink) -> None:
    user = user_id("ann")
    slack.fake.timezones[user] = "Europe/Berlin"
    channel, ts = await slack.dm(user, "to: bob@example.com; subject: Thanks; body: Thank you, Bob!; send in 3 seconds")
    card = await slack.card(channel, ts)
    scheduled = await slack.wait_card(channel, card, "Scheduled")
    assert "CET" in json.dumps(scheduled) or "CEST" in json.dumps(scheduled), "time shown in the user's zone"
    assert has_buttons(scheduled)
    await wait_for_mail(smtp_sink, "bob@example.com")
    sent = await slack.wait_card(channel, card, "Sent")
    assert not has_buttons(sent)
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert view["status"] == "sent" and view["owner"] == user and view["timezone"] == "Europe/Berlin"
    await asyncio.sleep(1)
    assert len(smtp_sink.to("bob@example.com")) == 1
    assert all(c.args.get("thread_ts") for c in slack.fake.of("chat.postMessage", channel=channel)), "never top level"


async def test_schedule_email_command_acks_then_the_workflow_opens_the_thread(
    slack: Slack, api: Api, smtp_sink: SmtpSink
) -> None:
    user = user_id("cmd")
    body = command_body(
        "to: cara@example.com; subject: Hello; body: Hi Cara; send in 4 seconds", user, slack.fake.response_url(user)
    )
    status, text = await slack.post(body, "application/x-www-form-urlencoded")
    assert status == 200 and json.loads(text)["response_type"] == "ephemeral" and "On it" in text
    # Typed again (its first answer timed out on Slack's side, say): a new invocation, the same email.
    again = command_body(
        "to: cara@example.com; subject: Hello; body: Hi Cara; send in 4 seconds", user, slack.fake.response_url(user)
    )
    assert again != body, "its own trigger_id"
    status, text = await slack.post(again, "application/x-www-form-urlencoded")
    assert status == 200 and json.loads(text) == {"response_type": "ephemeral", "text": COMMAND_REPEATED}
    # The workflow posts the thread's root in the DM (to the user's id), naming the email in its metadata.
    deadline = time.monotonic() + 20
    while not slack.fake.of("chat.postMessage", channel=user) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    [root] = slack.fake.of("chat.postMessage", channel=user)
    assert "cara@example.com" in root.args["text"] and not root.args.get("thread_ts")
    email_id = root.args["metadata"]["event_payload"]["email_id"]
    channel, thread_ts = f"D{user}", slack.fake.answered_ts[slack.fake.calls.index(root)]
    card = await slack.card(channel, thread_ts)
    await slack.wait_card(channel, card, "Scheduled")
    # A reply in that thread reaches the same email.
    await slack.dm(user, "subject: Hello again", thread_ts=thread_ts)
    await slack.wait_card(channel, card, "Hello again")
    [mail] = await wait_for_mail(smtp_sink, "cara@example.com")
    assert mail.message["Subject"] == "Hello again"
    view = await api.describe(email_id)
    assert view["status"] == "sent" and view["owner"] == user
    # The same words once more: not "under way" (it is sent), and no second email.
    once_more = command_body(
        "to: cara@example.com; subject: Hello; body: Hi Cara; send in 4 seconds", user, slack.fake.response_url(user)
    )
    status, text = await slack.post(once_more, "application/x-www-form-urlencoded")
    answer = json.loads(text)["text"]
    assert status == 200 and "already sent" in answer and "did not start another" in answer, answer


async def test_the_same_command_across_a_ten_minute_mark_makes_one_email(slack: Slack, api: Api) -> None:
    """Command ids are per ten-minute window; the same words typed again just after a window's end (the first
    started at 9:59:58, the second at 10:00:03) find the earlier window's email and start no second one."""
    user = user_id("edge")
    text = "to: edge@example.com; subject: Edge; body: Once; send tomorrow at 9am"
    window = int(time.time() // COMMAND_REPEAT_SECONDS)
    earlier = command_email_id(TEAM, command_key(TEAM, user, text, window - 1))
    status, _ = await api.call("POST", f"/api/emails/{earlier}", {"owner": user, "text": text})
    assert status == 201, "the first command's email, as if started just before this window began"
    await api.wait_for(earlier, "scheduled")
    status, answer = await slack.post(
        command_body(text, user, slack.fake.response_url(user)), "application/x-www-form-urlencoded"
    )
    assert status == 200 and json.loads(answer) == {"response_type": "ephemeral", "text": COMMAND_REPEATED}
    current = command_email_id(TEAM, command_key(TEAM, user, text, window))
    status, _ = await api.call("GET", f"/api/emails/{current}")
    assert status == 404, "no second email"
    await api.call("POST", f"/api/emails/{earlier}/cancel", {"actor": user})


async def test_a_command_is_not_lost_when_the_app_dies_right_after_the_ack(
    slack: Slack, app_process: AppProcess, smtp_sink: SmtpSink
) -> None:
    user = user_id("cmdkill")
    body = command_body(
        "to: kai@example.com; subject: Survives; body: After the ack; send in 2 seconds",
        user,
        slack.fake.response_url(user),
    )
    status, _ = await slack.post(body, "application/x-www-form-urlencoded")
    assert status == 200
    app_process.kill()  # before the workflow's first step could run here
    await asyncio.to_thread(app_process.start)
    [mail] = await wait_for_mail(smtp_sink, "kai@example.com", timeout=60)
    assert mail.message["Subject"] == "Survives"


async def test_schedule_email_without_text_answers_with_usage(slack: Slack) -> None:
    user = user_id("empty")
    status, text = await slack.post(
        command_body("  ", user, slack.fake.response_url(user)), "application/x-www-form-urlencoded"
    )
    assert status == 200
    assert "schedule-email" in json.loads(text)["text"]
    assert not slack.fake.of("conversations.open", users=user)


async def test_owner_cancels_with_the_button(slack: Slack, api: Api, smtp_sink: SmtpSink) -> None:
    user = user_id("own")
    channel, ts = await slack.dm(user, "to: dan@example.com; subject: Maybe; body: Perhaps; send in 5 seconds")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Scheduled")
    email_id = thread_email_id(TEAM, channel, ts)
    status, _ = await slack.post(
        action_body("cancel_email", email_id, user, channel, card, ts), "application/x-www-form-urlencoded"
    )
    assert status == 200
    canceled = await slack.wait_card(channel, card, "Canceled")
    assert not has_buttons(canceled)
    await asyncio.sleep(6)
    assert smtp_sink.to("dan@example.com") == []
    assert (await api.describe(email_id))["status"] == "canceled"
    # A click on the stale card answers truthfully.
    await slack.post(
        action_body("cancel_email", email_id, user, channel, card, ts), "application/x-www-form-urlencoded"
    )
    await _wait_ephemeral(slack.fake, user, "already canceled")


async def test_someone_else_cannot_cancel(slack: Slack, smtp_sink: SmtpSink) -> None:
    owner, stranger = user_id("own"), user_id("str")
    channel, ts = await slack.dm(owner, "to: eve@example.com; subject: Mine; body: Mine; send in 4 seconds")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Scheduled")
    email_id = thread_email_id(TEAM, channel, ts)
    await slack.post(
        action_body("cancel_email", email_id, stranger, channel, card, ts), "application/x-www-form-urlencoded"
    )
    await _wait_ephemeral(slack.fake, stranger, "only the person who started")
    [told] = slack.fake.of("chat.postEphemeral", user=stranger)
    assert told.args.get("thread_ts") == ts, "in the card's thread, not the DM's main timeline"
    await wait_for_mail(smtp_sink, "eve@example.com")


async def test_an_edited_message_is_saved_as_a_draft_and_shown(slack: Slack, api: Api) -> None:
    user = user_id("edit")
    channel, ts = await slack.dm(user, "to: fox@example.com; subject: Draft; body: First version")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Waiting for you")
    edited = edited_event(
        user,
        channel,
        ts,
        "to: fox@example.com; subject: Draft; body: Second version, Q&A",
        "to: fox@example.com; subject: Draft; body: First version",
        slack.fake.new_ts(),
    )
    status, _ = await slack.post(event_body(edited, f"Ev{time.time_ns()}"), "application/json")
    assert status == 200
    shown = await slack.wait_card(channel, card, "You edited a message")
    assert "Second version" in json.dumps(shown)
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert view["draft"] == "to: fox@example.com; subject: Draft; body: Second version, Q&A", "decoded"
    assert view["body"] == "First version", "an edit never silently changes the email"

    # "Use my edit": the request goes to the email the button names, even from a payload whose team is not the
    # one the thread's events carry (Enterprise Grid, Slack Connect).
    email_id = thread_email_id(TEAM, channel, ts)
    click = action_payload(APPLY_EDIT_ACTION, email_id, user, channel, card, ts)
    click["team"] = {"id": "E0GRID", "domain": "grid"}
    await slack.interactive(click)
    for _ in range(200):
        view = await api.describe(email_id)
        if view["body"] == "Second version, Q&A" and not view["pending_requests"]:
            break
        await asyncio.sleep(0.1)
    assert view["body"] == "Second version, Q&A", view
    notes = [c.args["text"] for c in slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)]
    assert not [n for n in notes if "don't have an email" in n], notes


async def test_retried_deliveries_of_one_event_make_one_request(
    slack: Slack, api: Api, fake_openai: FakeOpenAI
) -> None:
    user = user_id("dup")
    marker = f"hello from {user}"
    channel, ts = await slack.dm(user, marker, retries=3)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Waiting for you")
    await asyncio.sleep(1)
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == [marker]
    assert len(fake_openai.requests_for(marker)) == 1


async def test_forged_and_stale_requests_are_refused(slack: Slack, api: Api) -> None:
    user = user_id("forge")
    event = {
        "type": "message",
        "channel_type": "im",
        "channel": f"D{user}",
        "user": user,
        "text": "hi",
        "ts": "1.000001",
    }
    body = event_body(event, "EvForged")
    status, _ = await slack.post(body, "application/json", signed=sign("not-the-secret", body))
    assert status == 401
    stale = sign(SLACK_SIGNING_SECRET, body, timestamp=int(time.time()) - 600)
    status, _ = await slack.post(body, "application/json", signed=stale)
    assert status == 401
    status, _ = await slack.post(body, "application/json", signed={})
    assert status == 401
    await asyncio.sleep(1)
    code, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, f'D{user}', '1.000001')}")
    assert code == 404, "a refused request has no effect"


async def test_tomorrow_at_9_in_los_angeles_is_17_utc_and_shown_as_9_am(slack: Slack, api: Api) -> None:
    user = user_id("la")
    slack.fake.timezones[user] = "America/Los_Angeles"
    channel, ts = await slack.dm(user, "to: gil@example.com; subject: Morning; body: Coffee?; tomorrow at 9am")
    card = await slack.card(channel, ts)
    shown = await slack.wait_card(channel, card, "Scheduled")
    la = ZoneInfo("America/Los_Angeles")
    tomorrow = (datetime.now(la) + timedelta(days=1)).date()
    expected = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 0, tzinfo=la).astimezone(UTC)
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert datetime.fromisoformat(view["send_at"]) == expected
    assert expected.hour in (16, 17), "UTC-8 in winter, UTC-7 in summer"
    assert "9:00 AM" in json.dumps(shown)
    await api.call("POST", f"/api/emails/{thread_email_id(TEAM, channel, ts)}/cancel")


async def test_card_updates_survive_slack_rate_limits(slack: Slack) -> None:
    user = user_id("rl")
    channel, ts = await slack.dm(user, "to: hana@example.com; subject: Busy; body: Slack is busy")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Waiting for you")
    limited = f"chat.update:{card}"  # this card's updates only: other emails' cards may update meanwhile
    before = len(slack.fake.of("chat.update", ts=card))
    slack.fake.rate_limit_next[limited] = 3
    try:
        await slack.dm(user, "subject: Still busy", thread_ts=ts)
        await slack.wait_card(channel, card, "Still busy", timeout=60)  # an update Slack took, not a 429
        assert slack.fake.rate_limit_next[limited] == 0, "the card got through three 429s"
        since = slack.fake.of("chat.update", ts=card)[before:]
        assert [c.answer for c in since[:3]] == ["ratelimited"] * 3 and since[-1].ok, [c.answer for c in since]
    finally:
        slack.fake.rate_limit_next.pop(limited, None)


async def test_the_bots_own_messages_are_ignored(slack: Slack) -> None:
    channel, ts = f"DUBOTSELF{time.time_ns() % 10**6}", slack.fake.new_ts()
    before = len(slack.fake.calls)
    own = {
        "type": "message",
        "channel_type": "im",
        "channel": channel,
        "user": "UBOT",
        "bot_id": "B0BOT",
        "text": "card",
        "ts": ts,
    }
    status, _ = await slack.post(event_body(own, f"Ev{time.time_ns()}"), "application/json")
    assert status == 200
    await asyncio.sleep(1)
    # Other tests' emails may still be changing (cards, Home tabs): only calls about this message count.
    about = [c for c in slack.fake.calls[before:] if channel in json.dumps(c.args) or "UBOT" in json.dumps(c.args)]
    assert about == []


async def _wait_ephemeral(fake: FakeSlack, user: str, text: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in str(c.args.get("text")) for c in fake.of("chat.postEphemeral", user=user)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no ephemeral {text!r} for {user}: {[c.args for c in fake.of('chat.postEphemeral')]}")


async def test_a_replayed_request_is_refused(slack: Slack, api: Api) -> None:
    user = user_id("replay")
    ts = slack.fake.new_ts()
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": "hello", "ts": ts}
    body = event_body(event, f"Ev{time.time_ns()}")
    captured = sign(SLACK_SIGNING_SECRET, body)
    first, _ = await slack.post(body, "application/json", signed=captured)
    again, answer = await slack.post(body, "application/json", signed=captured)
    assert (first, again) == (200, 401), answer
    view = await api.wait_for(thread_email_id(TEAM, f"D{user}", ts), "waiting")
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == ["hello"]


async def test_app_home_shows_how_to_use_the_bot(slack: Slack) -> None:
    user = user_id("home")
    event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"}
    status, _ = await slack.post(event_body(event, f"Ev{time.time_ns()}"), "application/json")
    assert status == 200
    [published] = slack.fake.of("views.publish", user_id=user)
    assert published.args["view"]["type"] == "home"
    assert "/schedule-email" in json.dumps(published.args["view"])


async def test_slack_rate_limits_on_the_request_path_are_waited_out(slack: Slack, api: Api) -> None:
    user = user_id("rl429")
    slack.fake.rate_limit_next["users.info"] = 1
    slack.fake.timezones[user] = "Asia/Tokyo"
    channel, ts = await slack.dm(user, "hello")
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
    assert view["timezone"] == "Asia/Tokyo", "the 429 was retried after Retry-After, not given up on"


async def test_a_long_slack_rate_limit_is_not_waited_out_past_slacks_3_s_and_the_redelivery_takes_it(
    slack: Slack, api: Api
) -> None:
    """Retry-After: 30 on users.info: waiting would answer Slack long after its 3 s (it then delivers the event
    again while still rate-limited). The first delivery fails at once, without a second call; Slack's
    re-delivery, once the limit is over, starts the email."""
    user = user_id("rl30")
    slack.fake.timezones[user] = "Asia/Tokyo"
    slack.fake.rate_limit_next["users.info"] = 1
    slack.fake.retry_after = 30
    try:
        channel, ts = f"D{user}", slack.fake.new_ts()
        body = event_body(message_event(user, ts, "hello"), f"Ev{ts.replace('.', '')}")
        assert await slack.deliver(body, retry=0) != 200, "not taken: Slack must deliver it again"
        assert len(slack.fake.of("users.info", user=user)) == 1, "the 30 s wait was not waited out"
    finally:
        slack.fake.retry_after = 1
        slack.fake.rate_limit_next.pop("users.info", None)
    assert await slack.deliver(body, retry=1) == 200
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
    assert view["timezone"] == "Asia/Tokyo"


async def test_a_note_is_posted_once_when_slack_delivers_the_message_again(slack: Slack) -> None:
    """Slack re-delivers a message whose answer it did not get in time (the note had gone out): the
    re-deliveries find the note in the thread by its metadata and do not post it again."""
    user = user_id("renote")
    channel, root, ts = f"D{user}", slack.fake.new_ts(), slack.fake.new_ts()
    first = event_body(message_event(user, ts, "subject: Hello", thread_ts=root), event_id=f"Ev{ts.replace('.', '')}")
    later = event_body(message_event(user, slack.fake.new_ts(), "again", thread_ts=root), event_id="EvLater1")

    def notes() -> list[Call]:
        return [c for c in slack.fake.of("chat.postMessage", channel=channel) if c.args.get("thread_ts") == root]

    assert await slack.deliver(first, retry=0) == 200
    [note] = notes()
    assert "don't have an email for this thread" in note.args["text"]
    metadata = json.loads(note.args["metadata"]) if isinstance(note.args["metadata"], str) else note.args["metadata"]
    assert metadata == {"event_type": "email_agent_note", "event_payload": {"answering": ts}}
    for retry in (1, 2):
        assert await slack.deliver(first, retry=retry) == 200
    assert len(notes()) == 1, "answered once, however often Slack delivers it"
    assert await slack.deliver(later, retry=0) == 200
    assert len(notes()) == 2, "another message in the thread gets its own answer"


async def test_without_the_users_zone_no_email_starts_and_slacks_redelivery_starts_it(slack: Slack, api: Api) -> None:
    """users.info failing for a user never seen: starting in UTC would send "tomorrow at 9am" at the wrong hour
    for good. The event is not acked (Slack delivers it again), and the next delivery starts it in their zone."""
    user = user_id("nozone")
    slack.fake.timezones[user] = "America/Los_Angeles"
    slack.fake.rate_limit_next["users.info"] = 3  # the call and the client's two retries after Retry-After
    channel, ts = f"D{user}", slack.fake.new_ts()
    body = event_body(message_event(user, ts, "hello"), event_id=f"Ev{ts.replace('.', '')}")
    email_id = thread_email_id(TEAM, channel, ts)
    assert await slack.deliver(body, retry=0) == 500
    status, _ = await api.call("GET", f"/api/emails/{email_id}")
    assert status == 404, "nothing started in a guessed zone"
    assert await slack.deliver(body, retry=1) == 200
    view = await api.wait_for(email_id, "waiting")
    assert view["timezone"] == "America/Los_Angeles"
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == ["hello"]


async def test_on_slacks_last_delivery_without_the_users_zone_the_user_is_told(slack: Slack, api: Api) -> None:
    user = user_id("nozone3")
    slack.fake.rate_limit_next["users.info"] = 3
    channel, ts = f"D{user}", slack.fake.new_ts()
    body = event_body(message_event(user, ts, "hello"), event_id=f"Ev{ts.replace('.', '')}")
    assert await slack.deliver(body, retry=3) == 200
    [said] = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    assert said.args["text"] == NO_PROFILE
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, ts)}")
    assert status == 404


async def test_a_chats_first_message_waits_for_slack_when_its_thread_cannot_be_looked_up(
    slack: Slack, api: Api
) -> None:
    """conversations.replies failing on an assistant chat's first message: not answered "no email here" and
    dropped, but left unacked; Slack's next delivery starts the email."""
    user = user_id("noroot")
    channel, thread = await slack.start_assistant_thread(user)
    slack.fake.rate_limit_next["conversations.replies"] = 3
    ts = slack.fake.new_ts()
    event = message_event(user, ts, "to: root@example.com; subject: Rooted; body: Hi", thread_ts=thread)
    body = event_body(event, event_id=f"Ev{ts.replace('.', '')}")
    assert await slack.deliver(body, retry=0) == 500
    said = [c.args["text"] for c in slack.fake.of("chat.postMessage", channel=channel, thread_ts=thread)]
    assert not [text for text in said if "don't have an email" in text], said
    assert await slack.deliver(body, retry=1) == 200
    view = await api.wait_for(thread_email_id(TEAM, channel, thread), "waiting")
    assert view["card"]["assistant"] is True and view["subject"] == "Rooted"


async def test_a_slash_command_without_the_users_zone_says_so_and_starts_nothing(slack: Slack) -> None:
    user = user_id("cmdzone")
    slack.fake.rate_limit_next["users.info"] = 3
    body = command_body("to: z@example.com; subject: Z; body: Z; tomorrow at 9am", user, slack.fake.response_url(user))
    status, text = await slack.post(body, "application/x-www-form-urlencoded")
    assert status == 200 and json.loads(text) == {"response_type": "ephemeral", "text": NO_PROFILE}
    await asyncio.sleep(2)
    assert slack.fake.of("chat.postMessage", channel=user) == [], "no thread opened: nothing was started"


# --- Slack's encoding and message subtypes (issue 9, item 5) ------------------------------------------


async def test_what_the_user_typed_is_what_the_email_says(slack: Slack, smtp_sink: SmtpSink) -> None:
    """Typed in Slack, sent by Slack as 'Q&amp;A', '<mailto:…|…>' and '<https://…>': the email has the words."""
    user = user_id("typed")
    typed = "to: qa@example.com; subject: Q&A <notes>; body: Q&A for <team> & friends: https://x.io/a?b=1&c=2"
    await slack.dm(user, f"{typed}; send in 2 seconds")
    [mail] = await wait_for_mail(smtp_sink, "qa@example.com")
    assert mail.message["Subject"] == "Q&A <notes>"
    assert SmtpSink.text_of(mail) == "Q&A for <team> & friends: https://x.io/a?b=1&c=2"
    assert mail.rcpt_tos == ["qa@example.com"], "the mailto token became the recipient"


async def test_a_long_body_full_of_ampersands_shows_on_the_card_cut_whole_and_goes_out_whole(
    slack: Slack, smtp_sink: SmtpSink
) -> None:
    """Escaping makes "&" five characters: a card cut before escaping passed Slack's 3,000 and every update of
    it was refused (the fake refuses as Slack does). The card shows the start; the email carries it all."""
    user = user_id("amps")
    body = "Q&A <agenda> & notes. " * 130  # 2,860 characters typed; over 5,000 once escaped
    channel, ts = await slack.dm(user, f"to: amps@example.com; subject: Q&A <notes>; body: {body.strip()}")
    card_ts = await slack.card(channel, ts)
    shown = await slack.wait_card(channel, card_ts, "Waiting for you")
    [section] = [b for b in shown["blocks"] if b.get("text", {}).get("text", "").startswith(">Q&amp;A")]
    text = section["text"]["text"]
    assert len(text) <= 3000 and text.endswith("…") and text.startswith(">Q&amp;A &lt;agenda&gt; &amp; notes.")
    tail = text[: -len("…")]
    assert ";" in tail[tail.rfind("&") :], "never cut inside an entity"
    await slack.dm(user, "send in 1 seconds", thread_ts=ts)
    [mail] = await wait_for_mail(smtp_sink, "amps@example.com")
    assert SmtpSink.text_of(mail) == body.strip(), "the email is whole"


async def test_mentions_channels_and_labelled_links_reach_the_model_as_words(
    slack: Slack, api: Api, fake_openai: FakeOpenAI
) -> None:
    user, ana = user_id("ment"), user_id("ana")
    slack.fake.names[ana] = "Ana López"
    encoded = f"note: thank <@{ana}> for the <https://x.io/deck|deck> in <#C024BE7LR|general> <!here>"
    channel, ts = await slack.dm(user, encoded, encoded=True)
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
    said = "note: thank @Ana López for the deck (https://x.io/deck) in #general @here"
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == [said]
    [request] = fake_openai.requests_for(said)
    assert not any("<@" in str(m["content"]) for m in request["messages"])


async def test_a_message_with_a_file_is_taken_for_its_words_and_the_user_is_told(
    slack: Slack, smtp_sink: SmtpSink
) -> None:
    user = user_id("file")
    channel, ts = await slack.dm(
        user,
        "to: fil@example.com; subject: Agenda; body: See you there; send in 2 seconds",
        subtype="file_share",
        files=[file_object("agenda.pdf", user)],
        retries=2,
    )
    [mail] = await wait_for_mail(smtp_sink, "fil@example.com")
    assert SmtpSink.text_of(mail) == "See you there"
    assert not mail.message.is_multipart(), "no attachment"
    posts = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    notes = [c for c in posts if "agenda.pdf" in c.args["text"]]
    assert len(notes) == 1, "told once, not again on Slack's retry"
    assert "not added to the email" in notes[0].args["text"]


async def test_a_file_without_words_gets_an_answer_and_starts_nothing(slack: Slack, api: Api) -> None:
    user = user_id("fileonly")
    channel, ts = await slack.dm(user, "", subtype="file_share", files=[file_object("photo.png", user, "image/png")])
    [note] = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    assert note.args["text"] == FILES_ONLY
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, ts)}")
    assert status == 404


async def test_a_forwarded_message_without_words_of_its_own_gets_an_answer(slack: Slack, api: Api) -> None:
    """A message shared into the DM: its text is empty and its content sits in `attachments` (Slack's shape
    for a shared message). Not silence: the user is told to paste the words."""
    user = user_id("fwd")
    channel, ts = f"D{user}", slack.fake.new_ts()
    event = message_event(user, ts, "")
    event["attachments"] = [
        {
            "is_share": True,
            "is_msg_unfurl": True,
            "text": "Lunch on Friday?",
            "author_id": "U0OTHER",
            "channel_id": "C0GENERAL",
            "ts": "1795000000.000100",
            "fallback": "[November 25th, 2026 9:00 AM] other: Lunch on Friday?",
        }
    ]
    status, _ = await slack.post(event_body(event, f"Ev{ts.replace('.', '')}"), "application/json")
    assert status == 200
    [note] = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    assert note.args["text"] == NO_WORDS
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, ts)}")
    assert status == 404


async def test_a_forwarded_message_with_a_comment_is_taken_for_the_comment_and_the_user_is_told(
    slack: Slack, api: Api, fake_openai: FakeOpenAI
) -> None:
    """ "Reply to this for me" above a forwarded message: the comment is the request; the forwarded words are
    not read (they are in `attachments`), and the user is told so rather than getting an email without them."""
    user = user_id("fwdc")
    channel, ts = f"D{user}", slack.fake.new_ts()
    comment = "note: reply to this for me"
    event = message_event(user, ts, comment)
    event["attachments"] = [{"is_share": True, "text": "Lunch on Friday?", "fallback": "other: Lunch on Friday?"}]
    slack.fake.keep(channel, event)
    status, _ = await slack.post(event_body(event, f"Ev{ts.replace('.', '')}"), "application/json")
    assert status == 200
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == [comment]
    notes = [c.args["text"] for c in slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)]
    assert notes.count(SHARED_NOT_READ) == 1, notes


async def test_a_message_that_started_nothing_starts_the_email_once_the_user_edits_it(
    slack: Slack, api: Api, smtp_sink: SmtpSink
) -> None:
    """Too long, the user was told; they edit it shorter (Slack sends message_changed): that is their
    message now, and it starts the email, instead of the edit vanishing without a word."""
    user = user_id("edfix")
    channel, ts = await slack.dm(user, "x" * (MAX_REQUEST_CHARS + 1))
    [note] = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    assert "characters long" in note.args["text"]
    shorter = "to: edfix@example.com; subject: Fixed; body: Shorter now; send in 1 seconds"
    edited = edited_event(user, channel, ts, shorter, "x" * (MAX_REQUEST_CHARS + 1), slack.fake.new_ts())
    status, _ = await slack.post(event_body(edited, f"Ev{time.time_ns()}"), "application/json")
    assert status == 200
    [mail] = await wait_for_mail(smtp_sink, "edfix@example.com")
    assert mail.message["Subject"] == "Fixed"
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == [shorter]


async def test_an_older_edit_delivered_after_a_newer_one_does_not_replace_it(slack: Slack, api: Api) -> None:
    """Two quick edits, A then B: Slack re-delivers A (its first delivery timed out) after B was saved, or the
    two calls cross. The draft keeps B, the words the user left the message with (edited.ts orders them)."""
    user = user_id("edorder")
    first = "to: ord@example.com; subject: Order; body: Original"
    channel, ts = await slack.dm(user, first)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Waiting for you")
    older_ts, newer_ts = slack.fake.new_ts(), slack.fake.new_ts()
    older = edited_event(user, channel, ts, "body: Edit A", first, older_ts)
    newer = edited_event(user, channel, ts, "body: Edit B", "body: Edit A", newer_ts)
    for event in (newer, older):
        status, _ = await slack.post(event_body(event, f"Ev{time.time_ns()}"), "application/json")
        assert status == 200
    await slack.wait_card(channel, card, "Edit B")
    await asyncio.sleep(1)
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert view["draft"] == "body: Edit B", view["draft"]
    assert "Edit A" not in json.dumps(slack.card_states(channel, card)[-1].args), "the card shows the newer words"


async def test_deleting_a_message_that_has_replies_starts_nothing_and_changes_nothing(slack: Slack, api: Api) -> None:
    """Slack marks a deleted message that has replies with a tombstone (a message_changed from USLACKBOT,
    "This message was deleted."): before, it was taken as the user's edit, and a message that had started
    nothing started an email owned by Slackbot, whose card refused every click of the user's."""
    user = user_id("tomb")
    long_text = "x" * (MAX_REQUEST_CHARS + 1)
    channel, ts = await slack.dm(user, long_text)  # too long: a note in its thread, no email
    event = parent_deleted_event(user, channel, ts, long_text, slack.fake.new_ts())
    status, _ = await slack.post(event_body(event, f"Ev{time.time_ns()}"), "application/json")
    assert status == 200
    await asyncio.sleep(1)
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, ts)}")
    assert status == 404, "nothing started"

    words = "to: tomb@example.com; subject: Kept; body: Still here"
    channel, ts = await slack.dm(user, words)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Kept")
    event = parent_deleted_event(user, channel, ts, words, slack.fake.new_ts())
    status, _ = await slack.post(event_body(event, f"Ev{time.time_ns()}"), "application/json")
    assert status == 200
    await asyncio.sleep(1)
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert (view["draft"], view["owner"], view["body"]) == ("", user, "Still here"), view
    notes = [c.args["text"] for c in slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)]
    assert not [n for n in notes if "deleted" in n.lower()], notes


async def test_a_thread_reply_also_sent_to_the_conversation_is_taken(slack: Slack) -> None:
    user = user_id("bcast")
    channel, ts = await slack.dm(user, "to: bro@example.com; subject: Before; body: Hello")
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Before")
    await slack.dm(user, "subject: Broadcast & after", thread_ts=ts, subtype="thread_broadcast")
    shown = await slack.wait_card(channel, card, "Broadcast")
    assert "Broadcast &amp; after" in json.dumps(shown, ensure_ascii=False), "escaped again on the card"


async def test_slash_command_text_is_decoded(slack: Slack, smtp_sink: SmtpSink) -> None:
    """With should_escape false Slack still sends &, < and > as entities."""
    user = user_id("cmdamp")
    text = "to: rnd@example.com; subject: R&amp;D &lt;weekly&gt;; body: Hi; send in 2 seconds"
    status, _ = await slack.post(
        command_body(text, user, slack.fake.response_url(user)), "application/x-www-form-urlencoded"
    )
    assert status == 200
    [mail] = await wait_for_mail(smtp_sink, "rnd@example.com")
    assert mail.message["Subject"] == "R&D <weekly>"


async def test_on_slacks_last_delivery_with_slack_out_of_reach_the_user_is_told(slack: Slack, api: Api) -> None:
    """users.info gets no answer at all (connections dropped: slack_sdk raises aiohttp's error, not Slack's):
    the same as an error answer, left unacked until Slack's last delivery, which says so."""
    user = user_id("dropped")
    slack.fake.drop_next["users.info"] = 100  # every try, the client's own retries included
    channel, ts = f"D{user}", slack.fake.new_ts()
    body = event_body(message_event(user, ts, "hello"), event_id=f"Ev{ts.replace('.', '')}")
    try:
        assert await slack.deliver(body, retry=3) == 200
        assert slack.fake.drop_next["users.info"] < 100, "users.info was called, and got no answer"
    finally:
        slack.fake.drop_next.pop("users.info", None)
    [said] = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    assert said.args["text"] == NO_PROFILE
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, ts)}")
    assert status == 404


async def test_a_message_longer_than_the_assistant_reads_is_answered_and_starts_nothing(slack: Slack, api: Api) -> None:
    """Slack allows about 40,000 characters; the assistant reads up to 8,000 per message. The user is told
    (once), instead of the message failing on every delivery and being dropped."""
    user = user_id("long")
    text = "to: long@example.com; subject: Long; body: " + "words " * 1_600
    channel, ts = await slack.dm(user, text)
    [note] = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    assert f"{len(text.strip()):,} characters" in note.args["text"] and "8,000" in note.args["text"], note.args
    status, _ = await api.call("GET", f"/api/emails/{thread_email_id(TEAM, channel, ts)}")
    assert status == 404


async def test_the_shorter_message_sent_again_in_the_notes_thread_starts_the_email_there(
    slack: Slack, api: Api
) -> None:
    """Told "please send a shorter one" in the thread of their own message, a user answers in that thread:
    that starts the email there (the thread is theirs), not "I don't have an email for this thread"."""
    user = user_id("again")
    channel, ts = await slack.dm(user, "to: again@example.com; subject: Again; body: " + "words " * 1_600)
    [note] = slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
    assert "8,000" in note.args["text"]
    await slack.dm(user, "to: again@example.com; subject: Again; body: Shorter", thread_ts=ts)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Not scheduled yet")
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert view["subject"] == "Again" and view["owner"] == user
    assert not [
        c
        for c in slack.fake.of("chat.postMessage", channel=channel, thread_ts=ts)
        if "don't have an email" in c.args["text"]
    ]


async def test_a_click_carrying_a_large_message_is_taken(slack: Slack, api: Api) -> None:
    """Slack's interactive payloads carry the whole message or view they came from (a card with a long
    body, a full App Home): more than an API body may be (64 KiB), and still Slack's to send."""
    user = user_id("bigclick")
    channel, ts = await slack.dm(user, "to: big@example.com; subject: Big; body: Hi; tomorrow at 9am")
    email_id = thread_email_id(TEAM, channel, ts)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Big")
    payload = action_payload("cancel_email", email_id, user, channel, card, ts)
    long_body = "Lorem ipsum dolor sit amet. " * 3_000  # about 84 KB of the card's text, as Slack sends it back
    payload["message"]["blocks"] = [{"type": "section", "text": {"type": "mrkdwn", "text": long_body}}]
    body = urlencode({"payload": json.dumps(payload)})
    assert len(body) > 64 * 1024
    status, _ = await slack.post(body, "application/x-www-form-urlencoded")
    assert status == 200
    view = await api.wait_for(email_id, "canceled")
    assert view["status"] == "canceled"


async def test_a_body_that_is_not_utf8_is_a_bad_request(slack: Slack) -> None:
    async with slack.session.post(
        slack.url, data=b'{"type": "event_callback", "x": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400, await response.text()


async def test_a_body_that_is_not_json_is_refused_without_a_500(slack: Slack) -> None:
    """Anyone can POST to the events URL: an unsigned body that does not parse is 401, not a logged crash; a
    signed one (Slack never sends it) is 400."""
    log = slack.app.log_path
    written_before = log.stat().st_size
    for body, content_type in (
        ("{", "application/json"),
        ("payload=%7B", "application/x-www-form-urlencoded"),
        ("[]", "application/json"),
        ("payload=1", "application/x-www-form-urlencoded"),
    ):
        async with slack.session.post(slack.url, data=body, headers={"Content-Type": content_type}) as response:
            assert response.status == 401, (body, response.status, await response.text())
        status, text = await slack.post(body, content_type)
        assert status == 400, (body, status, text)
    written = log.read_bytes()[written_before:].decode(errors="replace")  # this test's lines (others log too)
    assert "JSONDecodeError" not in written and "/slack/events" not in written, written


async def test_a_replay_sent_while_the_original_is_being_handled_is_refused(slack: Slack, api: Api) -> None:
    """The original's handling is held (its users.info call waits); the same signed request arrives again
    meanwhile: refused at once, and the original goes on to start its email, once."""
    user = user_id("replayheld")
    channel, ts = f"D{user}", slack.fake.new_ts()
    body = event_body(message_event(user, ts, "to: rh@example.com; subject: Held; body: Hi"), f"Ev{ts}")
    signed = sign(SLACK_SIGNING_SECRET, body)
    release = threading.Event()
    slack.fake.held.clear()
    slack.fake.hold["users.info"] = release
    try:
        original = asyncio.create_task(slack.post(body, "application/json", signed=signed))
        assert await asyncio.to_thread(slack.fake.held.wait, 10), "the original never reached users.info"
        status, text = await slack.post(body, "application/json", signed=signed)
        assert status == 401 and "replayed" in text, (status, text)
    finally:
        release.set()
        slack.fake.hold.pop("users.info", None)
    status, _ = await original
    assert status == 200
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "waiting")
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == [
        "to: rh@example.com; subject: Held; body: Hi"
    ]


async def test_an_assistant_chat_delivered_again_is_greeted_once(slack: Slack) -> None:
    """The first delivery greeted, and its ack was lost (past Slack's 3 s, a dropped connection): Slack sends
    assistant_thread_started again with x-slack-retry-num, and the greeting already in the thread is found."""
    user = user_id("greet")
    channel, thread_ts = f"D{user}", slack.fake.new_ts()
    slack.fake.messages[(channel, thread_ts)] = assistant_root(user, thread_ts)
    body = event_body(assistant_thread_started(user, channel, thread_ts), f"Ev{time.time_ns()}")
    assert await slack.deliver(body, retry=0) == 200
    assert await slack.deliver(body, retry=1) == 200
    greetings = slack.fake.of("chat.postMessage", channel=channel, thread_ts=thread_ts)
    assert [c.args["text"] for c in greetings] == [GREETING], "greeted once"
    assert len(slack.fake.of("assistant.threads.setSuggestedPrompts", thread_ts=thread_ts)) == 2, "set again: harmless"
