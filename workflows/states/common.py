"""What every state shares: the services handed in, the inbox lock, and the moves that keep the card
up to date beside the main thread."""

# No `from __future__ import annotations`: the iWF SDK reads state classes' annotations at runtime.

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.iwf_api.models import ChannelRequestStatus, PersistenceLoadingPolicy, PersistenceLoadingType
from iwf.state_decision import StateDecision
from iwf.state_movement import StateMovement
from iwf.workflow_state import WorkflowState

from workflows.agent import Agent
from workflows.decisions import Policy, apply_edit, decide_recipient, hold, send_now
from workflows.deliveries import DeliveryRegistry
from workflows.ledger import DeliveryLedger
from workflows.mailer import Mailer
from workflows.model import Control, EmailDraft, EmailEdit, EmailStatus, Turn, UserRequest, utcnow
from workflows.notifier import CardNotifier
from workflows.recipients import addresses_in
from workflows.record import (
    CH_CANCEL,
    CH_CONTROL,
    CH_USER_INPUT,
    DA_CANCEL_REQUESTED,
    DA_CARD,
    DA_CLOSED,
    DA_CONFIRMED,
    DA_CONVERSATION,
    DA_DELIVERY,
    DA_DRAFT,
    DA_EMAIL,
    DA_INBOX,
    DA_MAYBE_SENT,
    DA_OWNER,
    DA_PENDING,
    DA_SEND_ATTEMPTS,
    DA_STATUS,
    DA_TIMEZONE,
    Record,
)

# The inbox, the pending count and the cancel flag change together, under one lock shared by the RPCs that
# accept requests and cancels and by the states that take them up or decide to send, so no request can be
# accepted between a state's look at the inbox and its decision.
INBOX_KEYS = [DA_INBOX, DA_PENDING, DA_CANCEL_REQUESTED]


def load(*keys: str, lock: Sequence[str] = ()) -> PersistenceLoadingPolicy:
    """Only the attributes a step reads travel to the worker (the conversation grows with every turn);
    with `lock`, those keys are held exclusively for the step, as iWF's RPC locking does."""
    if lock:
        return PersistenceLoadingPolicy(
            persistence_loading_type=PersistenceLoadingType.LOAD_PARTIAL_WITH_EXCLUSIVE_LOCK,
            partial_loading_keys=[*keys, *lock],
            locking_keys=list(lock),
        )
    return PersistenceLoadingPolicy(
        persistence_loading_type=PersistenceLoadingType.LOAD_PARTIAL_WITHOUT_LOCKING, partial_loading_keys=list(keys)
    )


MAYBE_SENT_CANCELED = (
    "Canceled: no copy will be sent from now on. An earlier attempt may still have delivered it: I could not "
    "tell, so check with the recipient."
)
LOCKED_INBOX = load(DA_STATUS, DA_OWNER, DA_CLOSED, lock=INBOX_KEYS)
LOCKED_CANCEL = load(DA_STATUS, DA_OWNER, DA_CLOSED, DA_MAYBE_SENT, lock=INBOX_KEYS)  # says if it may be out
# What taking up a request, or ending the email, touches: the conversation gets the request, the card is
# refreshed alongside, and a cancel clears what is pending.
TAKE_UP_KEYS = [
    DA_STATUS,
    DA_CONVERSATION,
    DA_DRAFT,
    DA_CARD,
    DA_EMAIL,
    DA_TIMEZONE,
    DA_CONFIRMED,
    DA_MAYBE_SENT,
    DA_DELIVERY,  # small, and only there once a hand-over was tried: a new time must wait for it (`go`)
]


@dataclass(frozen=True)
class Services:
    """What the states need from the outside world, handed in rather than looked up."""

    agent: Agent
    mailer: Mailer
    ledger: DeliveryLedger
    deliveries: DeliveryRegistry = field(default_factory=DeliveryRegistry)
    ledger_scope: str = "local"
    notifier: CardNotifier | None = None
    mail_domain: str = "email-agent.local"
    allowed_domains: tuple[str, ...] = ()
    confirm_external: bool = False
    confirm_new_recipients: bool = True
    max_recipients: int = 20
    max_body_chars: int = 0
    daily_send_limit: int = 0
    from_name_format: str = "{name} (via email-agent)"
    undo_seconds: int = 0
    draft_ttl_seconds: int = 0  # a draft idle this long closes; 0: never
    card_retry_seconds: int = 600  # a card update is retried this long, then the email goes on without it
    send_max_attempts: int = 5
    send_backoff_seconds: int = 2
    send_backoff_max_seconds: int = 300
    agent_timeout_seconds: int = 240
    send_timeout_seconds: int = 90
    claim_grace_seconds: int = 10  # a claim answered later than this is not used to send (see handover)
    handover_seconds: int = 90  # a claim this old: its hand-over is over (claim grace + the SMTP deadline + margin)
    # How long an execution that found another process's young claim waits for it to settle (see handover);
    # 0: not at all (it asks the Sent folder at once, or says "delivery unknown").
    settle_wait_seconds: float = 0.0
    clock: Callable[[], datetime] = field(default=utcnow)


def received(results: CommandResults, channel: str) -> Any:
    for result in results.internal_channel_commands:
        if result.channel_name == channel and result.status == ChannelRequestStatus.RECEIVED:
            return result.value
    return None


def is_control(raw: str) -> bool:
    """Requests and the owner's controls share one queue, so they are taken up in the order they were
    accepted; a control is told apart by its `kind` (a request has none)."""
    try:
        return isinstance(data := json.loads(raw), dict) and "kind" in data
    except ValueError:
        return False


def next_input(command_results: CommandResults, communication: Communication) -> str | None:
    """The user's next input (a request or a control), in the order accepted, if a wait ended with one.

    One queue (CH_USER_INPUT) keeps that order. Versions before it queued controls apart (CH_CONTROL), and
    iWF hands a step every channel that had data, each value already taken out: should a workflow started by
    such a version have one of each, the control goes back to its channel (still counted in `pending`), so
    neither is lost."""
    queued = received(command_results, CH_USER_INPUT)
    legacy = received(command_results, CH_CONTROL)
    if queued is not None and legacy is not None:
        communication.publish_to_internal_channel(CH_CONTROL, legacy)
        return queued
    return queued if queued is not None else legacy


def accept_request(record: Record, raw: str) -> None:
    """Take a request out of the inbox into the conversation; call only under the inbox lock."""
    request = UserRequest.model_validate_json(raw)
    record.add_turn(Turn(role="user", text=request.text, message_id=request.message_id))
    record.set(DA_PENDING, max(0, record.pending - 1))
    record.set(DA_DRAFT, "")
    record.status = EmailStatus.PROCESSING


def policy(record: Record, services: Services) -> Policy:
    """The recipient, size and undo rules for this email: addresses the owner wrote or confirmed are vouched for."""
    written = addresses_in(turn.text for turn in record.conversation if turn.role == "user")
    return Policy(
        allowed_domains=services.allowed_domains,
        confirm_external=services.confirm_external,
        vouched=frozenset(written) if services.confirm_new_recipients else None,
        confirmed=record.confirmed,
        max_recipients=services.max_recipients,
        max_body_chars=services.max_body_chars,
        undo_seconds=services.undo_seconds,
    )


def take_up(
    record: Record, command_results: CommandResults, communication: Communication, services: Services
) -> StateDecision | None:
    """What a waiting state (Agent, Schedule) does first when its wait ends, under the inbox lock: a cancel,
    else the next queued words or decision, else a request accepted as the wait ended (still in its channel,
    answered before anything else). None: nothing came, the wait's own timer ended it."""
    from workflows.states import conversation

    if received(command_results, CH_CANCEL) is not None or record.cancel_requested:
        return cancel(record)
    taken = next_input(command_results, communication)
    if taken is not None and is_control(taken):
        return take_control(record, taken, services)
    if taken is not None:
        accept_request(record, taken)
        return go(record, conversation.ComposeState)
    if record.pending:
        return go(record, conversation.AgentState)
    return None


def take_control(record: Record, raw: str, services: Services) -> StateDecision:
    """Apply an owner's decision taken out of the inbox (call only under the inbox lock)."""
    from workflows.states import conversation, sending

    control = Control.model_validate_json(raw)
    record.set(DA_PENDING, max(0, record.pending - 1))
    email, now, zone_name = record.email, services.clock(), record.timezone
    rules = policy(record, services)
    if control.kind in ("confirm_recipient", "remove_recipient"):
        confirm = control.kind == "confirm_recipient"
        outcome = decide_recipient(email, control.address, confirm, timezone=zone_name, now=now, policy=rules)
        if confirm and outcome.email.to != email.to:
            record.confirm(control.address)
    elif control.kind == "send_now":
        outcome = send_now(email, timezone=zone_name, now=now, policy=rules)
    elif control.kind == "undo":
        outcome = hold(email)
    else:
        outcome = apply_edit(email, control.edit or EmailEdit(), timezone=zone_name, now=now, policy=rules)
    if fresh_attempts(email, outcome.email, outcome.next):
        record.set(DA_SEND_ATTEMPTS, 0)
    record.email = outcome.email
    record.add_turn(Turn(role="assistant", text=outcome.reply))
    record.tell(outcome.reply, outcome.problem)
    if outcome.next == "schedule" or (email.scheduled and outcome.email.scheduled):
        record.status = EmailStatus.SCHEDULED  # scheduled now, or untouched by a decision that did not apply
        return go(record, sending.ScheduleState)
    record.status = record.at_rest()
    return go(record, conversation.AgentState)


def fresh_attempts(before: EmailDraft, after: EmailDraft, next_step: str) -> bool:
    """Whether the user's decision starts a new budget of send attempts: new words (a new revision), or an
    email that was not going out (failed, delivery unknown, on hold) scheduled again by its owner. A question
    about an email already going out (or backing off) keeps its budget, so retries stay bounded."""
    return after.revision != before.revision or (next_step == "schedule" and not before.scheduled)


def go(record: Record, state: type[WorkflowState[Any]], state_input: Any = None) -> StateDecision:
    """Move on, and refresh the user's card alongside when there is one."""
    from workflows.states.card import NotifyState
    from workflows.states.sending import ScheduleState

    if state is ScheduleState:
        record.wait_for_earlier_hand_over()
    record.index()
    if record.card is None:
        return StateDecision.single_next_state(state, state_input)
    return StateDecision.multi_next_states(StateMovement.create(state, state_input), NotifyState)


def finish(record: Record, output: str) -> StateDecision:
    """End the workflow; with a card, only after the card shows the end (NotifyState completes it)."""
    from workflows.states.card import NotifyState

    record.index()
    if record.card is None:
        return StateDecision.graceful_complete_workflow(output)
    return StateDecision.single_next_state(NotifyState, output)


def cancel(record: Record) -> StateDecision:
    """Call only under the inbox lock: requests still queued are moot once the email is canceled."""
    record.status = EmailStatus.CANCELED
    record.set(DA_PENDING, 0)
    if record.maybe_sent:
        record.tell(MAYBE_SENT_CANCELED)
    else:
        record.tell("Canceled: this email will not be sent.")
    return finish(record, "canceled")
