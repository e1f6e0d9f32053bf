"""The email workflow: one execution per email, from first request to sent, failed or canceled.

    Init -> Agent (wait for input) -> Compose (model) -> Agent | Schedule
    Schedule (durable timer, interrupted by input or cancel) -> Sending | Compose
    Sending -> done (sent) | Schedule (back off after a transient failure) | Agent (failed; the user decides)

Every value lives in iWF data attributes, so any process may die at any
moment: the iWF server retries the state API on another attempt and the
workflow continues from the last completed step.
"""

# No `from __future__ import annotations` here: the iWF SDK inspects RPC parameter annotations at runtime.

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from iwf.command_request import CommandRequest, InternalChannelCommand, TimerCommand
from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.communication_schema import CommunicationMethod, CommunicationSchema
from iwf.iwf_api.models import (
    ChannelRequestStatus,
    PersistenceLoadingPolicy,
    PersistenceLoadingType,
    RetryPolicy,
)
from iwf.persistence import Persistence
from iwf.persistence_schema import PersistenceField, PersistenceSchema
from iwf.rpc import rpc
from iwf.state_decision import StateDecision
from iwf.state_schema import StateSchema
from iwf.workflow import ObjectWorkflow
from iwf.workflow_context import WorkflowContext
from iwf.workflow_state import WorkflowState
from iwf.workflow_state_options import WorkflowStateOptions

from workflows.agent import Agent, AgentError
from workflows.decisions import apply_reply
from workflows.mailer import Mailer, OutgoingEmail, PermanentSendError, SendError
from workflows.model import (
    ActionResult,
    CancelInput,
    CardRef,
    DraftInput,
    EmailDraft,
    EmailStatus,
    EmailView,
    Refusal,
    RequestResult,
    StartInput,
    Turn,
    UserRequest,
    utcnow,
)
from workflows.notifier import CardNotifier
from workflows.sendtime import format_local, seconds_until, zone

# Data attributes. Complex values are JSON text of the models in workflows.model.
DA_STATUS = "status"
DA_EMAIL = "email"
DA_CONVERSATION = "conversation"
DA_TIMEZONE = "timezone"
DA_OWNER = "owner"
DA_DRAFT = "draft"
DA_LAST_REPLY = "last_reply"
DA_LAST_ERROR = "last_error"
DA_INBOX = "inbox"  # ids of accepted requests, for de-duplication; written only under the RPC lock
DA_SEND_ATTEMPTS = "send_attempts"
DA_SENT_MESSAGE_ID = "sent_message_id"  # set once the SMTP server accepted this Message-ID
DA_CARD = "card"  # JSON CardRef: where the user sees this email (a Slack thread), if anywhere
DA_PENDING = "pending"  # requests accepted but not yet taken up by a state; under the same lock as the inbox

CH_USER_INPUT = "user_input"
CH_CANCEL = "cancel"

MAX_STORED_TURNS = 200
MAX_REMEMBERED_IDS = 500

# The inbox and the pending count change together, under one lock shared by the RPCs that accept
# requests and the states that take them up, so "processing" is shown from the moment a request is
# accepted until the agent has answered it.
_INBOX_KEYS = [DA_INBOX, DA_PENDING]
_LOCKED_INBOX = PersistenceLoadingPolicy(
    persistence_loading_type=PersistenceLoadingType.LOAD_PARTIAL_WITH_EXCLUSIVE_LOCK,
    partial_loading_keys=[DA_STATUS, DA_OWNER, DA_SEND_ATTEMPTS, *_INBOX_KEYS],
    locking_keys=_INBOX_KEYS,
)
_TAKES_UP_REQUESTS = WorkflowStateOptions(
    execute_api_data_attributes_loading_policy=PersistenceLoadingPolicy(
        persistence_loading_type=PersistenceLoadingType.LOAD_ALL_WITH_PARTIAL_LOCK, locking_keys=_INBOX_KEYS
    )
)


@dataclass(frozen=True)
class Services:
    """What the states need from the outside world, handed in rather than looked up."""

    agent: Agent
    mailer: Mailer
    notifier: CardNotifier | None = None
    mail_domain: str = "email-agent.local"
    allowed_domains: tuple[str, ...] = ()
    send_max_attempts: int = 5
    send_backoff_seconds: int = 2
    send_backoff_max_seconds: int = 300
    agent_timeout_seconds: int = 240
    send_timeout_seconds: int = 90
    clock: Callable[[], datetime] = field(default=utcnow)


class Record:
    """Typed access to the data attributes: one place that knows their encoding."""

    def __init__(self, persistence: Persistence):
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
        self._p.set_data_attribute(DA_EMAIL, value.model_dump_json())

    @property
    def conversation(self) -> list[Turn]:
        raw = self._str(DA_CONVERSATION)
        return [Turn.model_validate(t) for t in json.loads(raw)] if raw else []

    def add_turn(self, turn: Turn) -> None:
        turns = [*self.conversation, turn][-MAX_STORED_TURNS:]
        self._p.set_data_attribute(DA_CONVERSATION, json.dumps([t.model_dump(mode="json") for t in turns]))

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

    def _int(self, key: str) -> int:
        value = self._p.get_data_attribute(key)
        return value if isinstance(value, int) else 0

    @property
    def send_attempts(self) -> int:
        return self._int(DA_SEND_ATTEMPTS)

    @property
    def pending(self) -> int:
        return self._int(DA_PENDING)

    def set(self, key: str, value: Any) -> None:
        self._p.set_data_attribute(key, value)

    def get_str(self, key: str) -> str:
        return self._str(key)

    def tell(self, reply: str, error: str = "") -> None:
        """What the user sees next: the assistant's words and, separately, what went wrong."""
        self._p.set_data_attribute(DA_LAST_REPLY, reply)
        self._p.set_data_attribute(DA_LAST_ERROR, error)


def message_id(workflow_id: str, revision: int, domain: str) -> str:
    """Same email, same id: a retry after a crash is recognisable as a duplicate by the receiving server."""
    digest = hashlib.sha256(workflow_id.encode()).hexdigest()[:24]
    return f"<{digest}.r{revision}@{domain}>"


def build_view(record: Record) -> EmailView:
    email = record.email
    status = record.status
    pending = record.pending
    if pending and status in (EmailStatus.WAITING, EmailStatus.SCHEDULED, EmailStatus.FAILED):
        status = EmailStatus.PROCESSING
    return EmailView(
        status=status,
        to=email.to,
        subject=email.subject,
        body=email.body,
        send_at=email.send_at,
        send_at_local=format_local(email.send_at, record.timezone) if email.send_at else None,
        timezone=record.timezone,
        owner=record.owner,
        draft=record.get_str(DA_DRAFT),
        last_reply=record.get_str(DA_LAST_REPLY),
        last_error=record.get_str(DA_LAST_ERROR),
        pending_requests=pending,
        send_attempts=record.send_attempts,
        revision=email.revision,
        sent_message_id=record.get_str(DA_SENT_MESSAGE_ID),
        conversation=record.conversation,
    )


def _received(results: CommandResults, channel: str) -> Any:
    for result in results.internal_channel_commands:
        if result.channel_name == channel and result.status == ChannelRequestStatus.RECEIVED:
            return result.value
    return None


def _accept_request(record: Record, raw: str) -> None:
    request = UserRequest.model_validate_json(raw)
    record.add_turn(Turn(role="user", text=request.text))
    record.set(DA_PENDING, max(0, record.pending - 1))
    record.set(DA_DRAFT, "")
    record.status = EmailStatus.PROCESSING


def _go(record: Record, state: type[WorkflowState[Any]]) -> StateDecision:
    """Move on, and refresh the user's card alongside when there is one."""
    if record.card is None:
        return StateDecision.single_next_state(state)
    return StateDecision.multi_next_states(state, NotifyState)


def _finish(record: Record, output: str) -> StateDecision:
    """End the workflow; with a card, only after the card shows the end (NotifyState completes it)."""
    if record.card is None:
        return StateDecision.graceful_complete_workflow(output)
    return StateDecision.single_next_state(NotifyState, output)


def _cancel(record: Record) -> StateDecision:
    record.status = EmailStatus.CANCELED
    record.tell("Canceled: this email will not be sent.")
    return _finish(record, "canceled")


def initial_attributes(start: StartInput) -> dict[str, Any]:
    """Written atomically with the workflow's start (iWF initial data attributes)."""
    values = {
        DA_TIMEZONE: start.timezone,
        DA_OWNER: start.owner or "",
        DA_STATUS: EmailStatus.INITIALIZED.value,
    }
    if start.card:
        values[DA_CARD] = start.card.model_dump_json()
    return values


class InitState(WorkflowState[str]):
    """Entry point. A workflow started without initial attributes (by hand, with the CLI) gets them here."""

    def execute(
        self,
        ctx: WorkflowContext,
        input: str,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        if not record.get_str(DA_TIMEZONE):
            start = StartInput.model_validate_json(input) if input else StartInput()
            for key, value in initial_attributes(start).items():
                record.set(key, value)
        return _go(record, AgentState)


class AgentState(WorkflowState[None]):
    """Waits for the user. A failure stays visible here until the next request."""

    def get_state_options(self) -> WorkflowStateOptions:
        return _TAKES_UP_REQUESTS

    def wait_until(
        self, ctx: WorkflowContext, input: None, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        record = Record(persistence)
        if record.status != EmailStatus.FAILED:
            record.status = EmailStatus.WAITING
        return CommandRequest.for_any_command_completed(
            InternalChannelCommand.by_name(CH_USER_INPUT), InternalChannelCommand.by_name(CH_CANCEL)
        )

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        if _received(command_results, CH_CANCEL) is not None:
            return _cancel(record)
        _accept_request(record, _received(command_results, CH_USER_INPUT))
        return _go(record, ComposeState)


class ComposeState(WorkflowState[None]):
    """Runs the model on the whole conversation and applies what it proposes, after checking it."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            execute_api_timeout_seconds=self._services.agent_timeout_seconds,
            execute_api_retry_policy=RetryPolicy(
                initial_interval_seconds=2,
                backoff_coefficient=2,
                maximum_interval_seconds=60,
                maximum_attempts=4,
            ),
            proceed_to_state_when_execute_retry_exhausted=ComposeCrashedState,
        )

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        services = self._services
        record = Record(persistence)
        email, timezone, now = record.email, record.timezone, services.clock()
        try:
            reply = services.agent.respond(record.conversation, email, now.astimezone(zone(timezone)), timezone)
        except AgentError as error:
            # The request stays in the conversation: the next message (or "try again") replays it.
            record.status = EmailStatus.WAITING
            record.tell(f"Sorry, {error.reason}. Nothing was changed.", error.reason)
            return _go(record, AgentState)

        outcome = apply_reply(
            reply, email, timezone=timezone, now=services.clock(), allowed_domains=services.allowed_domains
        )
        if outcome.next == "cancel":
            record.add_turn(Turn(role="assistant", text=outcome.reply or "Canceled."))
            return _cancel(record)
        if outcome.email.revision != email.revision:
            record.set(DA_SEND_ATTEMPTS, 0)
        record.email = outcome.email
        record.add_turn(Turn(role="assistant", text=outcome.reply))
        record.tell(outcome.reply, outcome.problem)
        if outcome.next == "schedule":
            record.status = EmailStatus.SCHEDULED
            return _go(record, ScheduleState)
        record.status = EmailStatus.WAITING
        return _go(record, AgentState)


class ComposeCrashedState(WorkflowState[None]):
    """Reached only when the compose step kept crashing (a bug or an outage), not on a model error."""

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        record.status = EmailStatus.WAITING
        reason = "the assistant failed repeatedly on this request"
        record.tell(f"Sorry, {reason}. Your message is kept; send it again or rephrase.", reason)
        return _go(record, AgentState)


class ScheduleState(WorkflowState[None]):
    """A durable timer to the send time; new input or a cancel interrupts it."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return _TAKES_UP_REQUESTS

    def wait_until(
        self, ctx: WorkflowContext, input: None, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        record = Record(persistence)
        record.status = EmailStatus.SCHEDULED
        send_at = record.email.send_at or self._services.clock()
        return CommandRequest.for_any_command_completed(
            TimerCommand.by_seconds(seconds_until(send_at, self._services.clock())),
            InternalChannelCommand.by_name(CH_USER_INPUT),
            InternalChannelCommand.by_name(CH_CANCEL),
        )

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        if _received(command_results, CH_CANCEL) is not None:
            return _cancel(record)
        request = _received(command_results, CH_USER_INPUT)
        if request is not None:
            _accept_request(record, request)
            return _go(record, ComposeState)
        return StateDecision.single_next_state(SendingState)


class SendingState(WorkflowState[None]):
    """Sends once. The sent marker and a Message-ID fixed per revision make retries harmless."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            execute_api_timeout_seconds=self._services.send_timeout_seconds,
            execute_api_retry_policy=RetryPolicy(
                initial_interval_seconds=2,
                backoff_coefficient=2,
                maximum_interval_seconds=60,
                maximum_attempts=5,
            ),
            proceed_to_state_when_execute_retry_exhausted=SendCrashedState,
        )

    def wait_until(
        self, ctx: WorkflowContext, input: None, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        # From here on a cancel is refused (status "sending"); one that raced in just before still wins.
        Record(persistence).status = EmailStatus.SENDING
        return CommandRequest.for_any_command_completed(
            TimerCommand.by_seconds(0), InternalChannelCommand.by_name(CH_CANCEL)
        )

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        services = self._services
        record = Record(persistence)
        if _received(command_results, CH_CANCEL) is not None:
            return _cancel(record)
        email = record.email
        msg_id = message_id(ctx.workflow_id, email.revision, services.mail_domain)
        if record.get_str(DA_SENT_MESSAGE_ID) == msg_id:
            return self._sent(record, email, "already delivered")
        outgoing = OutgoingEmail(message_id=msg_id, to=email.to, subject=email.subject, body=email.body)
        try:
            where = services.mailer.send(outgoing)
        except SendError as error:
            return self._failed(record, email, error)
        record.set(DA_SENT_MESSAGE_ID, msg_id)
        return self._sent(record, email, where)

    def _sent(self, record: Record, email: EmailDraft, where: str) -> StateDecision:
        record.status = EmailStatus.SENT
        record.tell(f"Sent to {', '.join(email.to)}.")
        return _finish(record, where)

    def _failed(self, record: Record, email: EmailDraft, error: SendError) -> StateDecision:
        services = self._services
        attempts = record.send_attempts + 1
        record.set(DA_SEND_ATTEMPTS, attempts)
        if isinstance(error, PermanentSendError) or attempts >= services.send_max_attempts:
            record.status = EmailStatus.FAILED
            record.email = email.model_copy(update={"send_at": None})
            tried = "" if isinstance(error, PermanentSendError) else f" after {attempts} attempts"
            record.tell(f"I could not send the email{tried}: {error.reason}. Tell me when to try again.", error.reason)
            return _go(record, AgentState)
        delay = min(services.send_backoff_seconds * 2 ** (attempts - 1), services.send_backoff_max_seconds)
        retry_at = services.clock() + timedelta(seconds=delay)
        record.email = email.model_copy(update={"send_at": retry_at})
        record.tell(
            f"Sending failed ({error.reason}); retrying at {format_local(retry_at, record.timezone)} "
            f"(attempt {attempts + 1} of {services.send_max_attempts}).",
            error.reason,
        )
        # Back through Schedule, so the user can still revise or cancel while we wait.
        record.status = EmailStatus.SCHEDULED
        return _go(record, ScheduleState)


class SendCrashedState(WorkflowState[None]):
    """Reached when the send step itself kept crashing; iWF gave up retrying it."""

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        record.status = EmailStatus.FAILED
        record.email = record.email.model_copy(update={"send_at": None})
        reason = "the send step failed repeatedly (see the worker logs)"
        record.tell(f"I could not send the email: {reason}. Tell me when to try again.", reason)
        return _go(record, AgentState)


class NotifyState(WorkflowState[str]):
    """Brings the user's card up to date, posting it the first time.

    Runs beside the main thread after every change. Executions hold a lock on the card, so they run
    one at a time and each renders the attributes as they are *then*: the last one shows the latest
    state even if an earlier one was slow. A failed call (Slack 429, 5xx, network) raises and the iWF
    server retries it with back-off. Input: the workflow's output when this is the final update.
    """

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            execute_api_data_attributes_loading_policy=PersistenceLoadingPolicy(
                persistence_loading_type=PersistenceLoadingType.LOAD_ALL_WITH_PARTIAL_LOCK,
                locking_keys=[DA_CARD],
            ),
            execute_api_timeout_seconds=30,
            execute_api_retry_policy=RetryPolicy(
                initial_interval_seconds=1,
                backoff_coefficient=2,
                maximum_interval_seconds=60,
                maximum_attempts=12,
            ),
            proceed_to_state_when_execute_retry_exhausted=NotifyGaveUpState,
        )

    def execute(
        self,
        ctx: WorkflowContext,
        input: str,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        card, notifier = record.card, self._services.notifier
        if card is not None and notifier is not None:
            view = build_view(record)
            if card.ts:
                notifier.update(card, ctx.workflow_id, view)
            else:
                record.card = card.model_copy(update={"ts": notifier.post(card, ctx.workflow_id, view)})
        if input:
            return StateDecision.graceful_complete_workflow(input)
        return StateDecision.dead_end


class NotifyGaveUpState(WorkflowState[str]):
    """The card could not be updated for minutes; the email itself is unaffected, so carry on."""

    def execute(
        self,
        ctx: WorkflowContext,
        input: str,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        if Record(persistence).status.is_final:
            return StateDecision.graceful_complete_workflow(input or "finished")
        return StateDecision.dead_end


class EmailAgentWorkflow(ObjectWorkflow):
    def __init__(self, services: Services):
        self._services = services

    def get_workflow_states(self) -> StateSchema:
        s = self._services
        return StateSchema.with_starting_state(
            InitState(),
            AgentState(),
            ComposeState(s),
            ComposeCrashedState(),
            ScheduleState(s),
            SendingState(s),
            SendCrashedState(),
            NotifyState(s),
            NotifyGaveUpState(),
        )

    def get_persistence_schema(self) -> PersistenceSchema:
        return PersistenceSchema.create(
            *(
                PersistenceField.data_attribute_def(key, str)
                for key in (
                    DA_STATUS,
                    DA_EMAIL,
                    DA_CONVERSATION,
                    DA_TIMEZONE,
                    DA_OWNER,
                    DA_DRAFT,
                    DA_LAST_REPLY,
                    DA_LAST_ERROR,
                    DA_INBOX,
                    DA_SENT_MESSAGE_ID,
                    DA_CARD,
                )
            ),
            PersistenceField.data_attribute_def(DA_SEND_ATTEMPTS, int),
            PersistenceField.data_attribute_def(DA_PENDING, int),
        )

    def get_communication_schema(self) -> CommunicationSchema:
        return CommunicationSchema.create(
            CommunicationMethod.internal_channel_def(CH_USER_INPUT, str),
            CommunicationMethod.internal_channel_def(CH_CANCEL, str),
        )

    # RPCs take and return JSON text of the models in workflows.model: validated on both sides.

    @rpc(timeout_seconds=10, data_attribute_loading_policy=_LOCKED_INBOX)
    def send_request(
        self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication
    ) -> str:
        """Atomic under iWF's RPC lock on the inbox, so concurrent retries of one message de-duplicate."""
        request = UserRequest.model_validate_json(input)
        record = Record(persistence)
        refusal, why = _refusal(record, request.actor)
        if refusal:
            return RequestResult(accepted=False, detail=why, refusal=refusal).model_dump_json()
        inbox = record.inbox
        if request.message_id and request.message_id in inbox:
            return RequestResult(accepted=True, duplicate=True, detail="already received").model_dump_json()
        queued = record.pending
        communication.publish_to_internal_channel(CH_USER_INPUT, request.model_dump_json())
        record.set(DA_PENDING, queued + 1)
        if request.message_id:
            record.set(DA_INBOX, json.dumps([*inbox, request.message_id][-MAX_REMEMBERED_IDS:]))
        detail = "received" if not queued else f"received; {queued} earlier request(s) go first"
        return RequestResult(accepted=True, queued_behind=queued, detail=detail).model_dump_json()

    @rpc(timeout_seconds=10, data_attribute_loading_policy=_LOCKED_INBOX)
    def cancel(self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication) -> str:
        request = CancelInput.model_validate_json(input)
        record = Record(persistence)
        refusal, why = _refusal(record, request.actor)
        if refusal:
            return ActionResult(ok=False, detail=why, refusal=refusal).model_dump_json()
        communication.publish_to_internal_channel(CH_CANCEL, request.model_dump_json())
        return ActionResult(ok=True, detail="canceled: it will not be sent").model_dump_json()

    @rpc(timeout_seconds=10)
    def save_draft(
        self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication
    ) -> str:
        draft = DraftInput.model_validate_json(input)
        record = Record(persistence)
        refusal, why = _refusal(record, draft.actor)
        if refusal == "forbidden" or refusal == "finished":
            return ActionResult(ok=False, detail=why, refusal=refusal).model_dump_json()
        record.set(DA_DRAFT, draft.text)
        if record.card is not None:
            communication.trigger_state_execution(NotifyState)
        return ActionResult(ok=True, detail="draft saved").model_dump_json()

    @rpc(timeout_seconds=10)
    def describe(self, ctx: WorkflowContext, persistence: Persistence, communication: Communication) -> str:
        return build_view(Record(persistence)).model_dump_json()


def _refusal(record: Record, actor: str | None) -> tuple[Refusal, str]:
    """Why this actor may not change the email now, if so. An owned email needs its owner as the actor."""
    if record.owner and actor != record.owner:
        return "forbidden", "only the person who started this email can change or cancel it"
    status = record.status
    if status == EmailStatus.SENDING:
        return "too_late", "it is being sent right now; it is too late to change or cancel it"
    if status.is_final:
        return "finished", f"this email is already {status.value}"
    return "", ""
