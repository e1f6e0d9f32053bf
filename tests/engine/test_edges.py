"""The edges, made to happen on purpose through the real engine: a request or cancel in flight at the send
moment or as the workflow ends (callbacks held at a gate between iWF and the worker), a model failure on a
scheduled email, a connection lost after DATA, a process killed while the mail server holds its answer.

The gated app runs its state calls as normal activities (ENGINE_LOCAL_ACTIVITIES=false): an interleaving is
forced by holding one call at the gate, which needs calls that can each be held on their own. With local
activities (the default) a held call holds its whole workflow task, so the same moments are coarser: the
`..._with_local_activities` tests check that the same promises hold there, on the outcome iWF produces.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus

from bot.slack.threads import thread_email_id
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM, FakeSlack, action_body, command_body
from tests.fakes.worker_gate import STATE_EXECUTE, WorkerGate, rpc_call, state_call
from tests.harness import (
    Api,
    AppProcess,
    Engine,
    Slack,
    SmtpSink,
    app_env,
    free_port,
    kill_while_the_server_holds_its_answer,
    unique,
    wait_for_mail,
)

pytestmark = pytest.mark.engine


@asynccontextmanager
async def gated_app(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    state: Path,
    fake_slack: FakeSlack | None = None,
    local_activities: bool = False,
) -> AsyncIterator[tuple[AppProcess, WorkerGate]]:
    """An app of its own whose worker callbacks all pass through a gate the test controls."""
    port, worker_port = free_port(), free_port()
    gate = WorkerGate(target=f"http://127.0.0.1:{worker_port}")
    await gate.start()
    slack = {"slack_api_url": fake_slack.api_url} if fake_slack is not None else {}
    env = app_env(
        port, engine.iwf_url, engine.temporal_host_port, state, fake_openai.base_url, smtp_sink.port, **slack
    ) | {"WORKER_PORT": str(worker_port), "WORKER_URL": gate.url}
    if not local_activities:
        env["ENGINE_LOCAL_ACTIVITIES"] = "false"
    app = AppProcess(env=env, log_path=state / "app.log", base_url=f"http://127.0.0.1:{port}")
    await asyncio.to_thread(app.start)
    try:
        yield app, gate
    finally:
        app.stop()
        await gate.stop()


@pytest.fixture(scope="module")
async def gated(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    fake_slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[AppProcess, WorkerGate]]:
    """The module's gated app (state calls as normal activities, Slack on)."""
    state = tmp_path_factory.mktemp("gated")
    async with gated_app(engine, smtp_sink, fake_openai, state, fake_slack) as gated:
        yield gated


async def until_ended(engine: Engine, workflow_id: str, timeout: float = 30) -> None:
    """Until Temporal has the email's workflow completed: describe's status says "sent" one step before
    (the final card step still runs), which would leave a race to luck."""
    handle = (await TemporalClient.connect(engine.temporal_host_port)).get_workflow_handle(workflow_id)
    deadline = asyncio.get_running_loop().time() + timeout
    while (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
        assert asyncio.get_running_loop().time() < deadline, f"{workflow_id} never completed"
        await asyncio.sleep(0.1)


@pytest.fixture
async def gated_api(gated: tuple[AppProcess, WorkerGate]) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield Api(session, gated[0].base_url)


async def test_a_request_accepted_as_the_timer_fires_is_answered_before_anything_goes_out(
    gated: tuple[AppProcess, WorkerGate], gated_api: Api, smtp_sink: SmtpSink
) -> None:
    _, gate = gated
    wid = unique("last-moment")
    await gated_api.start(wid)
    await gated_api.say(wid, "to: lm@example.com; subject: First words; body: Hello; send in 3 seconds")
    view = await gated_api.wait_for(wid, "scheduled")
    # The request takes the inbox lock and is held there while the timer fires: the send decision must wait
    # for it, and then answer it first.
    held = gate.hold(rpc_call(wid, "send_request"))
    posting = asyncio.create_task(
        gated_api.call("POST", f"/api/emails/{wid}/messages", {"text": "subject: Last words", "message_id": "late"})
    )
    await held.wait_arrived()
    await asyncio.sleep(max(0.0, _seconds_until(view["send_at"])) + 1.0)
    held.release()
    status, body = await posting
    assert status == 202 and body["accepted"], body
    sent = await gated_api.wait_for(wid, "sent", timeout=40)
    [mail] = await wait_for_mail(smtp_sink, "lm@example.com")
    assert mail.message["Subject"] == "Last words", "the accepted request was answered before sending"
    assert "subject: Last words" in [t["text"] for t in sent["conversation"]]
    assert sent["pending_requests"] == 0
    await asyncio.sleep(1)
    assert len(smtp_sink.to("lm@example.com")) == 1


async def test_a_cancel_in_flight_as_the_email_is_sent_gets_the_final_answer(
    gated: tuple[AppProcess, WorkerGate], gated_api: Api, smtp_sink: SmtpSink, engine: Engine
) -> None:
    _, gate = gated
    wid = unique("cancel-at-end")
    await gated_api.start(wid)
    delivering = gate.hold(state_call(STATE_EXECUTE, wid, "DeliverState"))
    await gated_api.say(wid, "to: ce@example.com; subject: Going; body: Out; send in 1 seconds")
    await delivering.wait_arrived()
    canceling = gate.hold(rpc_call(wid, "cancel"))
    cancel = asyncio.create_task(gated_api.call("POST", f"/api/emails/{wid}/cancel", {}))
    await canceling.wait_arrived()
    delivering.release()  # the email is sent and the workflow ends while the cancel is in flight
    await wait_for_mail(smtp_sink, "ce@example.com")
    await until_ended(engine, wid)  # the workflow is over while the cancel is still held
    canceling.release()
    status, body = await cancel
    assert status == 409, body
    assert "already sent" in json.dumps(body), "the answer names the final status"


async def test_a_double_click_on_cancel_answers_both_clicks(
    gated: tuple[AppProcess, WorkerGate], gated_api: Api, fake_slack: FakeSlack, engine: Engine
) -> None:
    app, gate = gated
    async with aiohttp.ClientSession() as session:
        slack = Slack(session, app, fake_slack)
        user = f"UDBL{unique('x')[-9:]}"
        channel, ts = await slack.dm(user, "to: dc@example.com; subject: Twice; body: Click; send in 30 seconds")
        card = await slack.card(channel, ts)
        await slack.wait_card(channel, card, "Scheduled")
        email_id = thread_email_id(TEAM, channel, ts)
        final_card = gate.hold(state_call(STATE_EXECUTE, email_id, "NotifyState", input_contains="canceled"))
        click = action_body("cancel_email", email_id, user, channel, card, ts)
        status, _ = await slack.post(click, "application/x-www-form-urlencoded")
        assert status == 200
        await final_card.wait_arrived()
        second = gate.hold(rpc_call(email_id, "cancel"))
        click = action_body("cancel_email", email_id, user, channel, card, ts)  # a second click: its own payload
        clicking = asyncio.create_task(slack.post(click, "application/x-www-form-urlencoded"))
        await second.wait_arrived()
        final_card.release()  # the workflow ends while the second click's cancel is in flight
        await until_ended(engine, email_id)  # the workflow is over while the second cancel is still held
        second.release()
        status, text = await clicking
        assert status == 200, text
        await _wait_ephemeral(fake_slack, user, "already canceled")


@pytest.mark.parametrize("scheduled", [True, False], ids=["scheduled", "draft"])
async def test_a_message_and_a_control_queued_together_are_both_taken_up(
    gated: tuple[AppProcess, WorkerGate], gated_api: Api, scheduled: bool
) -> None:
    """A message and an owner's edit both arrive while the model works on an earlier message: both are taken
    up, in the order they came (one queue), none dropped with `pending_requests` stuck at 1."""
    _, gate = gated
    wid = unique("two-queued")
    await gated_api.start(wid)
    when = "; tomorrow at 9am" if scheduled else ""
    await gated_api.say(wid, f"to: tq@example.com; subject: First; body: One{when}")
    before = await gated_api.wait_for(wid, "scheduled" if scheduled else "waiting")
    composing = gate.hold(state_call(STATE_EXECUTE, wid, "ComposeState"))
    await gated_api.say(wid, "subject: Held")
    await composing.wait_arrived()
    await gated_api.say(wid, "subject: Queued")
    later = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT09:30") if scheduled else None
    edit = {"to": ["tq@example.com"], "subject": "Edited", "body": "Two", "send_at_local": later}
    status, body = await gated_api.call("POST", f"/api/emails/{wid}/edit", edit)
    assert status == 202, body
    queued = await gated_api.describe(wid)
    assert queued["pending_requests"] == 2, queued
    composing.release()
    view = await gated_api.wait_for(wid, "scheduled" if scheduled else "waiting")
    assert view["pending_requests"] == 0, view
    assert "subject: Queued" in [t["text"] for t in view["conversation"]]
    assert view["revision"] == before["revision"] + 3, "the held message, the queued one and the edit"
    # In the order they came: the words, then the edit, which is what stands.
    assert (view["subject"], view["body"]) == ("Edited", "Two")
    if scheduled:
        assert view["send_at"].startswith(later[:10]), view
    await gated_api.call("POST", f"/api/emails/{wid}/cancel")


async def test_words_and_decisions_queued_while_the_model_works_are_taken_up_in_the_order_they_came(
    gated: tuple[AppProcess, WorkerGate], gated_api: Api
) -> None:
    """Three inputs arrive while the model works: words, an edit, newer words. Taken up in that order, the
    newest words stand, and the conversation reads as the user wrote it (two queues, one put back behind
    the other, answered the older words last)."""
    _, gate = gated
    wid = unique("in-order")
    await gated_api.start(wid)
    await gated_api.say(wid, "to: io@example.com; subject: First; body: One")
    await gated_api.wait_for(wid, "waiting")
    composing = gate.hold(state_call(STATE_EXECUTE, wid, "ComposeState"))
    await gated_api.say(wid, "subject: Held")
    await composing.wait_arrived()
    await gated_api.say(wid, "subject: Older")
    edit = {"to": ["io@example.com"], "subject": "Edited", "body": "Two", "send_at_local": None}
    status, body = await gated_api.call("POST", f"/api/emails/{wid}/edit", edit)
    assert status == 202, body
    await gated_api.say(wid, "subject: Newer")
    composing.release()
    view = await gated_api.wait_for(wid, "waiting")
    assert view["subject"] == "Newer", view
    users = [t["text"] for t in view["conversation"] if t["role"] == "user"]
    assert users[-3:] == ["subject: Held", "subject: Older", "subject: Newer"], users


async def test_a_request_held_as_the_timer_fires_with_local_activities(
    engine: Engine, smtp_sink: SmtpSink, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With local activities the held request holds its workflow task; when the timer fires meanwhile, iWF
    drops the request (the task fails and is replayed without it) and sends. The answer must say so: the
    request was not taken, and it is not in the email."""
    state = tmp_path_factory.mktemp("gated-local")
    async with gated_app(engine, smtp_sink, fake_openai, state, local_activities=True) as (app, gate):
        async with aiohttp.ClientSession() as session:
            api = Api(session, app.base_url)
            wid = unique("last-moment-local")
            await api.start(wid)
            await api.say(wid, "to: lml@example.com; subject: First words; body: Hello; send in 3 seconds")
            view = await api.wait_for(wid, "scheduled")
            held = gate.hold(rpc_call(wid, "send_request"))
            posting = asyncio.create_task(
                api.call("POST", f"/api/emails/{wid}/messages", {"text": "subject: Last words", "message_id": "late"})
            )
            await held.wait_arrived()
            await asyncio.sleep(max(0.0, _seconds_until(view["send_at"])) + 0.5)
            held.release()
            status, body = await posting
            sent = await api.wait_for(wid, "sent", timeout=40)
    [mail] = await wait_for_mail(smtp_sink, "lml@example.com")
    texts = [t["text"] for t in sent["conversation"]]
    if status == 202:  # accepted: then it must have been answered before sending
        assert mail.message["Subject"] == "Last words" and "subject: Last words" in texts, body
    else:
        assert status == 409 and body["error"]["code"] == "closed", body
        assert mail.message["Subject"] == "First words" and "subject: Last words" not in texts
    assert sent["pending_requests"] == 0


async def test_a_card_posted_by_a_call_whose_answer_was_lost_is_not_posted_twice(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    fake_slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The card step posts the card, its answer to iWF is lost, and the app dies before iWF retries: the retry
    runs in a fresh process (nothing remembered) and finds the card in the thread by its metadata."""
    state = tmp_path_factory.mktemp("lost-card")
    async with gated_app(engine, smtp_sink, fake_openai, state, fake_slack) as (app, gate):
        async with aiohttp.ClientSession() as session:
            slack = Slack(session, app, fake_slack)
            user = f"ULOST{unique('c')[-8:]}"
            prefix = f"slack-{TEAM}-D{user}-"

            def first_card(path: str, body: dict[str, Any]) -> bool:
                workflow = str((body.get("context") or {}).get("workflowId", ""))
                notify = path == STATE_EXECUTE and body.get("workflowStateId") == "NotifyState"
                return notify and workflow.startswith(prefix)

            lost = gate.lose_answer(first_card)
            channel, ts = await slack.dm(user, "to: lc@example.com; subject: Once; body: One card")
            email_id = thread_email_id(TEAM, channel, ts)
            await lost.wait_arrived()
            await asyncio.to_thread(app.stop)  # the process that posted it is gone
            await asyncio.to_thread(app.start)
            api = Api(session, app.base_url)
            await api.wait_for(email_id, "waiting")
            card = await slack.card(channel, ts)
            await slack.wait_card(channel, card, "Once")
    posted = [c for c in fake_slack.of("chat.postMessage", channel=channel, thread_ts=ts) if c.args.get("blocks")]
    assert len(posted) == 1, [c.args.get("text") for c in posted]


async def test_a_slash_commands_thread_posted_by_a_call_whose_answer_was_lost_is_opened_once(
    engine: Engine,
    smtp_sink: SmtpSink,
    fake_openai: FakeOpenAI,
    fake_slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """/schedule-email: the card step posts the thread's root in the user's DM, its answer to iWF is lost, and
    the app dies. The retry finds that root by its metadata (conversations.history) instead of opening a second
    thread, which left the first one empty."""
    state = tmp_path_factory.mktemp("lost-root")
    async with gated_app(engine, smtp_sink, fake_openai, state, fake_slack) as (app, gate):
        async with aiohttp.ClientSession() as session:
            slack = Slack(session, app, fake_slack)
            user = f"UROOT{unique('r')[-8:]}"

            def first_root(path: str, body: dict[str, Any]) -> bool:
                notify = path == STATE_EXECUTE and body.get("workflowStateId") == "NotifyState"
                return notify and "-cmd-" in str((body.get("context") or {}).get("workflowId", ""))

            lost = gate.lose_answer(first_root)
            text = "to: lr@example.com; subject: One thread; body: Once"
            status, _ = await slack.post(
                command_body(text, user, fake_slack.response_url(user)), "application/x-www-form-urlencoded"
            )
            assert status == 200
            await lost.wait_arrived()
            await asyncio.to_thread(app.stop)  # the process that posted it is gone
            await asyncio.to_thread(app.start)
            [root] = fake_slack.of("chat.postMessage", channel=user)
            channel, thread_ts = f"D{user}", fake_slack.answered_ts[fake_slack.calls.index(root)]
            card = await slack.card(channel, thread_ts)
            await slack.wait_card(channel, card, "One thread")
    roots = fake_slack.of("chat.postMessage", channel=user)
    assert len(roots) == 1, [c.args.get("text") for c in roots]
    assert fake_slack.of("conversations.history", channel=channel), "the retry looked for it"


async def test_a_model_failure_leaves_a_scheduled_email_scheduled(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("rate-limited")
    await api.start(wid)
    await api.say(wid, "to: rl@example.com; subject: Stays; body: Scheduled; send in 6 seconds")
    before = await api.wait_for(wid, "scheduled")
    assert before["will_send"] and before["plan"].startswith("Sends ")
    await api.say(wid, "RATE429 what time does it go out?")
    view = await api.wait_for(wid, "scheduled")
    assert view["send_at"] == before["send_at"] and view["will_send"]
    assert "rate-limited" in view["last_error"] and "still goes out" in view["last_reply"]
    await api.wait_for(wid, "sent", timeout=30)
    assert len(await wait_for_mail(smtp_sink, "rl@example.com")) == 1


async def test_a_date_without_a_time_or_a_year_away_is_asked_about_not_scheduled(api: Api) -> None:
    """A bare date would go out at midnight; the year 2500 would overflow the engine's timer and fire at once."""
    for when, asked in (("2026-12-24", "What time on Thu 24 Dec 2026"), ("2500-01-01t09:00:00", "more than a year")):
        wid = unique("when")
        await api.start(wid)
        await api.say(wid, f"to: wh@example.com; subject: S; body: B; send at {when}")
        view = await api.wait_for(wid, "waiting")
        assert asked in view["last_reply"] and not view["will_send"] and view["send_at"] is None, view


async def test_a_recipient_refused_by_the_mail_server_leaves_the_email_sent_to_the_others(
    api: Api, smtp_sink: SmtpSink
) -> None:
    """550 for one of two recipients: the server took the message for the other, so the email is sent (once),
    the refused address is named, and nothing offers to send it to everyone again."""
    wid = unique("partly")
    await api.start(wid)
    smtp_sink.refuse_recipients["gone@example.com"] = "550 5.1.1 no such user"
    try:
        await api.say(wid, "to: got@example.com, gone@example.com; subject: Half; body: Hi; send in 1 seconds")
        view = await api.wait_for(wid, "sent", timeout=30)
    finally:
        smtp_sink.refuse_recipients.clear()
    [mail] = await wait_for_mail(smtp_sink, "got@example.com")
    assert mail.rcpt_tos == ["got@example.com"]
    assert "gone@example.com" in view["last_error"] and "550" in view["last_error"]
    assert "did not get it" in view["last_reply"] and view["sent_message_id"] == mail.message["Message-ID"]


async def test_a_connection_lost_after_data_is_unconfirmed_not_resent(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("dropped")
    await api.start(wid)
    smtp_sink.drop_after_data = True
    try:
        await api.say(wid, "to: dr@example.com; subject: Maybe; body: Out; send in 1 seconds")
        view = await api.wait_for(wid, "unconfirmed", timeout=30)
    finally:
        smtp_sink.drop_after_data = False
    assert not view["will_send"] and "Delivery unknown" in view["plan"]
    assert "not sure" in view["last_reply"]
    # A question about it is no order to send it again.
    await api.say(wid, "did it go out?")
    asked = await api.wait_for(wid, "unconfirmed", "waiting")
    assert not asked["will_send"] and asked["send_at"] is None, asked
    assert asked["status"] == "unconfirmed" and "Delivery unknown" in asked["plan"], "still unknown after a question"
    await asyncio.sleep(3)
    assert len(smtp_sink.to("dr@example.com")) == 1, "not resent by itself"
    # The user decides (the card's "Send again" is Send now): sent again, same Message-ID, only because asked.
    status, body = await api.call("POST", f"/api/emails/{wid}/send-now", {"message_id": "again-1"})
    assert status == 202 and body["ok"], body
    again = await api.wait_for(wid, "sent", timeout=30)
    mails = await wait_for_mail(smtp_sink, "dr@example.com", count=2)
    assert {m.message["Message-ID"] for m in mails} == {again["sent_message_id"]}


async def test_the_app_killed_while_the_mail_server_holds_its_answer_sends_once(
    api: Api, app_process: AppProcess, smtp_sink: SmtpSink
) -> None:
    """The delivering execution claimed the hand-over and died: the re-execution does not resend blindly."""
    wid = unique("killed-in-data")
    await api.start(wid)
    text = "to: kd@example.com; subject: Once; body: Only once; send in 1 seconds"
    await kill_while_the_server_holds_its_answer(api, app_process, smtp_sink, wid, text)
    view = await api.wait_for(wid, "unconfirmed", timeout=120)
    assert "interrupted" in view["last_error"]
    await asyncio.sleep(2)
    assert len(smtp_sink.to("kd@example.com")) == 1


def _seconds_until(iso: str) -> float:
    from datetime import UTC, datetime

    return (datetime.fromisoformat(iso) - datetime.now(UTC)).total_seconds()


async def _wait_ephemeral(fake: FakeSlack, user: str, text: str, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if any(text in str(c.args.get("text")) for c in fake.of("chat.postEphemeral", user=user)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no ephemeral {text!r} for {user}: {[c.args for c in fake.of('chat.postEphemeral')]}")


async def test_a_retry_of_a_request_or_control_taken_before_the_send_is_told_duplicate(
    gated: tuple[AppProcess, WorkerGate], gated_api: Api, smtp_sink: SmtpSink
) -> None:
    """The answer to a message (or a Send now) is lost and the client retries it while the email is being
    delivered (the delivery's callback held at the gate) or after: it was taken, and its words are what goes
    out, so the answer is "duplicate" / "already", not "too late" or "finished"."""
    _, gate = gated
    api = gated_api
    wid, now = unique("retried"), unique("now")
    await api.start(wid)
    text = "to: rt@example.com; subject: Retried; body: Once; tomorrow at 9am"
    await api.say(wid, text, message_id="m1")
    await api.wait_for(wid, "scheduled")
    delivering = gate.hold(state_call(STATE_EXECUTE, wid, "DeliverState"))
    status, body = await api.call("POST", f"/api/emails/{wid}/send-now", {"message_id": now})
    assert status == 202 and body["ok"], body
    await delivering.wait_arrived()
    try:
        assert (await api.describe(wid))["status"] == "sending"
        status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": text, "message_id": "m1"})
        assert status == 202 and body["duplicate"] is True, body
        status, body = await api.call("POST", f"/api/emails/{wid}/send-now", {"message_id": now})
        assert status == 202 and body["already"] is True, body
        status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "new words", "message_id": "m2"})
        assert status == 409 and body["error"]["code"] == "too_late", body
    finally:
        delivering.release()
    await api.wait_for(wid, "sent")
    status, body = await api.call("POST", f"/api/emails/{wid}/send-now", {"message_id": now})
    assert status == 202 and body["already"] is True, body
    status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": text, "message_id": "m1"})
    assert status == 202 and body["duplicate"] is True, body
    assert len(await wait_for_mail(smtp_sink, "rt@example.com")) == 1


async def test_an_owners_listing_names_an_email_it_cannot_describe_instead_of_failing(
    gated: tuple[AppProcess, WorkerGate], gated_api: Api
) -> None:
    """One email whose describe keeps failing (its answers lost between the worker and the iWF server) must
    not turn the owner's whole listing into an error: it is named in `unanswered`, the rest are listed."""
    _, gate = gated
    owner = unique("lister")
    fine, failing = unique("fine"), unique("failing")
    for wid in (fine, failing):
        status, body = await gated_api.call("POST", f"/api/emails/{wid}", {"owner": owner})
        assert status == 201, body
    listed: set[str] = set()
    for _ in range(100):  # the search follows the workflows within moments
        status, body = await gated_api.call("GET", f"/api/emails?owner={owner}")
        listed = {item["id"] for item in body["emails"]}
        if listed == {fine, failing}:
            break
        await asyncio.sleep(0.2)
    assert listed == {fine, failing}, body
    losses = [gate.lose_answer(rpc_call(failing, "describe")) for _ in range(10)]
    status, body = await gated_api.call("GET", f"/api/emails?owner={owner}")
    assert status == 200, body
    assert [item["id"] for item in body["emails"]] == [fine] and body["unanswered"] == [failing], body
    assert losses[0].arrived.is_set(), "the failing email's describe was tried"
    for loss in losses:
        if loss in gate.losses:
            gate.losses.remove(loss)
