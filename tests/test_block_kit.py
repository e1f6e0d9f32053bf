"""The Slack surfaces as Block Kit: the card, the edit modal and App Home, within Slack's documented limits,
and the README's examples (docs/*-example.json) rendered here so they cannot drift from the code.

`UPDATE_EXAMPLES=1 pytest tests/test_block_kit.py` (or `make examples`) writes the files again."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.slack.assistant import scheduled_summary
from bot.slack.card import CANCEL_ACTION, SEND_NOW_ACTION, UNDO_ACTION, fallback_text, render
from bot.slack.home import OPEN_THREAD_ACTION, home_view, merged
from bot.slack.modal import BODY, SEND_AT, SUBJECT, TO, Opened, edit_modal, field_errors, read_edit
from settings import REPO_ROOT
from tests.fakes.block_kit_limits import block_problems, view_problems
from workflows.decisions import Policy, edit_errors
from workflows.model import CardRef, EmailStatus, EmailView
from workflows.sendtime import resolve

NOW = datetime(2026, 11, 26, 16, 59, 52, tzinfo=UTC)  # 8:59:52 AM in Los Angeles
ZONE = "America/Los_Angeles"


def view(**changes: Any) -> EmailView:
    base: dict[str, Any] = {
        "status": EmailStatus.SCHEDULED,
        "to": ["bob@example.com"],
        "unconfirmed": [],
        "subject": "¡Gracias por la demo!",
        "body": "Hola Bob,\n\nMuchas gracias por la demo de ayer.\n\nAna",
        "send_at": datetime(2026, 11, 27, 17, 0, tzinfo=UTC),
        "send_at_local": "Fri 27 Nov 2026, 9:00 AM PST",
        "will_send": True,
        "plan": "Sends Fri 27 Nov 2026, 9:00 AM PST.",
        "timezone": ZONE,
        "owner": "U0ANA",
        "draft": "",
        "last_reply": "Scheduled for Fri 27 Nov 2026, 9:00 AM PST.",
        "last_error": "",
        "pending_requests": 0,
        "send_attempts": 0,
        "revision": 2,
        "sent_message_id": "",
        "conversation": [],
        "card": CardRef(channel="D0ANA", thread_ts="1764176392.000100", ts="1764176393.000200"),
    }
    return EmailView(**{**base, **changes})


def undoing() -> EmailView:
    until = NOW + timedelta(seconds=8)
    return view(
        send_at=until,
        send_at_local="Thu 26 Nov 2026, 9:00 AM PST",
        undo_until=until,
        plan="Sends Thu 26 Nov 2026, 9:00 AM PST.",
        last_reply="Sending now. Sending in 10 seconds (you can undo until then).",
    )


def confirming() -> EmailView:
    return view(
        status=EmailStatus.WAITING,
        to=["bob@example.com"],
        unconfirmed=["accountant@numbers.example"],
        will_send=False,
        plan="On hold (was planned for Fri 27 Nov 2026, 9:00 AM PST): answer the question above and I will "
        "schedule it.",
        last_reply="New recipient: accountant@numbers.example. It is not in your own messages, so I will not "
        "write to it until you confirm it (or remove it) on the card.",
        last_error="New recipient: accountant@numbers.example.",
    )


# --- Slack's limits (docs.slack.dev/reference/block-kit): tests/fakes/block_kit_limits.py ----------------


def check_limits(blocks: list[dict[str, Any]], max_blocks: int) -> None:
    problems = block_problems(blocks, max_blocks)
    assert not problems, problems


def check_modal(modal: dict[str, Any]) -> None:
    problems = view_problems(modal)
    assert not problems, problems


def test_the_limit_checker_names_what_slack_would_refuse() -> None:
    """The checker the fake Slack answers `invalid_blocks` with: each limit it guards can fail."""
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]},
        {
            "type": "actions",
            "elements": [{"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "b" * 76}}],
        },
    ]
    assert block_problems(blocks, 50) == [
        "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        "must be less than 3001 characters [json-pointer:/blocks/1/text/text]",
        "must be less than 2001 characters [json-pointer:/blocks/2/fields/0/text]",
        "must be less than 76 characters [json-pointer:/blocks/3/elements/0/text/text]",
    ]
    assert block_problems([{"type": "divider"}] * 51, 50) and not block_problems([{"type": "divider"}] * 50, 50)
    assert view_problems({"type": "modal", "title": {"type": "plain_text", "text": "t" * 25}, "blocks": blocks[1:2]})


# --- the examples ------------------------------------------------------------------------------------------


def examples() -> dict[str, Any]:
    scheduled, waiting = undoing(), confirming()
    home = home_view(
        [
            ("slack-T0-D0ANA-1764176392.000100", scheduled),
            ("slack-T0-D0ANA-1764170000.000100", view(subject="Lunch on Friday?", to=["carl@example.com"])),
            ("slack-T0-D0ANA-1764160000.000100", waiting.model_copy(update={"subject": "Quarterly numbers"})),
            (
                "slack-T0-D0ANA-1764150000.000100",
                view(status=EmailStatus.SENT, will_send=False, plan="Sent.", subject="Welcome aboard"),
            ),
        ],
        links={"slack-T0-D0ANA-1764176392.000100": "https://example.slack.com/archives/D0ANA/p1764176392000100"},
        now=NOW,
    )
    return {
        "card-example.json": {"text": fallback_text(scheduled), "blocks": render("slack-T0-D0ANA-1", scheduled, NOW)},
        "card-confirm-example.json": {"text": fallback_text(waiting), "blocks": render("slack-T0-D0ANA-2", waiting)},
        "modal-example.json": edit_modal("slack-T0-D0ANA-1", view()),
        "home-example.json": home,
    }


@pytest.mark.parametrize("name", sorted(examples()))
def test_examples_in_docs_are_what_the_code_renders(name: str) -> None:
    rendered = examples()[name]
    if name.startswith("card"):
        check_limits(rendered["blocks"], 50)
    elif name.startswith("modal"):
        check_modal(rendered)
    else:
        check_limits(rendered["blocks"], 100)
    path = REPO_ROOT / "docs" / name
    text = json.dumps(rendered, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_EXAMPLES") == "1":
        path.write_text(text)
    assert path.exists() and path.read_text() == text, f"docs/{name} is stale: UPDATE_EXAMPLES=1 regenerates it"


# --- the modal ---------------------------------------------------------------------------------------------


def submitted(to: str, subject: str, body: str, when: datetime | None) -> dict[str, Any]:
    """state.values as Slack sends them in view_submission."""
    return {
        TO: {"value": {"type": "plain_text_input", "value": to}},
        SUBJECT: {"value": {"type": "plain_text_input", "value": subject}},
        BODY: {"value": {"type": "plain_text_input", "value": body}},
        SEND_AT: {"value": {"type": "datetimepicker", "selected_date_time": int(when.timestamp()) if when else None}},
    }


def test_the_modal_is_filled_with_the_email_and_its_send_time() -> None:
    modal = edit_modal("wf-1", view())
    check_modal(modal)
    inputs = {b["block_id"]: b["element"] for b in modal["blocks"] if b["type"] == "input"}
    assert inputs[TO]["initial_value"] == "bob@example.com" and inputs[BODY]["multiline"] is True
    assert inputs[SEND_AT]["initial_date_time"] == int(datetime(2026, 11, 27, 17, 0, tzinfo=UTC).timestamp())
    card = view().card
    assert card is not None
    assert Opened.load(modal["private_metadata"]) == Opened(
        "wf-1", ZONE, keep_body=False, version=view().version, channel=card.channel, thread_ts=card.thread_ts
    )
    # On hold with a question open, it keeps its time: so does the modal, or saving a fixed address would drop it.
    on_hold = edit_modal("wf-1", view(will_send=False))
    kept = next(b for b in on_hold["blocks"] if b["block_id"] == SEND_AT)["element"]
    assert kept["initial_date_time"] == int(datetime(2026, 11, 27, 17, 0, tzinfo=UTC).timestamp())
    undone = edit_modal("wf-1", view(will_send=False, send_at=None, send_at_local=None))  # Undo drops the time
    assert "initial_date_time" not in next(b for b in undone["blocks"] if b["block_id"] == SEND_AT)["element"]


def test_a_body_longer_than_a_slack_field_is_kept_not_cut() -> None:
    modal = edit_modal("wf-1", view(body="x" * 3001))
    check_modal(modal)
    assert BODY not in [b.get("block_id") for b in modal["blocks"]]
    opened = Opened.load(modal["private_metadata"])
    edit, errors = read_edit(submitted("bob@example.com", "S", "", None), opened, body="x" * 3001)
    assert edit is not None and edit.body == "x" * 3001 and not errors


def test_the_picked_instant_becomes_the_wall_clock_time_in_the_emails_zone() -> None:
    when = datetime(2026, 12, 1, 9, 30, tzinfo=ZoneInfo(ZONE))
    edit, errors = read_edit(
        submitted("a@x.example, b@y.example;\nc@z.example", " Hi ", "Body", when), Opened("wf", ZONE, False)
    )
    assert not errors and edit is not None
    assert edit.to == ["a@x.example", "b@y.example", "c@z.example"]
    assert edit.send_at_local is not None and edit.send_at_local.startswith("2026-12-01T09:30")
    assert resolve(edit.send_at_local, ZONE, NOW) == when.astimezone(UTC)
    edit, _ = read_edit(submitted("a@x.example", "S", "B", None), Opened("wf", ZONE, False))
    assert edit is not None and edit.send_at_local is None, "empty picker: not scheduled"


def test_the_second_130_am_of_the_night_clocks_go_back_is_the_one_picked() -> None:
    """America/Los_Angeles, 2026-11-01: 1:30 AM happens at 08:30 UTC (PDT) and again at 09:30 UTC (PST)."""
    second = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    edit, errors = read_edit(submitted("a@x.example", "S", "B", second), Opened("wf", "America/Los_Angeles", False))
    assert not errors and edit is not None and edit.send_at_local is not None
    before = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    assert resolve(edit.send_at_local, "America/Los_Angeles", before) == second


def test_bad_fields_are_answered_beside_their_blocks() -> None:
    edit, _ = read_edit(
        submitted("not an address", "", "B", datetime(2020, 1, 1, tzinfo=UTC)), Opened("wf", ZONE, False)
    )
    assert edit is not None
    errors = field_errors(
        edit_errors(edit, timezone=ZONE, now=NOW, policy=Policy()), Opened("wf", ZONE, keep_body=False)
    )
    assert set(errors) == {TO, SUBJECT, SEND_AT}
    assert "in the past" in errors[SEND_AT]
    limited = Policy(allowed_domains=("example.com",), max_body_chars=100)
    edit, _ = read_edit(submitted("eve@evil.example", "S", "x" * 101, None), Opened("wf", ZONE, False))
    assert edit is not None
    assert set(edit_errors(edit, timezone=ZONE, now=NOW, policy=limited)) == {TO, BODY}


# --- App Home ----------------------------------------------------------------------------------------------


def section_of(home: dict[str, Any], email_subject: str) -> str:
    """The header of the section an email is listed in."""
    current = ""
    for block in home["blocks"]:
        if block["type"] == "header":
            current = block["text"]["text"]
        elif block["type"] == "section" and email_subject in block["text"]["text"]:
            return current
    raise AssertionError(f"{email_subject} not listed")


def test_home_lists_emails_by_what_happens_next_with_their_buttons() -> None:
    home = examples()["home-example.json"]
    check_limits(home["blocks"], 100)
    assert section_of(home, "¡Gracias") == "Going out" and section_of(home, "Lunch on Friday?") == "Going out"
    assert section_of(home, "Quarterly numbers") == "Waiting for you"
    assert section_of(home, "Welcome aboard") == "Recently sent or canceled"
    going = [b for b in home["blocks"] if b["type"] == "section"]
    assert "¡Gracias" in going[0]["text"]["text"], "soonest first"
    actions = {b["block_id"]: [e["action_id"] for e in b["elements"]] for b in home["blocks"] if b["type"] == "actions"}
    assert actions["home-slack-T0-D0ANA-1764176392.000100"] == [UNDO_ACTION, CANCEL_ACTION, OPEN_THREAD_ACTION]
    assert actions["home-slack-T0-D0ANA-1764170000.000100"] == [SEND_NOW_ACTION, CANCEL_ACTION]
    assert "home-slack-T0-D0ANA-1764150000.000100" not in actions, "nothing to do on a sent email without a link"
    assert "(America/Los_Angeles)" in json.dumps(home)


def test_home_stays_within_slacks_limits_with_many_emails_and_says_how_many_more() -> None:
    many = [(f"wf-{i}", view(subject=f"S{i}")) for i in range(40)] + [
        (f"done-{i}", view(status=EmailStatus.CANCELED, will_send=False, subject=f"D{i}")) for i in range(40)
    ]
    home = home_view(many, now=NOW)
    check_limits(home["blocks"], 100)
    assert "…and 25 more." in json.dumps(home, ensure_ascii=False)


def test_home_empty_state_and_a_new_email_the_search_does_not_find_yet() -> None:
    assert "No emails yet" in json.dumps(home_view([]))
    listed = [("old", view(subject="Old"))]
    assert [i for i, _ in merged(listed, {"new": view(subject="New"), "old": view(subject="Stale")})] == ["new", "old"]
    assert merged(listed, {"old": view(subject="Stale")})[0][1].subject == "Old", "the listing's describe is fresher"


def test_an_email_with_as_many_recipients_as_allowed_fits_every_surface() -> None:
    """MAX_RECIPIENTS_PER_EMAIL allows 100: with long addresses, a subject of "&"s (escaped five times longer)
    and more new recipients than the card has buttons for, the card, the Home tab and the modal stay within
    Slack's limits (Slack refuses the whole message or view otherwise: a card never updated, a modal never
    opened), and say how many they do not show."""
    many = [f"recipient-number-{n:03d}-with-a-long-name@a-long-department.example.com" for n in range(100)]
    new = [f"new-{n:02d}@partner.example" for n in range(15)]
    crowded = view(to=many, unconfirmed=new, subject="&" * 998, will_send=False)
    blocks = render("slack-T0-D0-1.2", crowded)
    check_limits(blocks, 50)
    text = json.dumps(blocks)
    assert "and 73 more" in text and "and 5 more new recipients" in text, "how many are not shown, said"
    home = home_view([("slack-T0-D0-1.2", crowded)])
    check_limits(home["blocks"], 100)
    assert "and 92 more" in json.dumps(home)
    modal = edit_modal("slack-T0-D0-1.2", crowded)
    check_modal(modal)
    opened = Opened.load(modal["private_metadata"])
    assert opened.keep_to and TO not in {b.get("block_id") for b in modal["blocks"]}
    values = {
        SUBJECT: {"value": {"type": "plain_text_input", "value": "Fewer words"}},
        BODY: {"value": {"type": "plain_text_input", "value": "Body"}},
        SEND_AT: {"value": {"type": "datetimepicker", "selected_date_time": None}},
    }
    edit, errors = read_edit(values, opened, to=many)
    assert not errors and edit is not None and edit.to == many
    assert set(field_errors({"to": "too many"}, opened)) == {SUBJECT}, "shown on a field the modal has"


def test_home_lists_busy_emails_as_last_seen_with_cancel_and_says_how_many_more() -> None:
    seen = view(subject="Quarterly & more", to=["ana@example.com"])
    busy = [("wf-seen", seen), ("wf-new", None)] + [(f"wf-{i}", None) for i in range(10)]
    home = home_view([("wf-going", view(subject="Going"))], busy=busy, links={"wf-seen": "https://x/p1"}, now=NOW)
    check_limits(home["blocks"], 100)
    headers = [b["text"]["text"] for b in home["blocks"] if b["type"] == "header"]
    assert headers == ["Your emails", "Going out", "Being worked on"]
    text = json.dumps(home, ensure_ascii=False)
    assert "*Quarterly &amp; more*  to ana@example.com" in text and "*An email*" in text
    assert "…and 7 more." in text and "No emails yet" not in text
    actions = {b["block_id"]: [e["action_id"] for e in b["elements"]] for b in home["blocks"] if b["type"] == "actions"}
    assert actions["home-wf-seen"] == [CANCEL_ACTION, OPEN_THREAD_ACTION]
    assert actions["home-wf-new"] == [CANCEL_ACTION]


def test_the_listing_answer_counts_the_emails_too_busy_to_describe() -> None:
    assert scheduled_summary([]) == "Nothing is scheduled right now. Your App Home tab lists all your emails."
    assert "but I am working on 1 email that may be." in scheduled_summary([], busy=1)
    going = scheduled_summary([("a", view(subject="Going"))], busy=2)
    assert going.startswith("Scheduled:\n• *Going*") and "also working on 2 more emails that may be scheduled" in going


def test_user_and_model_text_is_escaped_before_it_is_cut_so_the_card_stays_within_slacks_limits() -> None:
    """Escaping makes "<", ">" and "&" four or five times longer: cut before escaping, a pasted bit of HTML in
    an edit or a reply quoting it would make a section longer than Slack takes, and every card update fail."""
    html = view(
        body="<p>" * 2000,
        draft="<p>\n" * 333,
        last_reply="<b>" * 500,
        last_error="&" * 400,
        status=EmailStatus.WAITING,
        will_send=False,
    )
    blocks = render("slack-T0-D0-1.2", html)
    check_limits(blocks, 50)
    text = json.dumps(blocks)
    assert "&lt;p&gt;" in text and "&lt;b&gt;" in text and "&amp;" in text
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            cut = block["text"]["text"]
            assert not cut.endswith(("&…", "&l…", "&lt…", "&am…", "&amp…")), "an entity cut in half"
