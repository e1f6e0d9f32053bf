"""The email's durable record: iWF data attributes, their encoding, and the view built from them.

Complex values are stored as JSON text of the models in workflows.model, so the engine's encoder never
has to know about them and a schema change is a pydantic change.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC
from typing import Any, Protocol

from workflows.model import CardRef, DeliveryIntent, EmailDraft, EmailStatus, EmailView, OwnerProfile, StartInput, Turn
from workflows.sendtime import format_local

DA_STATUS = "status"
DA_EMAIL = "email"
DA_CONVERSATION = "conversation"
DA_TIMEZONE = "timezone"
DA_OWNER = "owner"
DA_DRAFT = "draft"
DA_DRAFT_EDITED = "draft_edited"  # the saved draft's edited_ts: an older edit arriving later is not saved over it
DA_LAST_REPLY = "last_reply"
DA_LAST_ERROR = "last_error"
DA_INBOX = "inbox"  # ids of accepted requests, for de-duplication; written only under the RPC lock
DA_SEND_ATTEMPTS = "send_attempts"
DA_SENT_MESSAGE_ID = "sent_message_id"  # the Message-ID the mail server accepted, once it did
DA_DELIVERY = "delivery"  # JSON DeliveryIntent: what the next hand-over to the mail server is, decided under lock
DA_OWNER_PROFILE = "owner_profile"  # JSON OwnerProfile: the owner's name and address, for From and Reply-To
DA_CONFIRMED = "confirmed_recipients"  # JSON list: addresses the owner confirmed for this email
DA_CANCEL_REQUESTED = "cancel_requested"  # set by the cancel RPC under the inbox lock, beside its channel message
DA_CARD = "card"  # JSON CardRef: where the user sees this email (a Slack thread), if anywhere
DA_PENDING = "pending"  # requests accepted but not yet taken up by a state; under the same lock as the inbox
DA_CLOSED = "closed"  # 1 once the email ended without a final status (idle, delivery unknown): nothing changes it now
DA_MAYBE_SENT = "maybe_sent"  # Message-ID of a hand-over whose outcome is unknown: it may have gone out, for good

# Everything describe and the card read (build_view).
VIEW_KEYS = (
    DA_STATUS,
    DA_EMAIL,
    DA_CONVERSATION,
    DA_TIMEZONE,
    DA_OWNER,
    DA_DRAFT,
    DA_LAST_REPLY,
    DA_LAST_ERROR,
    DA_PENDING,
    DA_SEND_ATTEMPTS,
    DA_SENT_MESSAGE_ID,
    DA_CARD,
    DA_CLOSED,
)

# Search attributes (registered in Temporal by the launcher: devstack/temporal.py), so an owner's emails can
# be listed (App Home) without reading every workflow.
SA_OWNER = "EmailOwner"  # Keyword
SA_STATUS = "EmailStatus"  # Keyword
# Datetime: the last time the email was scheduled for. Not cleared when it is held, fails or is canceled (an
# upsert cannot unset it): read it with EmailStatus = 'scheduled', which is kept current.
SA_SEND_AT = "EmailSendAt"

CH_USER_INPUT = "user_input"  # JSON UserRequest or Control: the owner's words and decisions, one queue, in order
CH_CONTROL = "control"  # JSON Control, as queued by versions before one queue: still listened to
CH_CANCEL = "cancel"

MAX_STORED_TURNS = 200
# Temporal refuses payloads over 2 MB (and warns from 512 KB); the conversation is the one attribute that
# grows without the user noticing, so it is held well under that, oldest turns first.
# Counted as iWF carries it (the stored JSON string, JSON-encoded again: every non-ASCII character becomes a
# six-byte \uXXXX), so Japanese or emoji cannot make it six times larger than its character count suggests.
MAX_STORED_CONVERSATION_BYTES = 300_000
MAX_REMEMBERED_IDS = 500


class Attributes(Protocol):
    """What Record needs: iWF's Persistence in a state or RPC, or a dict read from a closed workflow."""

    def get_data_attribute(self, key: str) -> Any: ...

    def set_data_attribute(self, key: str, value: Any) -> None: ...

    def get_search_attribute_keyword(self, key: str) -> str | None: ...

    def set_search_attribute_keyword(self, key: str, value: str | None) -> None: ...

    def get_search_attribute_datetime(self, key: str) -> str | None: ...

    def set_search_attribute_datetime(self, key: str, value: str | None) -> None: ...


class Record:
    """Typed access to the data attributes: one place that knows their encoding."""

    def __init__(self, persistence: Attributes):
        self._p = persistence

    def _str(self, key: str) -> str:
        value = self._p.get_data_attribute(key)
        return value if isinstance(value, str) else ""

    @property
    def status(self) -> EmailStatus:
        return EmailStatus(self._str(DA_STATUS) or EmailStatus.INITIALIZED)

    @status.setter
    def status(self, value: EmailStatus) -> None:
        self._p.set_data_attribute(DA_STATUS, value.value)

    @property
    def email(self) -> EmailDraft:
        raw = self._str(DA_EMAIL)
        return EmailDraft.model_validate_json(raw) if raw else EmailDraft()

    @email.setter
    def email(self, value: EmailDraft) -> None:
        current = self.email
        changed = value.model_dump(exclude={"version"}) != current.model_dump(exclude={"version"})
        value = value.model_copy(update={"version": current.version + 1 if changed else current.version})
        self._p.set_data_attribute(DA_EMAIL, value.model_dump_json())

    @property
    def conversation(self) -> list[Turn]:
        raw = self._str(DA_CONVERSATION)
        return [Turn.model_validate(t) for t in json.loads(raw)] if raw else []

    def add_turn(self, turn: Turn) -> None:
        turns = [json.dumps(t.model_dump(mode="json"), ensure_ascii=False) for t in self.conversation]
        turns = [*turns, json.dumps(turn.model_dump(mode="json"), ensure_ascii=False)][-MAX_STORED_TURNS:]
        sizes = [len(json.dumps(t)) for t in turns]  # as iWF will carry each: escaped, \uXXXX for non-ASCII
        while len(turns) > 1 and sum(sizes) + len(turns) > MAX_STORED_CONVERSATION_BYTES:
            turns.pop(0)
            sizes.pop(0)
        self._p.set_data_attribute(DA_CONVERSATION, "[" + ",".join(turns) + "]")

    @property
    def timezone(self) -> str:
        return self._str(DA_TIMEZONE) or "UTC"

    @property
    def card(self) -> CardRef | None:
        raw = self._str(DA_CARD)
        return CardRef.model_validate_json(raw) if raw else None

    @card.setter
    def card(self, value: CardRef) -> None:
        self._p.set_data_attribute(DA_CARD, value.model_dump_json())

    @property
    def owner(self) -> str | None:
        return self._str(DA_OWNER) or None

    @property
    def inbox(self) -> list[str]:
        raw = self._str(DA_INBOX)
        return list(json.loads(raw)) if raw else []

    @property
    def owner_profile(self) -> OwnerProfile:
        raw = self._str(DA_OWNER_PROFILE)
        return OwnerProfile.model_validate_json(raw) if raw else OwnerProfile()

    @property
    def confirmed(self) -> frozenset[str]:
        raw = self._str(DA_CONFIRMED)
        return frozenset(json.loads(raw)) if raw else frozenset()

    def confirm(self, address: str) -> None:
        self._p.set_data_attribute(DA_CONFIRMED, json.dumps(sorted({*self.confirmed, address.lower()})))

    def has_taken(self, message_id: str | None) -> bool:
        """Whether the request with this id was accepted. The conversation is asked too: when a request
        is accepted in the very workflow task that ends the email, Temporal keeps the task's results (the
        turn) but not the update itself, so a read of the ended email (a replay) may not show the inbox
        entry."""
        if not message_id:
            return False
        return message_id in self.inbox or any(turn.message_id == message_id for turn in self.conversation)

    def _int(self, key: str) -> int:
        value = self._p.get_data_attribute(key)
        return value if isinstance(value, int) else 0

    @property
    def send_attempts(self) -> int:
        return self._int(DA_SEND_ATTEMPTS)

    @property
    def cancel_requested(self) -> bool:
        return bool(self._int(DA_CANCEL_REQUESTED))

    @property
    def closed(self) -> bool:
        """Ended while its status is not final ("delivery unknown", closed after the idle time): the workflow
        may still be finishing its card, but nothing can change the email any more."""
        return bool(self._int(DA_CLOSED))

    @property
    def over(self) -> bool:
        return self.status.is_final or self.closed

    @property
    def delivery(self) -> DeliveryIntent | None:
        raw = self._str(DA_DELIVERY)
        return DeliveryIntent.model_validate_json(raw) if raw else None

    @delivery.setter
    def delivery(self, value: DeliveryIntent) -> None:
        self._p.set_data_attribute(DA_DELIVERY, value.model_dump_json())

    def wait_for_earlier_hand_over(self) -> bool:
        """A scheduled time before the end of an earlier hand-over that may still be under way (see
        `DeliveryIntent.not_before`) moves to that end, so that the card, describe and the listing show when
        the email really goes out; the user is told why. Needs DA_DELIVERY loaded, and is called after the
        step's `tell` (`go` does), whose words it extends: the last reply need not be loaded. True if it moved."""
        email, intent = self.email, self.delivery
        if not email.scheduled or email.send_at is None or intent is None or intent.not_before is None:
            return False
        if email.send_at >= intent.not_before:
            return False
        later = intent.not_before
        undo = max(email.undo_until, later) if email.undo_until is not None else None
        self.email = email.model_copy(update={"send_at": later, "undo_until": undo})
        note = (
            f"It goes out {format_local(later, self.timezone)} at the earliest: an earlier attempt to send it "
            "may still be under way until then."
        )
        reply = self._str(DA_LAST_REPLY)
        self.tell(f"{reply} {note}" if reply else note, self._str(DA_LAST_ERROR))
        return True

    @property
    def pending(self) -> int:
        return self._int(DA_PENDING)

    @property
    def maybe_sent(self) -> bool:
        """A hand-over's outcome was unknown: whatever happens next (a question, an edit, a failed resend),
        this email may have gone out, and nothing may say otherwise until a delivery is confirmed."""
        return bool(self._str(DA_MAYBE_SENT))

    @property
    def maybe_sent_id(self) -> str:
        """The Message-ID of the copy that may have gone out ("" if none)."""
        return self._str(DA_MAYBE_SENT)

    def at_rest(self) -> EmailStatus:
        """The status of an email waiting for its owner, not scheduled: "delivery unknown" once it may have gone
        out (so the card, describe and the idle close keep saying so), else waiting."""
        return EmailStatus.UNCONFIRMED if self.maybe_sent else EmailStatus.WAITING

    def set(self, key: str, value: Any) -> None:
        self._p.set_data_attribute(key, value)

    def get_str(self, key: str) -> str:
        return self._str(key)

    def index(self) -> None:
        """Keep the search attributes in step with the email: only what changed, and only the statuses a listing
        shows (each upsert is a history event and a visibility write; `processing`, `sending` pass in moments)."""
        if self.status in (EmailStatus.INITIALIZED, EmailStatus.PROCESSING, EmailStatus.SENDING):
            return
        status = self.status.value
        if self._p.get_search_attribute_keyword(SA_STATUS) != status:
            self._p.set_search_attribute_keyword(SA_STATUS, status)
        email = self.email
        if email.scheduled and email.send_at is not None:
            when = email.send_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")  # the one form iWF parses
            if self._p.get_search_attribute_datetime(SA_SEND_AT) != when:
                self._p.set_search_attribute_datetime(SA_SEND_AT, when)

    def tell(self, reply: str, error: str = "") -> None:
        """What the user sees next: the assistant's words and, separately, what went wrong."""
        self._p.set_data_attribute(DA_LAST_REPLY, reply)
        self._p.set_data_attribute(DA_LAST_ERROR, error)


def message_id(workflow_id: str, revision: int, domain: str, run_id: str = "") -> str:
    """Same email, same id: a retry after a crash is recognisable as a duplicate by the receiving server.
    The run id makes it this email's alone: an API id used again once Temporal forgot the first (after its
    retention), or two deployments sharing one mail account, never name a message in the Sent folder that
    another email sent."""
    digest = hashlib.sha256(f"{workflow_id}\0{run_id}".encode()).hexdigest()[:24]
    return f"<{digest}.r{revision}@{domain}>"


_REVISION = re.compile(r"\.r\d+@")


def email_of(message_id_: str) -> str:
    """The email a `message_id` names, whatever its revision: the daily limit counts emails, so one that
    failed, was edited and then went out counts once, not twice."""
    return _REVISION.sub("@", message_id_, count=1)


def plan(status: EmailStatus, email: EmailDraft, when: str | None) -> tuple[bool, str]:
    """Whether the email goes out unless someone acts, and that in plain words (card and describe alike)."""
    if status == EmailStatus.SENT:
        return False, "Sent."
    if status == EmailStatus.CANCELED:
        return False, "Canceled: it will not be sent."
    if status == EmailStatus.SENDING:
        return True, "Being handed to the mail server now."
    if status == EmailStatus.UNCONFIRMED:
        return False, "Delivery unknown: it may have gone out. Ask me to send it again, or cancel."
    if email.scheduled and when:
        return True, f"Sends {when}."
    if status == EmailStatus.FAILED:
        return False, "Not sent: see the reason above, then tell me when to try again."
    if when:
        return False, f"On hold (was planned for {when}): answer the question above and I will schedule it."
    return False, "Not scheduled yet: tell me when to send it."


def build_view(record: Record) -> EmailView:
    email = record.email
    status = record.status
    pending = 0 if record.over else record.pending
    if pending and status in (
        EmailStatus.WAITING,
        EmailStatus.SCHEDULED,
        EmailStatus.FAILED,
        EmailStatus.UNCONFIRMED,
    ):
        status = EmailStatus.PROCESSING
    when = format_local(email.send_at, record.timezone) if email.send_at else None
    will_send, plan_text = plan(record.status, email, when)
    if record.closed and not record.status.is_final:
        will_send, plan_text = False, "Closed: whether it went out is unknown. Start a new email to send it again."
    return EmailView(
        status=status,
        to=email.to,
        unconfirmed=email.unconfirmed,
        subject=email.subject,
        body=email.body,
        send_at=email.send_at,
        send_at_local=when,
        will_send=will_send,
        plan=plan_text,
        undo_until=email.undo_until if will_send and record.status == EmailStatus.SCHEDULED else None,
        timezone=record.timezone,
        owner=record.owner,
        draft=record.get_str(DA_DRAFT),
        last_reply=record.get_str(DA_LAST_REPLY),
        last_error=record.get_str(DA_LAST_ERROR),
        pending_requests=pending,
        send_attempts=record.send_attempts,
        revision=email.revision,
        version=email.version,
        sent_message_id=record.get_str(DA_SENT_MESSAGE_ID),
        conversation=record.conversation,
        card=record.card,
        closed=record.closed,
    )


def initial_search_attributes(start: StartInput) -> dict[str, Any]:
    values: dict[str, Any] = {SA_STATUS: initial_attributes(start)[DA_STATUS]}
    if start.owner:
        values[SA_OWNER] = start.owner
    return values


def initial_attributes(start: StartInput) -> dict[str, Any]:
    """Written atomically with the workflow's start (iWF initial data attributes).

    A first request carried by the start is written as the conversation's first turn and its id as the
    first inbox entry, so a retried start followed by the same request as an RPC is recognised.
    """
    values: dict[str, Any] = {
        DA_TIMEZONE: start.timezone,
        DA_OWNER: start.owner or "",
        DA_STATUS: EmailStatus.INITIALIZED.value,
    }
    if start.card:
        values[DA_CARD] = start.card.model_dump_json()
    if start.owner_name or start.owner_email:
        values[DA_OWNER_PROFILE] = OwnerProfile(name=start.owner_name, email=start.owner_email).model_dump_json()
    first = start.first_request
    if first is not None:
        turn = Turn(role="user", text=first.text, message_id=first.message_id)
        values[DA_CONVERSATION] = json.dumps([turn.model_dump(mode="json")])
        values[DA_STATUS] = EmailStatus.PROCESSING.value
        if first.message_id:
            values[DA_INBOX] = json.dumps([first.message_id])
    return values
