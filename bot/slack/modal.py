"""The edit modal: the owner's own version of the email (To, Subject, Body, send time), applied without the model.

Opened from the card's Edit button (views.open with the click's trigger_id), checked here with the same rules
as the workflow's (`workflows.decisions.edit_errors`) so mistakes are shown beside their fields, and sent as
one `edit` control; the workflow checks again and is the authority.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from bot.slack.markup import listed
from workflows.model import EmailEdit, EmailView
from workflows.sendtime import is_valid_timezone

EDIT_CALLBACK = "edit_email_modal"
TO, SUBJECT, BODY, SEND_AT = "to", "subject", "body", "send_at"  # block ids: the keys of edit_errors too
FIELD = "value"  # every input's action_id
INPUT_LIMIT = 3000  # a plain_text_input holds at most 3000 characters
SUBJECT_LIMIT = 998  # one header line
_SEPARATORS = re.compile(r"[,;\n]+")


@dataclass(frozen=True)
class Opened:
    """What the modal carries in its private_metadata: the email, its zone, and whether its body is kept."""

    email_id: str
    timezone: str
    keep_body: bool
    version: int | None = None  # the email's version when the modal opened: a later change wins over it
    keep_to: bool = False  # more recipients than a Slack field holds: kept as they are
    channel: str = ""  # the card's DM and thread: where a refusal that comes after the modal closed is said
    thread_ts: str = ""

    def dump(self) -> str:
        data = {
            "email_id": self.email_id,
            "tz": self.timezone,
            "keep_body": self.keep_body,
            "ver": self.version,
            "keep_to": self.keep_to,
            "channel": self.channel,
            "thread": self.thread_ts,
        }
        return json.dumps(data)

    @staticmethod
    def load(raw: str) -> Opened:
        data = json.loads(raw or "{}")
        version = data.get("ver")
        return Opened(
            str(data["email_id"]),
            str(data.get("tz") or "UTC"),
            bool(data.get("keep_body")),
            version if isinstance(version, int) else None,
            bool(data.get("keep_to")),
            str(data.get("channel") or ""),
            str(data.get("thread") or ""),
        )


def _note(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _text_input(block_id: str, label: str, initial: str, limit: int, **more: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": FIELD, "max_length": limit, **more}
    if initial:
        element["initial_value"] = initial
    return {"type": "input", "block_id": block_id, "label": {"type": "plain_text", "text": label}, "element": element}


def edit_modal(email_id: str, view: EmailView) -> dict[str, Any]:
    """The modal, filled with the email as it stands. The picker shows the time in the user's Slack zone."""
    keep_body = len(view.body) > INPUT_LIMIT
    keep_to = len(", ".join(view.to)) > INPUT_LIMIT
    blocks: list[dict[str, Any]] = []
    if keep_to:
        kept = f"To: {listed(view.to, 1500)} ({len(view.to)} recipients, more than a Slack field holds): kept as "
        blocks.append(_note(kept + "they are. Ask me in the thread to change them."))
    else:
        blocks.append(
            _text_input(
                TO,
                "To",
                ", ".join(view.to),
                INPUT_LIMIT,
                placeholder={"type": "plain_text", "text": "ana@example.com, bob@example.com"},
            )
        )
    if view.unconfirmed:
        waiting = listed(view.unconfirmed, 1500)
        blocks.append(_note(f"Waiting for your confirmation, not in To: {waiting}. Add it to confirm it."))
    blocks.append(_text_input(SUBJECT, "Subject", view.subject, SUBJECT_LIMIT))
    if keep_body:
        blocks.append(
            _note(
                f"The body ({len(view.body)} characters) is longer than a Slack field holds: it is kept as it is. "
                "Ask me in the thread to change it."
            )
        )
    else:
        blocks.append(_text_input(BODY, "Body", view.body, INPUT_LIMIT, multiline=True))
    picker: dict[str, Any] = {"type": "datetimepicker", "action_id": FIELD}
    # The time it goes out at, or the one it keeps while on hold (a question open): saved as it is, the edit
    # keeps it; empty only when it has none (or is in its undo window: Edit is not offered then).
    if view.send_at is not None and view.undo_until is None:
        picker["initial_date_time"] = int(view.send_at.timestamp())
    blocks.append(
        {
            "type": "input",
            "block_id": SEND_AT,
            "optional": True,
            "label": {"type": "plain_text", "text": "Send at"},
            "element": picker,
            "hint": {
                "type": "plain_text",
                "text": f"In your time zone ({view.timezone}). Empty: not scheduled, it waits for you.",
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK,
        "private_metadata": Opened(
            email_id,
            view.timezone,
            keep_body,
            view.version,
            keep_to,
            view.card.channel if view.card else "",
            view.card.thread_ts if view.card else "",
        ).dump(),
        "title": {"type": "plain_text", "text": "Edit email"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def _value(values: dict[str, Any], block_id: str) -> dict[str, Any]:
    entry = values.get(block_id, {}).get(FIELD)
    return entry if isinstance(entry, dict) else {}


def read_edit(
    values: dict[str, Any], opened: Opened, body: str | None = None, to: list[str] | None = None
) -> tuple[EmailEdit | None, dict[str, str]]:
    """The submitted state as an EmailEdit, or the errors of fields that cannot even be read. The picker's
    instant becomes the wall-clock time in the email's zone, with that zone's offset at that instant. `body`: the kept
    body, when the modal had no body field."""
    if to is None:
        to = [part.strip() for part in _SEPARATORS.split(str(_value(values, TO).get("value") or "")) if part.strip()]
    chosen = _value(values, SEND_AT).get("selected_date_time")
    send_at_local = None
    if chosen is not None:
        zone = ZoneInfo(opened.timezone if is_valid_timezone(opened.timezone) else "UTC")
        # With its offset: in the hour clocks go back, 1:30 happens twice and the wall clock alone cannot
        # say which one was picked (resolve takes an explicit offset as given).
        send_at_local = datetime.fromtimestamp(int(chosen), zone).isoformat(timespec="minutes")
    try:
        edit = EmailEdit(
            to=to,
            subject=str(_value(values, SUBJECT).get("value") or ""),
            body=body if body is not None else str(_value(values, BODY).get("value") or ""),
            send_at_local=send_at_local,
            base_version=opened.version,
        )
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0]) if error.errors() else TO
        return None, {field if field in (TO, SUBJECT, BODY) else TO: "too long or too many"}
    return edit, {}


def first_field(opened: Opened) -> str:
    """The modal's first input: where a problem with no field of its own is shown."""
    return SUBJECT if opened.keep_to else TO


def field_errors(errors: dict[str, str], opened: Opened) -> dict[str, str]:
    """edit_errors' keys are the block ids; the error of a field the modal did not show (a kept body or To)
    goes to its first input instead, since Slack refuses errors for blocks the view does not have."""
    shown: dict[str, str] = {}
    for key, message in errors.items():
        kept = (key == BODY and opened.keep_body) or (key == TO and opened.keep_to)
        block = first_field(opened) if kept else key
        text = message[:1].upper() + message[1:]
        shown[block] = f"{shown[block]} {text}" if block in shown else text
    return shown
