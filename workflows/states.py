"""The workflow's states: Init, Agent, Compose, Schedule, Sending, Notify, and where crashes land.

    Init -> Agent (wait for input) -> Compose (model) -> Agent | Schedule
    Schedule (durable timer, interrupted by input or cancel) -> Sending | Compose
    Sending -> done (sent) | Schedule (back off after a transient failure) | Agent (failed; the user decides)
    Notify: beside every step of an email with a card, brings the card up to date

Every value lives in iWF data attributes (workflows.record), so any process may die at any moment: the
iWF server retries the state API and the workflow continues from the last completed step.
"""

# No `from __future__ import annotations`: the iWF SDK reads these classes' annotations at runtime.

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from iwf.command_request import CommandRequest, InternalChannelCommand, TimerCommand
from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.iwf_api.models import (
    ChannelRequestStatus,
    PersistenceLoadingPolicy,
    PersistenceLoadingType,
    RetryPolicy,
)
from iwf.persistence import Persistence
from iwf.state_decision import StateDecision
from iwf.workflow_context import WorkflowContext
from iwf.workflow_state import WorkflowState
from iwf.workflow_state_options import WorkflowStateOptions

from workflows.agent import Agent, AgentError
from workflows.decisions import apply_reply
from workflows.mailer import Mailer, OutgoingEmail, PermanentSendError, SendError
from workflows.model import (
    EmailDraft,
    EmailStatus,
    StartInput,
    Turn,
    UserRequest,
    utcnow,
)
from workflows.notifier import CardNotifier
from workflows.record import (
    CH_CANCEL,
    CH_USER_INPUT,
    DA_CARD,
    DA_DRAFT,
    DA_INBOX,
    DA_OWNER,
    DA_PENDING,
    DA_SEND_ATTEMPTS,
    DA_SENT_MESSAGE_ID,
    DA_STATUS,
    DA_TIMEZONE,
    Record,
    build_view,
    initial_attributes,
    message_id,
)
from workflows.sendtime import format_local, seconds_until, zone

# The inbox and the pending count change together, under one lock shared by the RPCs that accept
# requests and the states that take them up, so "processing" is shown from the moment a request is
# accepted until the agent has answered it.
_INBOX_KEYS = [DA_INBOX, DA_PENDING]
LOCKED_INBOX = PersistenceLoadingPolicy(
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
            # Decided under the inbox lock: the user may have written more while the model thought.
            return StateDecision.single_next_state(CancelByRequestState)
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
        # From here on requests and cancels are refused (status "sending"); one accepted just before, while
        # the status still said "scheduled", is already in its channel and wins over sending.
        Record(persistence).status = EmailStatus.SENDING
        return CommandRequest.for_any_command_completed(
            TimerCommand.by_seconds(0),
            InternalChannelCommand.by_name(CH_CANCEL),
            InternalChannelCommand.by_name(CH_USER_INPUT),
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
        request = _received(command_results, CH_USER_INPUT)
        if request is not None:
            # A last-moment change: it is answered before anything is sent.
            return StateDecision.single_next_state(TakeUpRequestState, request)
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


class CancelByRequestState(WorkflowState[None]):
    """Ends the email the user asked (in words) to cancel, unless they wrote more meanwhile.

    Under the inbox lock, so no request can be accepted between the check and the end. With requests
    waiting, the email is put on hold (never sent) and the newer words are answered instead of dropped.
    """

    def get_state_options(self) -> WorkflowStateOptions:
        return _TAKES_UP_REQUESTS

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        if not record.pending:
            return _cancel(record)
        record.email = record.email.model_copy(update={"send_at": None})
        record.status = EmailStatus.WAITING
        record.tell("It will not be sent. You wrote more in the meantime; reading that now.")
        return _go(record, AgentState)


class TakeUpRequestState(WorkflowState[str]):
    """Records a request that a state without the inbox lock received (Sending), under the lock."""

    def get_state_options(self) -> WorkflowStateOptions:
        return _TAKES_UP_REQUESTS

    def execute(
        self,
        ctx: WorkflowContext,
        input: str,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        _accept_request(record, input)
        return _go(record, ComposeState)


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
