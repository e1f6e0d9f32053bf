"""The email's durable record and the shapes that cross the workflow's edges.

Complex values are stored in iWF data attributes as JSON text of these
models, so the engine's encoder never has to know about them and a schema
change is a pydantic change.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class EmailStatus(StrEnum):
    INITIALIZED = "initialized"
    WAITING = "waiting"
    PROCESSING = "processing"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"  # handed to the mail server, but whether it took the message is unknown
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in (EmailStatus.SENT, EmailStatus.CANCELED)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    at: datetime = Field(default_factory=utcnow)
    message_id: str | None = Field(None, description="The request's idempotency key, for a user's turn.")


class EmailDraft(BaseModel):
    """The email as it stands. `revision` changes whenever its content does, and names its Message-ID."""

    to: list[str] = Field(default_factory=list)
    unconfirmed: list[str] = Field(
        default_factory=list, description="Proposed recipients the owner has not vouched for: nothing is sent yet."
    )
    subject: str = ""
    body: str = ""
    send_at: datetime | None = Field(None, description="When to send, in UTC.")
    scheduled: bool = Field(
        False,
        description="Armed to go out at send_at. False with a send_at means on hold (a question is open).",
    )
    undo_until: datetime | None = Field(
        None, description="Scheduled within the undo window: until then the card offers Undo."
    )
    revision: int = 0
    version: int = Field(
        0,
        description="Bumped on every change (content, time, hold), by Record.email: what an edit made from an "
        "older view is checked against, so it cannot silently put back what changed since.",
    )


class DeliveryIntent(BaseModel):
    """One hand-over of the email to the mail server, decided (under the inbox lock) before it happens.

    `round` counts hand-overs of this email; a claim of (message_id, round) in the owner's delivery ledger
    is what tells a re-executed delivery step that an earlier execution may already have delivered it.
    """

    message_id: str
    revision: int
    round: int
    ledger: str
    not_before: datetime | None = Field(
        None, description="No new hand-over before this: an earlier one may still be under way elsewhere until then."
    )


class CardRef(BaseModel):
    """Where the user sees the email: a chat thread, and the card message once it has been posted.

    An email started from a slash command has no thread yet (`thread_ts` empty): the card step first
    posts `root_text` as the thread's root in `channel` (the user's id opens the DM), then the card.
    """

    channel: str
    thread_ts: str = ""
    ts: str = ""
    root_text: str = ""
    assistant: bool = Field(False, description="An AI-app assistant thread: its status and title follow the email.")


MAX_REQUEST_CHARS = 8000  # of one message or draft: the model reads every message of the conversation


class UserRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_REQUEST_CHARS)
    message_id: str | None = Field(
        None,
        max_length=200,
        description="Idempotency key: the same id is accepted once (e.g. Slack's message ts).",
    )
    actor: str | None = None


def one_line_name(name: str | None) -> str | None:
    """A display name as one line of visible text: a tab, line break or other control character in a Slack
    profile or an API call becomes a space (it would otherwise fail every send at the header check)."""
    if name is None:
        return None
    visible = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in name)
    cleaned = " ".join(visible.encode("utf-8", "replace").decode("utf-8").split())[:100]
    return cleaned or None


class OwnerProfile(BaseModel):
    name: str | None = None
    email: str | None = None

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return one_line_name(value)


class StartInput(BaseModel):
    timezone: str = "UTC"
    owner: str | None = Field(None, description="Who may change or cancel this email; None: anyone with access.")
    owner_name: str | None = Field(None, description="The owner's name, shown in From (the address stays ours).")
    owner_email: str | None = Field(None, description="The owner's address: replies go there (Reply-To).")
    card: CardRef | None = None
    first_request: UserRequest | None = Field(
        None, description="Carried by the start itself, so a new thread costs one engine call, not two."
    )


Refusal = Literal["", "forbidden", "too_late", "finished"]


class RequestResult(BaseModel):
    accepted: bool
    duplicate: bool = False
    queued_behind: int = Field(0, description="Requests still waiting before this one.")
    detail: str
    refusal: Refusal = Field("", description="Why it was not accepted, as a code.")


class DraftInput(BaseModel):
    text: str = Field(max_length=MAX_REQUEST_CHARS)
    actor: str | None = None
    edited_ts: str = Field(
        "",
        max_length=40,
        pattern=r"^(\d{1,12}(\.\d{1,9})?)?$",
        description="When the edit was made (Slack's edited.ts): an older edit, delivered late or again, does not "
        "replace a newer one. Empty: no order known (the HTTP API), the latest call wins.",
    )


class CancelInput(BaseModel):
    actor: str | None = None


class EmailEdit(BaseModel):
    """The owner's own version of the email (the edit modal, the API): applied without the model."""

    to: list[str] = Field(default_factory=list, max_length=100)
    subject: str = Field("", max_length=998)
    body: str = Field("", max_length=100_000)
    send_at_local: str | None = Field(
        None,
        description="Wall-clock time in the email's zone, 'YYYY-MM-DDTHH:MM' (an explicit offset such as "
        "'-08:00' is taken as given); none: not scheduled.",
    )
    base_version: int | None = Field(
        None,
        ge=0,
        description="The email's `version` this edit was made from (the edit modal sends it): if the email changed "
        "since (its words, its time, a hold), the edit is refused rather than silently undoing that change.",
    )


ControlKind = Literal["confirm_recipient", "remove_recipient", "send_now", "undo", "edit"]


class Control(BaseModel):
    """A decision the owner makes on the email without the model (a button, an API call)."""

    kind: ControlKind
    address: str = Field("", max_length=320)
    edit: EmailEdit | None = None
    actor: str | None = None
    message_id: str | None = Field(None, max_length=200, description="Idempotency key: one decision, once.")


class ActionResult(BaseModel):
    ok: bool
    detail: str
    refusal: Refusal = ""
    already: bool = Field(False, description="It was already so (e.g. a retried cancel): nothing changed.")


class EmailView(BaseModel):
    """What describe returns: everything a user interface needs to show the email truthfully."""

    status: EmailStatus
    to: list[str]
    unconfirmed: list[str] = Field(description="Recipients waiting for the owner's confirmation (none is written to).")
    subject: str
    body: str
    send_at: datetime | None
    send_at_local: str | None
    will_send: bool = Field(description="True if the email goes out at send_at unless someone acts.")
    plan: str = Field(description="In plain words: when it goes out, or why it does not.")
    undo_until: datetime | None = Field(None, description="Until then, Undo puts the email on hold.")
    timezone: str
    owner: str | None
    draft: str
    last_reply: str
    last_error: str
    pending_requests: int
    send_attempts: int
    revision: int
    version: int = 0
    sent_message_id: str
    conversation: list[Turn]
    card: CardRef | None = Field(None, description="Where the user sees the email (a chat thread), if anywhere.")
    closed: bool = Field(
        False,
        description="Ended without a final status (delivery unknown, closed after the idle time): nothing can "
        "change it any more, whatever the status says.",
    )

    @property
    def over(self) -> bool:
        """Nothing more can happen to it: sent, canceled, or closed."""
        return self.status.is_final or self.closed
