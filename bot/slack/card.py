"""The draft card: one Block Kit message per thread that always shows the email as it stands."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.slack.markup import escape, fit, listed
from workflows.model import EmailStatus, EmailView, utcnow
from workflows.sendtime import is_valid_timezone, seconds_until

EMAIL_THREAD_EVENT = "email_agent_thread"  # message metadata naming the email a thread belongs to
EMAIL_CARD_EVENT = "email_agent_card"  # message metadata naming the email a card shows
CANCEL_ACTION = "cancel_email"
CONFIRM_RECIPIENT_ACTION = "confirm_recipient"
REMOVE_RECIPIENT_ACTION = "remove_recipient"
APPLY_EDIT_ACTION = "apply_edit"
SEND_NOW_ACTION = "send_now"
UNDO_ACTION = "undo_send"
EDIT_ACTION = "edit_email"
BODY_LIMIT = 2500  # a section's text holds 3000 characters
FIELD_LIMIT = 1900  # a section field holds 2000, its label included
RECIPIENTS_SHOWN = 10  # new recipients with their own buttons; the next appear as these are decided

LABELS = {
    EmailStatus.INITIALIZED: ":hourglass_flowing_sand: Starting",
    EmailStatus.WAITING: ":speech_balloon: Waiting for you",
    EmailStatus.PROCESSING: ":hourglass_flowing_sand: Working on it",
    EmailStatus.SCHEDULED: ":alarm_clock: Scheduled",
    EmailStatus.SENDING: ":outbox_tray: Sending",
    EmailStatus.SENT: ":white_check_mark: Sent",
    EmailStatus.FAILED: ":warning: Not sent",
    EmailStatus.UNCONFIRMED: ":grey_question: Delivery unknown",
    EmailStatus.CANCELED: ":no_entry_sign: Canceled",
}


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fallback_text(view: EmailView) -> str:
    to = ", ".join(view.to) or "no recipient yet"
    return f"{LABELS[view.status]}: email to {to}"


def render(email_id: str, view: EmailView, now: datetime | None = None) -> list[dict[str, Any]]:
    """The card's blocks; `now` only counts the seconds left of an undo window (a card cannot count down)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _trim(f"✉️ {view.subject or 'New email'}", 150)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": LABELS[view.status]}]},
    ]
    if view.to or view.subject or view.body:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    # A field holds 2,000 characters: up to 100 recipients, or a subject of "&"s escaped, do not.
                    {"type": "mrkdwn", "text": f"*To*\n{listed(view.to, FIELD_LIMIT) or '_not set_'}"},
                    {"type": "mrkdwn", "text": f"*Subject*\n{fit(escape(view.subject), FIELD_LIMIT) or '_not set_'}"},
                ],
            }
        )
        quoted = _quoted(view.body) if view.body else ""
        body = fit(quoted, BODY_LIMIT) or "_no body yet_"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": body},
            }
        )
    when = _when(view, now or utcnow())
    if when:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": when}]})
    if view.last_reply:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f":robot_face: {fit(escape(view.last_reply), 1500)}"},
            }
        )
    if view.last_error and view.status != EmailStatus.SENT:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f":warning: {fit(escape(view.last_error), 500)}"}],
            }
        )
    if view.draft and not view.over:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": ":pencil2: *You edited a message.* The email above does not use the edit yet:\n"
                    + fit(_quoted(view.draft), 1000),
                },
            }
        )
    if view.unconfirmed and not view.over:
        blocks.extend(_recipient_blocks(email_id, view.unconfirmed))
    actions = _actions(email_id, view)
    if actions:
        blocks.append({"type": "actions", "block_id": "email_actions", "elements": actions})
    return blocks


def _quoted(text: str) -> str:
    """Escaped, each line as a quote (escaping first: a cut made afterwards keeps within Slack's limits)."""
    return "\n".join(f">{line}" for line in escape(text).split("\n"))


def _when(view: EmailView, now: datetime) -> str:
    """Whether it goes out, said plainly (the same words as describe's `plan`)."""
    if view.status == EmailStatus.SENT:
        return f":incoming_envelope: Delivered ({view.sent_message_id})" if view.sent_message_id else ""
    if view.status == EmailStatus.CANCELED:
        return ""
    if view.undo_until is not None:
        return f":hourglass_flowing_sand: {undo_text(view, now)}"
    icon = ":calendar:" if view.will_send else ":double_vertical_bar:"
    return f"{icon} {escape(view.plan)}"


def undo_text(view: EmailView, now: datetime) -> str:
    """'Sending in 8 s (until 9:00:08 AM) — Undo': the seconds as of this rendering, and the clock time, which
    stays true while the card stands still."""
    if view.undo_until is None:
        return ""
    left = seconds_until(view.undo_until, now)
    local = view.undo_until.astimezone(ZoneInfo(view.timezone if is_valid_timezone(view.timezone) else "UTC"))
    until = f"{local.strftime('%I').lstrip('0') or '12'}:{local:%M:%S %p}"
    return f"Sending in {left} s (until {until}) — Undo puts it on hold."


def send_now_label(view: EmailView) -> str:
    """After a delivery that may or may not have arrived, sending is sending *again* (same Message-ID)."""
    return "Send again" if view.status == EmailStatus.UNCONFIRMED else "Send now"


def can_send_now(view: EmailView) -> bool:
    """Complete, nothing open, and not already going out within the undo window."""
    return (
        view.status in (EmailStatus.WAITING, EmailStatus.SCHEDULED, EmailStatus.FAILED, EmailStatus.UNCONFIRMED)
        and bool(view.to and view.subject and view.body)
        and not view.unconfirmed
        and view.undo_until is None
    )


def button(action_id: str, text: str, value: str, style: str = "") -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def cancel_button(email_id: str) -> dict[str, Any]:
    return {
        **button(CANCEL_ACTION, "Cancel email", email_id, "danger"),
        "confirm": {
            "title": {"type": "plain_text", "text": "Cancel this email?"},
            "text": {"type": "mrkdwn", "text": "It will not be sent. This cannot be undone."},
            "confirm": {"type": "plain_text", "text": "Cancel email"},
            "deny": {"type": "plain_text", "text": "Keep it"},
            "style": "danger",
        },
    }


def recipient_value(email_id: str, address: str) -> str:
    return json.dumps({"email_id": email_id, "address": address}, separators=(",", ":"))


def _recipient_blocks(email_id: str, addresses: list[str]) -> list[dict[str, Any]]:
    """One line per recipient the model proposed and the owner never wrote: nothing is sent until they decide."""
    blocks: list[dict[str, Any]] = []
    for address in addresses[:RECIPIENTS_SHOWN]:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f":raised_hand: *New recipient:* {escape(address)}\n"
                    "Nothing is sent until you confirm or remove it.",
                },
            }
        )
        value = recipient_value(email_id, address)
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": CONFIRM_RECIPIENT_ACTION,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Confirm"},
                        "value": value,
                    },
                    {
                        "type": "button",
                        "action_id": REMOVE_RECIPIENT_ACTION,
                        "text": {"type": "plain_text", "text": "Remove"},
                        "value": value,
                    },
                ],
            }
        )
    if len(addresses) > RECIPIENTS_SHOWN:
        more = len(addresses) - RECIPIENTS_SHOWN
        text = f"…and {more} more new recipient{'s' if more > 1 else ''}: they appear here as you decide on these."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
    return blocks


def _actions(email_id: str, view: EmailView) -> list[dict[str, Any]]:
    if view.over or view.status == EmailStatus.SENDING:
        return []
    elements: list[dict[str, Any]] = []
    if view.undo_until is not None:
        elements.append(button(UNDO_ACTION, "Undo", email_id, "primary"))
    if can_send_now(view):
        elements.append(button(SEND_NOW_ACTION, send_now_label(view), email_id, "primary"))
    if view.draft:
        elements.append(button(APPLY_EDIT_ACTION, "Use my edit", email_id))
    if view.undo_until is None:  # in the undo window: Undo first (the modal cannot say "when the window ends")
        elements.append(button(EDIT_ACTION, "Edit", email_id))
    elements.append(cancel_button(email_id))  # even before it has words: App Home offers it for the same email
    return elements
