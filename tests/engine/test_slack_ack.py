"""Slack's answer within its 3 s while the workflow is busy, through the real engine.

A hand-off to a running email is a Temporal update, answered when the workflow task that takes it ends; with
local activities that task may be running the model for seconds. The app answers Slack after SLACK_ACK_SECONDS
anyway (bot/slack/ack_budget.py). Held on purpose here: the fake model takes 6 s over one message (less than
the 7 s after which iWF would make the call a normal activity and end the task), and a click or a reply
arrives meanwhile. A click is answered early; a message is not (Slack sends it again if unanswered).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, NamedTuple

import aiohttp
import pytest

from bot.slack.card import CANCEL_ACTION, EDIT_ACTION, SEND_NOW_ACTION
from bot.slack.command import COMMAND_REPEATED
from bot.slack.controls import BUSY_EDITING, BUSY_SAVING
from bot.slack.modal import BODY, SEND_AT, SUBJECT, TO, Opened
from bot.slack.threads import thread_email_id
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM, FakeSlack, action_body, command_body, event_body, message_event
from tests.harness import Api, AppProcess, Slack, variant_of, wait_home

pytestmark = pytest.mark.engine

SLOW_MODEL_SECONDS = 6.0


@pytest.fixture(scope="module")
def patient_app(app_process: AppProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """An app that waits for a slow model (20 s) and answers Slack after at most half a second."""
    app = variant_of(
        app_process, tmp_path_factory.mktemp("ack-budget"), OPENAI_TIMEOUT_SECONDS="20", SLACK_ACK_SECONDS="0.5"
    )
    app.start()
    yield app
    app.stop()


@pytest.fixture
async def patient(patient_app: AppProcess, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> AsyncIterator[Slack]:
    fake_openai.slow_seconds = SLOW_MODEL_SECONDS
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            yield Slack(session, patient_app, fake_slack)
    finally:
        fake_openai.slow_seconds = 5.0


@pytest.fixture
async def patient_api(patient_app: AppProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield Api(session, patient_app.base_url)


def _user(prefix: str) -> str:
    return f"U{prefix.upper()}{time.time_ns() % 10**9}"


async def _status_or_error(delivery: asyncio.Future[int]) -> int | BaseException:
    [outcome] = await asyncio.gather(delivery, return_exceptions=True)
    return outcome


class Busy(NamedTuple):
    channel: str
    thread_ts: str
    card: str
    answered: int  # completions the model had answered before the slow one
    slow_body: str  # the slow reply's event, for a re-delivery
    slow_delivery: asyncio.Future[int]  # its first delivery, answered once the model is done with it


async def _while_the_model_thinks(
    slack: Slack,
    fake_openai: FakeOpenAI,
    user: str,
    first: Callable[[str, str, str], Awaitable[Any]] | None = None,
    text: str = "to: held@example.com; subject: Held; body: Hello; send tomorrow at 9am",
) -> Busy:
    """A scheduled email, then a reply the model takes SLOW_MODEL_SECONDS over; returns once the model has it
    (the workflow task that took the reply is then running the model, so its own answer to Slack waits).
    `first(channel, thread_ts, card_ts)` runs before that reply."""
    channel, ts = await slack.dm(user, text)
    card = await slack.card(channel, ts)
    await slack.wait_card(channel, card, "Scheduled")
    if first is not None:
        await first(channel, ts, card)
    marker = f"SLOW {user}"
    answered = fake_openai.answered
    reply_ts = slack.fake.new_ts()
    body = event_body(message_event(user, reply_ts, f"{marker} please make it warmer", thread_ts=ts), f"Ev{reply_ts}")
    delivery = asyncio.ensure_future(slack.deliver(body, retry=0))
    deadline = time.monotonic() + 20
    while not fake_openai.requests_for(marker):
        assert time.monotonic() < deadline, "the slow reply never reached the model"
        await asyncio.sleep(0.05)
    return Busy(channel, ts, card, answered, body, delivery)


async def test_a_click_while_the_model_thinks_is_answered_in_time_and_takes_effect(
    patient: Slack, patient_api: Api, fake_openai: FakeOpenAI
) -> None:
    user = _user("ackclick")
    busy = await _while_the_model_thinks(patient, fake_openai, user)
    email_id = thread_email_id(TEAM, busy.channel, busy.thread_ts)
    click = action_body("cancel_email", email_id, user, busy.channel, busy.card, busy.thread_ts)
    status, _ = await patient.post(click, "application/x-www-form-urlencoded")
    assert status == 200
    assert fake_openai.answered == busy.answered, "Slack got its answer to the click only once the model had answered"
    assert await _status_or_error(busy.slow_delivery) == 200
    view = await patient_api.wait_for(email_id, "canceled", timeout=40)
    assert view["status"] == "canceled" and view["pending_requests"] == 0


async def test_a_reply_is_answered_only_once_taken_so_a_crash_meanwhile_loses_nothing(
    patient: Slack, patient_api: Api, patient_app: AppProcess, fake_openai: FakeOpenAI
) -> None:
    """A reply arrives while the workflow task runs the model: its hand-off (a Temporal update) waits on that
    task, and the app is killed meanwhile. An update not yet taken is dropped with the app's connection, so
    the reply must not have been answered: Slack then delivers it again, and it is taken, once."""
    user = _user("ackkill")
    busy = await _while_the_model_thinks(patient, fake_openai, user)
    late_ts = patient.fake.new_ts()
    late = event_body(message_event(user, late_ts, "and sign it Ana", thread_ts=busy.thread_ts), f"Ev{late_ts}")
    delivery = asyncio.ensure_future(patient.deliver(late, retry=0))
    await asyncio.sleep(1.0)
    assert not delivery.done(), "the reply was answered before the engine took it"
    patient_app.kill()
    assert await _status_or_error(delivery) != 200
    assert await _status_or_error(busy.slow_delivery) != 200
    await asyncio.to_thread(patient_app.start)
    # Slack's re-deliveries of both unanswered messages (the slow one was taken before the kill: a duplicate).
    assert await patient.deliver(busy.slow_body, retry=1) == 200
    assert await patient.deliver(late, retry=1) == 200
    email_id = thread_email_id(TEAM, busy.channel, busy.thread_ts)
    wanted = {f"{busy.channel}:{late_ts}", f"{busy.channel}:{_ts_of(busy.slow_body)}"}
    deadline = time.monotonic() + 60
    while True:
        view = await patient_api.describe(email_id)
        ids = [turn.get("message_id") for turn in view["conversation"]]
        if wanted <= set(ids) and not view["pending_requests"]:
            break
        assert time.monotonic() < deadline, f"a reply was lost: {view}"
        await asyncio.sleep(0.3)
    assert all(ids.count(wanted_id) == 1 for wanted_id in wanted), view["conversation"]


def _ts_of(event_json: str) -> str:
    return str(json.loads(event_json)["event"]["ts"])


async def test_a_repeated_command_is_answered_in_time_while_the_first_is_with_the_model(
    patient: Slack, fake_openai: FakeOpenAI
) -> None:
    """The same /schedule-email again while its email's workflow task runs the model: the answer may not wait for
    that task (a describe is a Temporal query, held until the task ends), or Slack shows the user a timeout."""
    user = _user("ackcmd")
    text = f"to: cmd@example.com; subject: Twice; body: SLOW {user}; send tomorrow at 9am"
    status, answer = await patient.post(
        command_body(text, user, patient.fake.response_url(user)), "application/x-www-form-urlencoded"
    )
    assert status == 200 and "On it" in answer
    deadline = time.monotonic() + 20
    while not fake_openai.requests_for(f"SLOW {user}"):
        assert time.monotonic() < deadline, "the command never reached the model"
        await asyncio.sleep(0.05)
    answered = fake_openai.answered
    status, again = await patient.post(
        command_body(text, user, patient.fake.response_url(user)), "application/x-www-form-urlencoded"
    )
    assert status == 200 and json.loads(again)["text"] == COMMAND_REPEATED
    assert fake_openai.answered == answered, "the repeat was answered only once the model had answered"


async def test_a_modal_refusal_that_comes_after_slacks_answer_is_said_beside_the_card(
    patient: Slack, patient_api: Api, fake_openai: FakeOpenAI
) -> None:
    """The edit is saved while the model holds the workflow task, behind a Cancel: the modal closes within the
    budget, and the refusal that comes later ("already canceled") is said in the card's thread, where the
    user is looking, not only on the Home tab."""
    user = _user("acklate")
    modals: list[dict[str, Any]] = []

    async def open_the_editor(channel: str, thread_ts: str, card: str) -> None:
        """Before the model is busy: a describe (a query) waits for a running workflow task to end."""
        email_id = thread_email_id(TEAM, channel, thread_ts)
        modals.append(await patient.open_editor(email_id, user, channel, card, thread_ts))

    busy = await _while_the_model_thinks(patient, fake_openai, user, first=open_the_editor)
    email_id = thread_email_id(TEAM, busy.channel, busy.thread_ts)
    [opened] = modals
    cancel = action_body("cancel_email", email_id, user, busy.channel, busy.card, busy.thread_ts)
    status, _ = await patient.post(cancel, "application/x-www-form-urlencoded")
    assert status == 200
    values = {
        TO: {"value": {"type": "plain_text_input", "value": "held@example.com"}},
        SUBJECT: {"value": {"type": "plain_text_input", "value": "Too late"}},
        BODY: {"value": {"type": "plain_text_input", "value": "Hello"}},
        SEND_AT: {"value": {"type": "datetimepicker", "selected_date_time": None}},
    }
    assert await patient.submit(user, opened, values) is None, "the modal closes within the budget"
    assert fake_openai.answered == busy.answered, "Slack got its answer only once the model had answered"
    await patient_api.wait_for(email_id, "canceled", timeout=40)
    deadline = time.monotonic() + 20
    while True:
        told = [c for c in patient.fake.of("chat.postEphemeral", user=user) if "already canceled" in c.args["text"]]
        if told:
            break
        assert time.monotonic() < deadline, patient.fake.of("chat.postEphemeral", user=user)
        await asyncio.sleep(0.1)
    assert told[0].args["channel"] == busy.channel and told[0].args.get("thread_ts") == busy.thread_ts
    assert await _status_or_error(busy.slow_delivery) == 200


async def test_edit_while_the_model_thinks_says_so_in_time_instead_of_a_modal_that_cannot_open(
    patient: Slack, fake_openai: FakeOpenAI
) -> None:
    """Edit needs the email as it stands (a describe, held while the workflow task runs the model) and Slack's
    trigger_id lasts 3 s: past the budget the user is told to click again, rather than a modal opened too late
    (Slack refuses it) or nothing at all."""
    user = _user("ackedit")
    busy = await _while_the_model_thinks(patient, fake_openai, user)
    email_id = thread_email_id(TEAM, busy.channel, busy.thread_ts)
    click = await patient.press(EDIT_ACTION, email_id, user, busy.channel, busy.card, busy.thread_ts)
    deadline = time.monotonic() + 5
    while not [c for c in patient.fake.of("chat.postEphemeral", user=user) if c.args["text"] == BUSY_EDITING]:
        assert time.monotonic() < deadline, patient.fake.of("chat.postEphemeral", user=user)
        await asyncio.sleep(0.05)
    assert fake_openai.answered == busy.answered, "told only once the model had answered"
    assert not patient.fake.of("views.open", trigger_id=click["trigger_id"]), "no modal opened too late"
    assert await _status_or_error(busy.slow_delivery) == 200


async def test_the_home_tab_shows_a_busy_email_as_being_worked_on_and_follows_it_when_done(
    patient: Slack, fake_openai: FakeOpenAI
) -> None:
    """Each listed email is described (a query, held while its workflow task runs the model): the tab is
    published without waiting for the busy one, which shows as it was last seen, under "Being worked on", with
    Cancel; once the model is done the tab is published again with the email where it belongs."""
    user = _user("ackhome")

    async def listed_once(channel: str, thread_ts: str, card: str) -> None:
        await patient.open_home(user)
        await wait_home(patient.fake, user, lambda s: s.get("Held") == "Going out")

    busy = await _while_the_model_thinks(patient, fake_openai, user, listed_once)
    email_id = thread_email_id(TEAM, busy.channel, busy.thread_ts)
    published = len(patient.fake.of("views.publish", user_id=user))
    await patient.open_home(user)
    working = await wait_home(patient.fake, user, lambda s: s.get("Held") == "Being worked on", after=published)
    assert fake_openai.answered == busy.answered, "the tab waited for the model"
    buttons = [
        e["action_id"]
        for b in working.args["view"]["blocks"]
        if b.get("block_id") == f"home-{email_id}"
        for e in b["elements"]
    ]
    assert CANCEL_ACTION in buttons and SEND_NOW_ACTION not in buttons, buttons
    after = patient.fake.of("views.publish", user_id=user).index(working) + 1
    await wait_home(patient.fake, user, lambda s: s.get("Held", "Being worked on") != "Being worked on", after=after)
    assert fake_openai.answered > busy.answered
    assert await _status_or_error(busy.slow_delivery) == 200


async def test_saving_an_edit_of_a_long_body_while_the_model_thinks_answers_in_time(
    patient: Slack, fake_openai: FakeOpenAI
) -> None:
    """A body longer than the modal's field is kept as it is on Save: that needs the email as it stands (a
    describe, held while the workflow task runs the model). Slack's 3 s do not wait: the modal says to press
    Save again, rather than Slack showing "trouble connecting"."""
    user = _user("acklong")
    modals: list[dict[str, Any]] = []

    async def open_the_editor(channel: str, thread_ts: str, card: str) -> None:
        email_id = thread_email_id(TEAM, channel, thread_ts)
        modals.append(await patient.open_editor(email_id, user, channel, card, thread_ts))

    long_body = "Long words. " * 300  # 3,600 characters: more than the modal's field holds
    text = f"to: held@example.com; subject: Held; body: {long_body}; send tomorrow at 9am"
    busy = await _while_the_model_thinks(patient, fake_openai, user, first=open_the_editor, text=text)
    [opened] = modals
    assert Opened.load(opened["private_metadata"]).keep_body, "the body is kept, not in the modal"
    values = {
        TO: {"value": {"type": "plain_text_input", "value": "held@example.com"}},
        SUBJECT: {"value": {"type": "plain_text_input", "value": "Held, edited"}},
        SEND_AT: {"value": {"type": "datetimepicker", "selected_date_time": None}},
    }
    answer = await patient.submit(user, opened, values)
    assert fake_openai.answered == busy.answered, "the modal's answer waited for the model"
    assert answer is not None and answer["response_action"] == "errors", answer
    assert BUSY_SAVING in answer["errors"].values(), answer
    assert await _status_or_error(busy.slow_delivery) == 200
