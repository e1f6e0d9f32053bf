"""apply_reply: the model proposes, this code disposes. Pure logic, no engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from workflows.agent import AgentReply
from workflows.decisions import Outcome, Policy, apply_reply, hold, send_now
from workflows.model import EmailDraft

LA = "America/Los_Angeles"
NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # Wed 25 Nov 2026, 12:00 PST
TOMORROW_9_PST = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
TOMORROW_10_PST = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
ALLOWED = ("example.com", "example.org")


def reply(**fields: Any) -> AgentReply:
    return AgentReply.model_validate({"reply": "Done.", "action": "draft", **fields})


def apply(agent_reply: AgentReply, email: EmailDraft | None = None, allowed_domains: tuple[str, ...] = ()) -> Outcome:
    return apply_reply(agent_reply, email or EmailDraft(), timezone=LA, now=NOW, allowed_domains=allowed_domains)


def complete(**fields: Any) -> dict[str, Any]:
    return {"to": ["ana@example.com"], "subject": "Lunch", "body": "Hi Ana,\nlunch tomorrow?", **fields}


def scheduled_email(**fields: Any) -> EmailDraft:
    return EmailDraft.model_validate(
        {
            "to": ["ana@example.com"],
            "subject": "Lunch",
            "body": "Hi Ana",
            "send_at": TOMORROW_9_PST,
            "scheduled": True,
            "revision": 2,
            **fields,
        }
    )


# --- cancel -------------------------------------------------------------------------------


def test_cancel_is_cancel_and_leaves_the_email_alone() -> None:
    email = scheduled_email()
    outcome = apply(AgentReply(reply="OK, I canceled it.", action="cancel", subject="ignored"), email)
    assert outcome.next == "cancel"
    assert outcome.email == email
    assert outcome.reply == "OK, I canceled it."


# --- scheduling -----------------------------------------------------------------------------


def test_complete_email_with_future_time_is_scheduled_in_utc() -> None:
    outcome = apply(reply(action="schedule", send_at_local="2026-11-26T09:00:00", **complete()))
    assert outcome.next == "schedule"
    assert outcome.email.send_at == TOMORROW_9_PST
    assert outcome.email.send_at is not None and outcome.email.send_at.utcoffset() == timedelta(0)
    assert outcome.email.to == ["ana@example.com"]
    assert outcome.email.subject == "Lunch"
    assert outcome.email.body == "Hi Ana,\nlunch tomorrow?"
    assert outcome.email.revision == 1
    assert outcome.problem == ""


def test_schedule_without_a_model_message_says_when_in_the_users_zone() -> None:
    outcome = apply(reply(reply="", action="schedule", send_at_local="2026-11-26T09:00:00", **complete()))
    assert outcome.next == "schedule"
    assert outcome.reply == "Scheduled for Thu 26 Nov 2026, 9:00 AM PST."


def test_changing_only_the_time_keeps_the_revision() -> None:
    email = scheduled_email()
    outcome = apply(reply(action="schedule", send_at_local="2026-11-27T10:30:00"), email)
    assert outcome.next == "schedule"
    assert outcome.email.send_at == datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
    assert outcome.email.revision == email.revision


def test_repeating_the_same_content_keeps_the_revision() -> None:
    email = scheduled_email()
    outcome = apply(reply(to=["ana@example.com"], subject="Lunch", body="Hi Ana\n"), email)
    assert outcome.email.revision == email.revision


def test_changing_content_and_time_bumps_the_revision() -> None:
    email = scheduled_email()
    outcome = apply(reply(action="schedule", body="Hi Ana, dinner instead?", send_at_local="2026-11-27T18:00"), email)
    assert outcome.next == "schedule"
    assert outcome.email.revision == email.revision + 1
    assert outcome.email.send_at == datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def test_revising_a_scheduled_email_keeps_its_time() -> None:
    email = scheduled_email()
    outcome = apply(reply(subject="Lunch on Thursday"), email)
    assert outcome.next == "schedule"
    assert outcome.email.send_at == email.send_at
    assert outcome.email.subject == "Lunch on Thursday"
    assert outcome.email.revision == email.revision + 1


def test_time_within_grace_means_now() -> None:
    outcome = apply(reply(action="schedule", send_at_local="2026-11-25T11:59:00", **complete()))
    assert outcome.next == "schedule"
    assert outcome.email.send_at == NOW


def test_recipient_inside_allowed_domains_is_scheduled() -> None:
    outcome = apply(
        reply(action="schedule", send_at_local="2026-11-26T09:00", **complete(to=["Bob@Example.ORG"])),
        allowed_domains=ALLOWED,
    )
    assert outcome.next == "schedule"
    assert outcome.email.to == ["Bob@example.org"]


def test_duplicate_recipients_are_collapsed() -> None:
    outcome = apply(reply(**complete(to=["ana@example.com", " ANA@example.com ", "bob@example.com"])))
    assert outcome.email.to == ["ana@example.com", "bob@example.com"]


# --- waiting for the user ---------------------------------------------------------------------


def test_missing_recipient_waits_with_a_question_naming_it() -> None:
    outcome = apply(reply(action="schedule", subject="Lunch", body="Hi", send_at_local="2026-11-26T09:00"))
    assert outcome.next == "wait"
    assert "recipient" in outcome.problem
    assert "subject" not in outcome.problem and "body" not in outcome.problem
    assert outcome.reply == outcome.problem, "the model's filler ('Done.') does not follow the question"


def test_everything_missing_names_everything() -> None:
    outcome = apply(reply(action="schedule", send_at_local="2026-11-26T09:00"))
    assert outcome.next == "wait"
    assert outcome.problem == "To schedule it I still need the recipient, subject, body."


def test_draft_without_a_time_waits_without_a_problem() -> None:
    outcome = apply(reply(**complete()))
    assert outcome.next == "wait"
    assert outcome.email.send_at is None
    assert outcome.problem == ""
    assert outcome.email.revision == 1


def test_just_answering_changes_nothing() -> None:
    email = scheduled_email()
    outcome = apply(AgentReply(reply="It goes out tomorrow at 9."), email)
    assert outcome.next == "schedule"
    assert outcome.email == email


@pytest.mark.parametrize(
    ("to", "why"),
    [
        (["not-an-address"], "not a valid email address"),
        (["ana@"], "not a valid email address"),
        ([""], "not a single email address"),
        (["ana@example.com\r\nBcc: eve@evil.org"], "not a single email address"),
        (["ana@example.com\nbob@example.com"], "not a single email address"),
        (["a@x.com, b@y.com"], "not a single email address"),
        (["a@x.com; b@y.com"], "not a single email address"),
        (['"Ana" <ana@example.com>, <bob@example.com>'], "not a single email address"),
    ],
)
def test_bad_recipient_waits_and_says_why(to: list[str], why: str) -> None:
    email = scheduled_email()
    outcome = apply(reply(action="schedule", to=to, send_at_local="2026-11-26T10:00"), email)
    assert outcome.next == "wait"
    assert why in outcome.problem
    assert " ".join(outcome.problem.split()) in outcome.reply, "shown on one line"
    # On hold at the time it was given, for when the address comes ("cc Bob" must not lose "at 10").
    assert not outcome.email.scheduled and outcome.email.send_at == TOMORROW_10_PST
    assert outcome.email.to == email.to  # the refused value is not stored


def test_a_problem_reads_as_sentences_without_the_models_filler() -> None:
    outcome = apply(reply(reply="Done.", action="schedule", to=["a@x.com, b@y.com"], send_at_local="2026-11-26T10:00"))
    assert outcome.reply == "'a@x.com, b@y.com' is not a single email address."
    capitalised = apply(reply(reply="Scheduled!", to=[f"p{i}@example.com" for i in range(60)]))
    assert capitalised.reply == "60 recipients is more than the 20 an email may have."
    assert "Scheduled!" not in capitalised.reply


def test_a_question_from_the_model_follows_the_problem() -> None:
    outcome = apply(reply(reply="Should I also copy Bob?", action="schedule", to=["nope"]))
    assert outcome.reply.startswith("'nope' is not a valid email address")
    assert outcome.reply.endswith(". Should I also copy Bob?")


def test_recipient_outside_allowed_domains_is_refused() -> None:
    email = scheduled_email()
    outcome = apply(
        reply(action="schedule", to=["ana@example.com", "eve@evil.org"], send_at_local="2026-11-26T10:00"),
        email,
        allowed_domains=ALLOWED,
    )
    assert outcome.next == "wait"
    assert "eve@evil.org is outside the domains" in outcome.problem
    assert "example.com" in outcome.problem
    assert not outcome.email.scheduled and outcome.email.send_at == TOMORROW_10_PST
    assert outcome.email.to == ["ana@example.com"]


def test_subject_with_newlines_is_one_line() -> None:
    outcome = apply(reply(**complete(subject="Lunch\r\nBcc: eve@evil.org\n\ttomorrow ")))
    assert outcome.email.subject == "Lunch Bcc: eve@evil.org tomorrow"


def test_body_keeps_inner_newlines_and_drops_outer_blank_lines() -> None:
    outcome = apply(reply(**complete(body="\n\nHi Ana,\n\nlunch?\n\n")))
    assert outcome.email.body == "Hi Ana,\n\nlunch?"


def test_past_time_waits_with_the_question() -> None:
    outcome = apply(reply(action="schedule", send_at_local="2026-11-24T09:00:00", **complete()))
    assert outcome.next == "wait"
    assert "in the past" in outcome.problem
    assert "When should I send it?" in outcome.reply
    assert outcome.email.send_at is None


def test_past_time_on_a_scheduled_email_unschedules_it() -> None:
    outcome = apply(reply(action="schedule", send_at_local="2026-11-24T09:00:00"), scheduled_email())
    assert outcome.next == "wait"
    assert outcome.email.send_at is None


def test_unreadable_time_waits_with_the_question() -> None:
    outcome = apply(reply(action="schedule", send_at_local="tomorrow at 9", **complete()))
    assert outcome.next == "wait"
    assert "could not read" in outcome.problem
    assert outcome.email.send_at is None


def test_problems_are_all_reported() -> None:
    outcome = apply(reply(action="schedule", to=["nope"], send_at_local="yesterday", **{"subject": "S", "body": "B"}))
    assert outcome.next == "wait"
    assert "nope" in outcome.problem and "yesterday" in outcome.problem
    assert outcome.problem.count("; ") == 1


def test_hold_clears_the_time() -> None:
    email = scheduled_email()
    outcome = apply(AgentReply(reply="Holding it.", action="hold"), email)
    assert outcome.next == "wait"
    assert outcome.email.send_at is None
    assert outcome.email.revision == email.revision
    assert outcome.email.to == email.to


def test_an_undone_email_is_not_armed_again_by_a_message_without_a_time() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    soon = scheduled_email().model_copy(update={"send_at": now + timedelta(seconds=8), "undo_until": now})
    held = hold(soon).email
    assert (held.scheduled, held.send_at, held.undo_until) == (False, None, None)
    outcome = apply_reply(reply(action="draft", subject="Better words"), held, timezone="UTC", now=now)
    assert outcome.next == "wait" and outcome.email.send_at is None and not outcome.email.scheduled
    # Nor by one where the model repeats the earlier time while it only drafts ("make it shorter").
    again = (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    outcome = apply_reply(reply(action="draft", body="Shorter", send_at_local=again), held, timezone="UTC", now=now)
    assert outcome.next == "wait" and outcome.email.send_at is None and not outcome.email.scheduled


def test_a_time_the_model_gives_at_another_offset_is_asked_about_not_sent_hours_off() -> None:
    """LA user, "tomorrow at 9": a "Z" tacked on would mean 1:00 AM for them."""
    outcome = apply(reply(action="schedule", send_at_local="2026-11-26T09:00:00Z", **complete()))
    assert outcome.next == "wait" and outcome.email.send_at is None
    assert "1:00 AM" in outcome.problem and "your own time" in outcome.reply
    for text in ("2026-11-26T09:00:00-08:00", "2026-11-26T09:00:00"):  # their own offset, or none
        scheduled = apply(reply(action="schedule", send_at_local=text, **complete()))
        assert scheduled.next == "schedule" and scheduled.email.send_at == TOMORROW_9_PST, text


def test_hold_wins_over_a_time_in_the_same_reply() -> None:
    outcome = apply(reply(action="hold", send_at_local="2026-11-26T09:00"), scheduled_email())
    assert outcome.next == "wait"
    assert outcome.email.send_at is None


# --- properties -------------------------------------------------------------------------------


VALID = ["ana@example.com", "Bob@Example.org", "carol.d+x@example.com"]
SEPARATORS = ["\r\n", "\n", "\r", ",", ";", "<", ">", '"', " ", "\u2028", "\x85"]
addresses = st.one_of(
    st.sampled_from([*VALID, "eve@evil.org", "eve@example.com.evil.org"]),
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.builds(
        lambda a, sep, b: a + sep + b,
        st.sampled_from(VALID),
        st.sampled_from(SEPARATORS),
        st.sampled_from([*VALID, "Bcc: eve@evil.org", "eve@evil.org", ""]),
    ),
)
subjects = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(["\r", "\n", "\u2028", "\x0b"])),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(to=st.lists(addresses, min_size=1, max_size=3), subject=subjects)
def test_nothing_with_a_smuggled_header_is_ever_scheduled(to: list[str], subject: str) -> None:
    outcome = apply(
        reply(action="schedule", to=to, subject=subject, body="B", send_at_local="2026-11-26T09:00"),
        allowed_domains=ALLOWED,
    )
    event(outcome.next)
    assert len(outcome.email.subject.splitlines()) <= 1
    assert outcome.email.subject == outcome.email.subject.strip()
    for address in outcome.email.to:
        assert not any(ch in address for ch in '\r\n,;<>"')
        assert address.lower().endswith(("@example.com", "@example.org"))
    if outcome.next == "schedule":
        assert outcome.email.to and outcome.email.subject
        assert outcome.email.send_at == TOMORROW_9_PST
    else:
        assert outcome.next == "wait"
        assert outcome.problem


@settings(max_examples=200, deadline=None)
@given(
    minutes=st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60),
    scheduled=st.booleans(),
)
def test_a_time_is_scheduled_iff_it_is_not_too_far_in_the_past(minutes: int, scheduled: bool) -> None:
    local_text = (NOW + timedelta(minutes=minutes)).astimezone(ZoneInfo(LA)).replace(tzinfo=None).isoformat()
    email = scheduled_email() if scheduled else EmailDraft()
    outcome = apply(reply(action="schedule", send_at_local=local_text, **complete()), email)
    if minutes >= -2:
        assert outcome.next == "schedule"
        assert outcome.email.send_at == max(NOW, NOW + timedelta(minutes=minutes))
    else:
        assert outcome.next == "wait"
        assert outcome.email.send_at is None


def test_a_kept_time_that_has_passed_is_asked_about_not_sent_late() -> None:
    """The time was given while the recipient was missing; the recipient comes an hour later."""
    from datetime import UTC, datetime, timedelta

    from workflows.agent import AgentReply
    from workflows.decisions import apply_reply
    from workflows.model import EmailDraft

    given = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    email = EmailDraft(subject="Hi", body="Hello", send_at=given)
    outcome = apply_reply(
        AgentReply(reply="Added.", action="draft", to=["bob@example.com"]),
        email,
        timezone="UTC",
        now=given + timedelta(hours=1),
    )
    assert outcome.next == "wait"
    assert outcome.email.send_at is None
    assert "has passed" in outcome.reply


def test_a_time_echoed_back_by_the_model_keeps_the_second_of_two_repeated_hours() -> None:
    """On 1 Nov 2026 clocks in New York go back: 01:30 happens twice. The owner picked the second (06:30 UTC,
    in the edit modal); a later answer that merely repeats "01:30" must not move it an hour earlier."""
    zone_name = "America/New_York"
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert second.astimezone(ZoneInfo(zone_name)).fold == 1
    email = EmailDraft(to=["ana@example.com"], subject="Late", body="Hi", send_at=second, scheduled=True)
    before = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    echoed = apply_reply(
        reply(action="schedule", send_at_local="2026-11-01T01:30:00"), email, timezone=zone_name, now=before
    )
    assert echoed.email.send_at == second
    asked = apply_reply(
        reply(action="schedule", send_at_local="2026-11-01T01:45:00"), email, timezone=zone_name, now=before
    )
    assert asked.email.send_at == datetime(2026, 11, 1, 5, 45, tzinfo=UTC), "a new time: the first 01:45"


def test_an_echoed_time_keeps_a_send_time_made_from_now_which_carries_microseconds_the_model_never_saw() -> None:
    """ "In 90 minutes" at 00:45:10.123456 PDT on the night clocks go back is the second 1:15 (PST). The model
    is shown it to the second; echoing that (or the same minute without seconds) keeps the instant."""
    zone_name = "America/Los_Angeles"
    now = datetime(2026, 11, 1, 7, 45, 10, 123456, tzinfo=UTC)
    first = apply_reply(
        reply(action="schedule", send_in_minutes=90),
        EmailDraft(to=["a@example.com"], subject="S", body="B"),
        timezone=zone_name,
        now=now,
    )
    send_at = first.email.send_at
    assert send_at is not None and send_at.astimezone(ZoneInfo(zone_name)).fold == 1
    for echoed in ("2026-11-01T01:15:10", "2026-11-01T01:15"):
        later = apply_reply(
            reply(action="schedule", subject="S2", send_at_local=echoed), first.email, timezone=zone_name, now=now
        )
        assert later.email.send_at == send_at, echoed


def test_an_over_long_body_kept_for_the_owner_to_shorten_is_not_sent_by_send_now() -> None:
    policy = Policy(max_body_chars=100)
    kept = apply_reply(
        reply(action="schedule", to=["a@example.com"], subject="S", body="x" * 500, send_in_minutes=5),
        EmailDraft(),
        timezone="UTC",
        now=NOW,
        policy=policy,
    )
    assert kept.next == "wait" and not kept.email.scheduled and len(kept.email.body) == 500
    pressed = send_now(kept.email, timezone="UTC", now=NOW, policy=policy)
    assert pressed.next == "wait" and not pressed.email.scheduled
    assert "the limit is 100" in pressed.reply


def test_the_reply_always_says_the_time_the_code_worked_out() -> None:
    """The model says "9 AM" while its time field says 21:00: the user reads the time the email will go at."""
    out = apply(
        reply(
            action="schedule",
            reply="Done: it goes out tomorrow at 9 AM.",
            **complete(),
            send_at_local="2026-11-26T21:00:00",
        )
    )
    assert out.next == "schedule"
    assert (
        out.reply.startswith("Done: it goes out tomorrow at 9 AM.")
        and "Scheduled for Thu 26 Nov 2026, 9:00 PM PST." in out.reply
    )


def test_scheduled_in_words_with_no_time_is_a_question_not_a_claim() -> None:
    out = apply(reply(action="schedule", reply="Scheduled for tomorrow at 9:00.", **complete()))
    assert out.next == "wait" and not out.email.scheduled
    assert "Scheduled" not in out.reply and "When should I send it?" in out.reply


def test_an_edit_from_an_older_version_is_refused_and_changes_nothing() -> None:
    from workflows.decisions import Policy, apply_edit
    from workflows.model import EmailEdit

    email = scheduled_email(version=3)
    stale = EmailEdit(to=["ana@example.com"], subject="Old", body="Old words", base_version=2)
    out = apply_edit(email, stale, timezone=LA, now=NOW, policy=Policy())
    assert out.email == email and "changed after you opened the editor" in out.reply
    current = stale.model_copy(update={"base_version": 3})
    assert apply_edit(email, current, timezone=LA, now=NOW, policy=Policy()).email.subject == "Old"


def test_every_change_to_the_email_bumps_its_version_not_only_its_words() -> None:
    """Undo (a hold) or a new time leaves the revision (the words) as it is; an edit opened before must still
    be refused, so the version moves on every change the record keeps."""
    from tests.test_states import Attributes
    from workflows.record import Record

    record = Record(Attributes())  # type: ignore[arg-type]
    record.email = scheduled_email()
    first = record.email.version
    record.email = record.email.model_copy(update={"scheduled": False, "send_at": None})  # Undo
    assert record.email.version == first + 1 and record.email.revision == scheduled_email().revision
    record.email = record.email.model_copy()  # no change: no new version
    assert record.email.version == first + 1


def test_in_two_hours_is_two_hours_of_real_time_on_the_night_clocks_change() -> None:
    """New York, 1 Nov 2026, 12:30 AM EDT; clocks go back at 2 AM. A wall clock moved on two hours (2:30 AM EST)
    is three hours away: "in 2 hours" is counted by the code, in UTC, from a number of minutes."""
    from workflows.decisions import Policy

    now = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 12:30 AM EDT
    out = apply_reply(
        reply(action="schedule", **complete(), send_in_minutes=120),
        EmailDraft(),
        timezone="America/New_York",
        now=now,
        policy=Policy(),
    )
    assert out.next == "schedule" and out.email.send_at == now + timedelta(hours=2)
    assert "1:30 AM EST" in out.reply, "the second 1:30 of that night, said with its zone"


def test_an_outside_recipient_the_user_wrote_is_asked_about_for_the_real_reason() -> None:
    """With CONFIRM_EXTERNAL_RECIPIENTS, partner@other.com written by the user still waits for a confirmation,
    and the question says why: outside the workspace's domains, not "not in your own messages"."""
    from workflows.decisions import Policy

    policy = Policy(allowed_domains=("corp.example",), confirm_external=True, vouched=frozenset({"partner@other.com"}))
    out = apply_reply(
        reply(action="schedule", **complete(to=["partner@other.com"]), send_at_local="2026-11-26T10:00"),
        EmailDraft(),
        timezone=LA,
        now=NOW,
        policy=policy,
    )
    assert out.next == "wait" and out.email.unconfirmed == ["partner@other.com"]
    assert "outside corp.example" in out.reply and "not in your own messages" not in out.reply


def test_a_relative_time_repeated_while_drafting_does_not_move_the_email() -> None:
    """The model repeats the "120" of an earlier "in 2 hours" while making the body warmer: only a "schedule"
    (the user gave a time now) moves the email; a draft keeps its time."""
    email = scheduled_email()
    out = apply(reply(action="draft", body="Warmer words", send_in_minutes=120), email)
    assert out.email.send_at == email.send_at


def test_a_bad_address_in_a_later_message_holds_the_email_at_its_time_and_the_answer_arms_it_again() -> None:
    """Scheduled for tomorrow 9; "cc Bob from accounting" makes the model propose "Bob": on hold, its time kept
    (before, the time was dropped, and after the address came the email waited for a time nobody changed)."""
    email = scheduled_email()
    held = apply(reply(to=["ana@example.com", "Bob"]), email)
    assert held.next == "wait" and "'Bob'" in held.problem
    assert (held.email.scheduled, held.email.send_at) == (False, email.send_at)
    fixed = apply(reply(to=["ana@example.com", "bob@example.com"]), held.email)
    assert fixed.next == "schedule" and fixed.email.send_at == email.send_at and fixed.email.scheduled


def test_a_scheduled_email_whose_time_passed_while_the_model_worked_goes_now_not_asked_about() -> None:
    """At 8:59:30 "make it warmer"; the model answers at 9:03 (retries): the email was armed for 9, and the
    owner's last words only held it up. Before, it asked "when?" and never went if the owner was away."""
    due = NOW - timedelta(minutes=3)
    email = scheduled_email(send_at=due.isoformat())
    outcome = apply(reply(body="Warmer words"), email)
    assert outcome.next == "schedule" and outcome.email.send_at == NOW and outcome.email.body == "Warmer words"
    assert "it goes now, with your last change" in outcome.reply
    # Not an email on hold whose old time passed: that one is asked about, never sent late.
    on_hold = email.model_copy(update={"scheduled": False})
    asked = apply(reply(body="Warmer words"), on_hold)
    assert asked.next == "wait" and "has passed" in asked.problem
