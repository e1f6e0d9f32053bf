"""The email's whole life, through the app process, the real iWF server and Temporal, SMTP on loopback."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.openai_server import JAPANESE_BODY, JAPANESE_SUBJECT, FakeOpenAI
from tests.harness import Api, SmtpSink, unique, wait_for_mail

pytestmark = pytest.mark.engine


async def test_draft_schedule_and_send_once(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("lunch")
    await api.start(wid, timezone="Europe/Paris")
    await api.say(wid, "to: ana@example.com; subject: Lunch; body: Shall we have lunch tomorrow?; send in 3 seconds")
    view = await api.wait_for(wid, "scheduled")
    assert view["to"] == ["ana@example.com"] and view["subject"] == "Lunch"
    assert view["send_at_local"] and ("CET" in view["send_at_local"] or "CEST" in view["send_at_local"])

    view = await api.wait_for(wid, "sent", timeout=30)
    [mail] = await wait_for_mail(smtp_sink, "ana@example.com")
    assert mail.message["Subject"] == "Lunch"
    assert mail.message["To"] == "ana@example.com"
    assert mail.message["From"] == "assistant@example.org"
    assert mail.message["Message-ID"] == view["sent_message_id"]
    assert mail.message["Date"]
    assert smtp_sink.text_of(mail) == "Shall we have lunch tomorrow?"
    await asyncio.sleep(2)
    assert len(smtp_sink.to("ana@example.com")) == 1, "sent more than once"


async def test_translation_to_japanese_arrives_intact(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("ja")
    await api.start(wid, timezone="Asia/Tokyo")
    await api.say(wid, "to: kenji@example.jp; subject: Lunch; body: Lunch tomorrow?")
    view = await api.wait_for(wid, "waiting")
    assert view["subject"] == "Lunch" and view["send_at"] is None
    await api.say(wid, "translate to Japanese")
    view = await api.wait_for(wid, "waiting")
    assert view["subject"] == JAPANESE_SUBJECT
    await api.say(wid, "send in 1 seconds")
    await api.wait_for(wid, "sent")
    [mail] = await wait_for_mail(smtp_sink, "kenji@example.jp")
    assert mail.message["Subject"] == JAPANESE_SUBJECT
    assert smtp_sink.text_of(mail) == JAPANESE_BODY.strip()


async def test_cancel_while_scheduled_sends_nothing(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("cancel")
    await api.start(wid)
    await api.say(wid, "to: carol@example.com; subject: Hi; body: Hello Carol; send in 4 seconds")
    await api.wait_for(wid, "scheduled")
    await api.say(wid, "cancel it please")
    view = await api.wait_for(wid, "canceled")
    assert "cancel" in view["last_reply"].lower()
    await asyncio.sleep(6)  # past the original send time
    assert smtp_sink.to("carol@example.com") == []
    status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "send it after all"})
    assert status == 409 and body["error"]["code"] == "closed"


async def test_cancel_button_path_uses_no_model(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("cancel-api")
    await api.start(wid)
    await api.say(wid, "to: dave@example.com; subject: Hi; body: Hello Dave; send in 4 seconds")
    await api.wait_for(wid, "scheduled")
    status, body = await api.call("POST", f"/api/emails/{wid}/cancel")
    assert status == 200 and body["ok"] is True
    await api.wait_for(wid, "canceled")
    await asyncio.sleep(5)
    assert smtp_sink.to("dave@example.com") == []
    status, body = await api.call("POST", f"/api/emails/{wid}/cancel")
    assert (status, body["ok"], body["already"]) == (200, True, True), "a retried cancel gets the same answer"


async def test_revise_while_scheduled_sends_only_the_revision_once(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("revise")
    await api.start(wid)
    await api.say(wid, "to: erin@example.com; subject: Draft one; body: First words; send in 4 seconds")
    first = await api.wait_for(wid, "scheduled")
    await api.say(wid, "subject: Draft two; body: Better words")
    second = await api.wait_for(wid, "scheduled")
    assert second["revision"] == first["revision"] + 1
    assert second["send_at"] == first["send_at"], "a revision keeps the time the user chose"
    await api.wait_for(wid, "sent")
    await asyncio.sleep(2)
    mails = smtp_sink.to("erin@example.com")
    assert [m.message["Subject"] for m in mails] == ["Draft two"]
    assert smtp_sink.text_of(mails[0]) == "Better words"


async def test_duplicate_deliveries_of_one_message_make_one_request(api: Api, fake_openai) -> None:  # type: ignore[no-untyped-def]
    wid = unique("dedupe")
    await api.start(wid)
    marker = f"note-{wid}"
    results = await asyncio.gather(*(api.say(wid, marker, message_id="slack-ts-1") for _ in range(3)))
    assert sum(1 for r in results if not r["duplicate"]) == 1, results
    view = await api.wait_for(wid, "waiting")
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == [marker]
    assert len(fake_openai.requests_for(marker)) == 1


async def test_messages_sent_while_the_model_is_busy_are_not_lost(api: Api, fake_openai: FakeOpenAI) -> None:
    """The first message keeps the model busy (PONDER: a second); three more arrive meanwhile, together (their
    hand-offs wait for that step to end, then are taken one by one). Each is answered: none is lost."""
    wid = unique("queue")
    await api.start(wid)
    texts = [f"PONDER remark 0 for {wid}", *(f"remark {i} for {wid}" for i in range(1, 4))]
    await api.say(wid, texts[0])
    deadline = time.monotonic() + 20
    while not fake_openai.requests_for(texts[0]):  # the workflow is with the model now
        assert time.monotonic() < deadline, "the first message never reached the model"
        await asyncio.sleep(0.02)
    later = await asyncio.gather(*(api.say(wid, text) for text in texts[1:]))
    assert all(r["accepted"] and not r["duplicate"] for r in later), later
    view = await api.wait_for(wid, "waiting")
    said = [t["text"] for t in view["conversation"] if t["role"] == "user"]
    assert said[0] == texts[0] and sorted(said[1:]) == texts[1:], said
    assert len([t for t in view["conversation"] if t["role"] == "assistant"]) == 4


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [
        ("GARBAGE", "not usable"),
        ("SCHEMA", "not usable"),
        ("FAIL500", "error (500)"),
        ("SLOW", "took too long"),
    ],
)
async def test_model_failures_leave_the_email_waiting_and_say_why(api: Api, trigger: str, reason: str) -> None:
    wid = unique(f"llm-{trigger.lower()}")
    await api.start(wid)
    await api.say(wid, "to: fay@example.com; subject: Report; body: The report is attached.")
    before = await api.wait_for(wid, "waiting")
    await api.say(wid, f"{trigger} make it shorter")
    view = await api.wait_for(wid, "waiting", timeout=40)
    assert reason in view["last_error"], view["last_error"]
    assert (view["subject"], view["body"], view["revision"]) == (
        before["subject"],
        before["body"],
        before["revision"],
    )
    assert view["conversation"][-1] == {**view["conversation"][-1], "role": "user"}, "the request is kept"
    # And the workflow still works afterwards.
    await api.say(wid, "subject: Report v2")
    view = await api.wait_for(wid, "waiting")
    assert view["subject"] == "Report v2" and view["last_error"] == ""


async def test_past_time_is_questioned_not_scheduled(api: Api) -> None:
    wid = unique("past")
    await api.start(wid, timezone="America/New_York")
    await api.say(wid, "to: gus@example.com; subject: Late; body: Sorry; send at 2020-01-01T09:00:00")
    view = await api.wait_for(wid, "waiting")
    assert view["send_at"] is None
    assert "in the past" in view["last_reply"] and "When should I send it?" in view["last_reply"]


async def test_a_model_time_at_another_offset_is_questioned_not_sent_hours_off(api: Api) -> None:
    """The model is asked for the user's wall clock; a "Z" it adds anyway would make 9 AM in Los Angeles 1 AM."""
    wid = unique("zulu")
    await api.start(wid, timezone="America/Los_Angeles")
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    await api.say(wid, f"to: zed@example.com; subject: Zulu; body: Hi; send at {day}T09:00:00Z")
    view = await api.wait_for(wid, "waiting")
    assert view["send_at"] is None and not view["will_send"]
    assert "1:00 AM" in view["last_reply"] and "in your own time" in view["last_reply"]
    await api.say(wid, f"send at {day}T09:00:00-08:00")  # the user's own offset: taken as given
    view = await api.wait_for(wid, "scheduled")
    assert view["send_at"] == f"{day}T17:00:00Z"


async def test_invalid_recipient_is_refused_in_code(api: Api) -> None:
    wid = unique("badrcpt")
    await api.start(wid)
    await api.say(wid, "to: not-an-address; subject: X; body: Y; send in 2 seconds")
    view = await api.wait_for(wid, "waiting")
    assert view["to"] == [] and not view["will_send"], "nothing half-understood goes out"
    assert view["plan"].startswith("On hold (was planned for"), "the time it was given waits for the answer"
    assert "not a valid email address" in view["last_error"]


async def test_save_draft_is_durable_and_cleared_by_the_next_request(api: Api) -> None:
    wid = unique("draft")
    await api.start(wid)
    status, body = await api.call("PUT", f"/api/emails/{wid}/draft", {"text": "half a thought about Ja"})
    assert status == 200 and body["ok"]
    assert (await api.describe(wid))["draft"] == "half a thought about Ja"
    await api.say(wid, "a finished thought")
    view = await api.wait_for(wid, "waiting")
    assert view["draft"] == ""


async def test_describe_still_works_after_the_email_is_sent(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("closed")
    await api.start(wid)
    await api.say(wid, "to: hal@example.com; subject: Done; body: Bye; send in 1 seconds")
    await api.wait_for(wid, "sent")
    view = await api.describe(wid)
    assert view["status"] == "sent" and view["subject"] == "Done"
    status, _ = await api.call("POST", f"/api/emails/{wid}")
    assert status == 200, "a start of an existing id is idempotent, even after it finished"


async def test_a_retried_request_after_the_end_is_recognised(api: Api, smtp_sink: SmtpSink) -> None:
    """The first answer was lost (a crash, a timeout); the retry must not be told it was refused."""
    wid = unique("retry-after-end")
    await api.start(wid)
    first = await api.say(wid, "to: kay@example.com; subject: Once; body: Hi; send in 1 seconds", message_id="k1")
    assert first["accepted"] and not first["duplicate"]
    await api.wait_for(wid, "sent")
    status, body = await api.call(
        "POST", f"/api/emails/{wid}/messages", {"text": "to: kay@example.com; ...", "message_id": "k1"}
    )
    assert (status, body["accepted"], body["duplicate"]) == (202, True, True), body
    status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "a new one", "message_id": "k2"})
    assert status == 409 and body["error"]["code"] == "closed"


async def test_start_carrying_the_first_request_is_one_call_and_a_retry_is_taken_once(
    api: Api, smtp_sink: SmtpSink
) -> None:
    wid = unique("one-call")
    text = "to: olga@example.com; subject: One call; body: Started and asked at once; send in 2 seconds"
    status, body = await api.call("POST", f"/api/emails/{wid}", {"text": text, "message_id": "first"})
    assert status == 201 and body["created"] is True and body["request"]["accepted"] is True, body
    # The client lost the answer and tries again: the same request, recognised by its id.
    status, body = await api.call("POST", f"/api/emails/{wid}", {"text": text, "message_id": "first"})
    assert status == 200 and body["created"] is False, body
    assert body["request"]["accepted"] is True and body["request"]["duplicate"] is True, body
    view = await api.wait_for(wid, "sent", timeout=30)
    assert view["subject"] == "One call" and view["to"] == ["olga@example.com"]
    await wait_for_mail(smtp_sink, "olga@example.com")
    await asyncio.sleep(2)
    assert len(smtp_sink.to("olga@example.com")) == 1, "a retried start-with-text sent twice"
    # On an email that has ended, the text is refused as a message would be, with the same code.
    status, body = await api.call("POST", f"/api/emails/{wid}", {"text": "send it again", "message_id": "later"})
    assert status == 409 and body["error"]["code"] == "closed", body


async def test_a_domain_written_in_its_own_script_is_sent_in_the_form_mail_servers_take(
    api: Api, smtp_sink: SmtpSink
) -> None:
    """The owner writes ana@bücher.de: the email is scheduled without asking them to confirm the address they
    wrote, and goes out to its ASCII (IDNA) form, not refused by the mail step at its send time."""
    wid = unique("idna")
    await api.start(wid)
    await api.say(wid, "to: ana@bücher.de; subject: Grüße; body: Hallo Ana; send in 1 seconds")
    view = await api.wait_for(wid, "sent", "failed", timeout=30)
    assert view["status"] == "sent", view
    assert view["to"] == ["ana@xn--bcher-kva.de"] and view["unconfirmed"] == []
    [mail] = await wait_for_mail(smtp_sink, "ana@xn--bcher-kva.de")
    assert mail.message["To"] == "ana@xn--bcher-kva.de" and mail.message["Subject"] == "Grüße"


async def test_a_time_relative_to_now_is_counted_by_the_code(api: Api) -> None:
    """ "In 2 hours" comes from the model as a number of minutes and is added to now in UTC (a wall clock moved
    on would be an hour off on the night clocks change): the email is scheduled exactly that far ahead."""
    wid = unique("relative")
    await api.start(wid, timezone="America/New_York")
    before = datetime.now(UTC)
    await api.say(wid, "to: rel@example.com; subject: Later; body: In a while; send in 2 hours")
    view = await api.wait_for(wid, "scheduled")
    after = datetime.now(UTC)
    send_at = datetime.fromisoformat(view["send_at"])
    assert before + timedelta(hours=2) - timedelta(seconds=1) <= send_at <= after + timedelta(hours=2), view
    assert f"Scheduled for {view['send_at_local']}." in view["last_reply"], "the time the code worked out is said"
    await api.call("POST", f"/api/emails/{wid}/cancel", {})


async def test_a_recipient_written_with_a_name_is_that_address_and_two_mailboxes_are_refused(
    api: Api, smtp_sink: SmtpSink
) -> None:
    """ "Bob Named <bob-named@example.com>" is bob-named@, sent to; "bob@… <eve@…>" would be written as one
    address and sent to another: refused, with the reason, and nothing sent."""
    wid = unique("named-to")
    await api.start(wid)
    await api.say(wid, "to: Bob Named <bob-named@example.com>; subject: Hi; body: Hello Bob; send in 1 seconds")
    view = await api.wait_for(wid, "sent", timeout=30)
    assert view["to"] == ["bob-named@example.com"]
    [mail] = await wait_for_mail(smtp_sink, "bob-named@example.com")
    assert mail.message["To"] == "bob-named@example.com"

    smuggled = unique("smuggled")
    await api.start(smuggled)
    await api.say(smuggled, "to: bob2@example.com <eve@evil.example>; subject: Hi; body: Hello; send in 1 seconds")
    view = await api.wait_for(smuggled, "waiting")
    assert view["to"] == [] and "not a single email address" in view["last_reply"], view
    await asyncio.sleep(2)
    assert smtp_sink.to("eve@evil.example") == [] and smtp_sink.to("bob2@example.com") == []
