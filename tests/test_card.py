"""The card shows the email truthfully and safely, whatever the model or the user wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.slack.card import (
    APPLY_EDIT_ACTION,
    CANCEL_ACTION,
    EDIT_ACTION,
    SEND_NOW_ACTION,
    UNDO_ACTION,
    render,
)
from workflows.model import EmailStatus, EmailView


def view(**changes: Any) -> EmailView:
    base: dict[str, Any] = {
        "status": EmailStatus.SCHEDULED,
        "to": ["bob@example.com"],
        "unconfirmed": [],
        "subject": "Hi",
        "body": "Hello",
        "send_at": None,
        "send_at_local": "Thu 26 Nov 2026, 9:00 AM PST",
        "will_send": True,
        "plan": "Sends Thu 26 Nov 2026, 9:00 AM PST.",
        "timezone": "America/Los_Angeles",
        "owner": "U1",
        "draft": "",
        "last_reply": "",
        "last_error": "",
        "pending_requests": 0,
        "send_attempts": 0,
        "revision": 1,
        "sent_message_id": "",
        "conversation": [],
    }
    return EmailView(**{**base, **changes})


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_scheduled_card_has_send_now_edit_and_cancel_with_confirmation_and_local_time() -> None:
    blocks = render("wf-1", view())
    assert action_ids(blocks) == [SEND_NOW_ACTION, EDIT_ACTION, CANCEL_ACTION]
    buttons = {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert all(b["value"] == "wf-1" for b in buttons.values()) and "confirm" in buttons[CANCEL_ACTION]
    assert "9:00 AM PST" in json.dumps(blocks)


def test_within_the_undo_window_the_card_offers_undo_with_the_seconds_and_the_clock_time() -> None:
    now = datetime(2026, 11, 26, 17, 0, 0, tzinfo=UTC)
    until = now + timedelta(seconds=8)
    blocks = render("wf-1", view(undo_until=until, send_at=until), now=now)
    assert action_ids(blocks) == [UNDO_ACTION, CANCEL_ACTION], "no Send now: it is going already; no Edit: Undo first"
    assert "Sending in 8 s (until 9:00:08 AM)" in json.dumps(blocks, ensure_ascii=False), "in the user's zone"


def test_send_now_only_for_a_complete_email_with_nothing_open() -> None:
    assert SEND_NOW_ACTION not in action_ids(render("wf-1", view(status=EmailStatus.WAITING, subject="")))
    assert SEND_NOW_ACTION not in action_ids(render("wf-1", view(unconfirmed=["x@y.example"])))
    assert SEND_NOW_ACTION not in action_ids(render("wf-1", view(status=EmailStatus.PROCESSING)))
    assert SEND_NOW_ACTION in action_ids(render("wf-1", view(status=EmailStatus.FAILED)))


def test_delivery_unknown_offers_send_again() -> None:
    blocks = render("wf-1", view(status=EmailStatus.UNCONFIRMED, will_send=False, plan="Delivery unknown."))
    buttons = {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert buttons[SEND_NOW_ACTION]["text"]["text"] == "Send again"


def test_final_and_sending_cards_have_no_buttons() -> None:
    for status in (EmailStatus.SENT, EmailStatus.CANCELED, EmailStatus.SENDING):
        assert action_ids(render("wf-1", view(status=status))) == [], status


def test_an_unapplied_edit_is_shown_with_its_button() -> None:
    blocks = render("wf-1", view(status=EmailStatus.WAITING, draft="make it warmer"))
    assert APPLY_EDIT_ACTION in action_ids(blocks)
    assert "make it warmer" in json.dumps(blocks)


def test_model_and_user_text_cannot_mention_or_link() -> None:
    text = json.dumps(render("wf-1", view(body="<!channel> <@U999> <https://evil|click>", last_reply="<!here>")))
    assert "<!channel>" not in text and "<@U999>" not in text and "<!here>" not in text
    assert "&lt;!channel&gt;" in text
    assert "<https://evil" not in text and "&lt;https://evil|click&gt;" in text, "a link shows as text"


def test_long_bodies_are_trimmed_within_block_limits() -> None:
    blocks = render("wf-1", view(body="x" * 10_000))
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in render("wf-1", view(body="\n" * 5000)))
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert any("…" in b.get("text", {}).get("text", "") for b in blocks)
