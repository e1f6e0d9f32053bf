"""The conversation: the start, waiting for the user, and the model's turn.

Start -> Compose (a first request came with the start) | Agent
Agent (waits for a request or a cancel) -> Compose
Compose (the model) -> Agent (needs the user) | Schedule | CancelByRequest
"""

# No `from __future__ import annotations`: the iWF SDK reads these classes' annotations at runtime.

from datetime import timedelta

from iwf.command_request import BaseCommand, CommandRequest, InternalChannelCommand, TimerCommand
from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.iwf_api.models import RetryPolicy
from iwf.persistence import Persistence
from iwf.state_decision import StateDecision
from iwf.workflow_context import WorkflowContext
from iwf.workflow_state import WorkflowState
from iwf.workflow_state_options import WorkflowStateOptions

from workflows.agent import AgentError
from workflows.decisions import apply_reply
from workflows.model import EmailStatus, StartInput, Turn
from workflows.record import (
    CH_CANCEL,
    CH_CONTROL,
    CH_USER_INPUT,
    DA_CARD,
    DA_CLOSED,
    DA_CONFIRMED,
    DA_CONVERSATION,
    DA_DELIVERY,
    DA_EMAIL,
    DA_MAYBE_SENT,
    DA_SEND_ATTEMPTS,
    DA_STATUS,
    DA_TIMEZONE,
    Record,
    initial_attributes,
)
from workflows.sendtime import format_local, zone
from workflows.states import sending
from workflows.states.common import (
    INBOX_KEYS,
    TAKE_UP_KEYS,
    Services,
    cancel,
    finish,
    fresh_attempts,
    go,
    load,
    policy,
    take_up,
)


class StartState(WorkflowState[str]):
    """Entry point; no wait. A workflow started without initial attributes (by hand) gets them here."""

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(execute_api_data_attributes_loading_policy=load(DA_TIMEZONE, DA_STATUS, DA_CARD))

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
        if record.status == EmailStatus.PROCESSING:  # the start carried the first request
            return go(record, ComposeState)
        return go(record, AgentState)


class AgentState(WorkflowState[None]):
    """Waits for the user. A failure stays visible here until the next request."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            wait_until_api_data_attributes_loading_policy=load(DA_STATUS),
            execute_api_data_attributes_loading_policy=load(*TAKE_UP_KEYS, lock=INBOX_KEYS),
        )

    def wait_until(
        self, ctx: WorkflowContext, input: None, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        record = Record(persistence)
        if record.status not in (EmailStatus.FAILED, EmailStatus.UNCONFIRMED):
            record.status = EmailStatus.WAITING
        commands: list[BaseCommand] = [
            InternalChannelCommand.by_name(CH_USER_INPUT),
            InternalChannelCommand.by_name(CH_CANCEL),
            InternalChannelCommand.by_name(CH_CONTROL),
        ]
        if self._services.draft_ttl_seconds:
            # A draft nobody answers does not wait forever (an open workflow costs the engine memory).
            commands.append(TimerCommand.by_seconds(self._services.draft_ttl_seconds))
        return CommandRequest.for_any_command_completed(*commands)

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        record = Record(persistence)
        if (decided := take_up(record, command_results, communication, self._services)) is not None:
            return decided  # a request accepted as the idle timer fired included
        idle = _duration(self._services.draft_ttl_seconds)
        record.set(DA_CLOSED, 1)  # from now on every request is refused, even while the card's last update runs
        if record.status == EmailStatus.UNCONFIRMED or record.maybe_sent:  # never "nothing was sent" then
            record.status = EmailStatus.UNCONFIRMED
            record.tell(
                f"Closed after {idle} without activity. Whether the email went out is still unknown: check with "
                "the recipient. Start a new email any time."
            )
            return finish(record, "expired")
        record.status = EmailStatus.CANCELED
        record.tell(f"Closed after {idle} without activity; nothing was sent. Start a new email any time.")
        return finish(record, "expired")


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _not_understood(record: Record, services: Services, reason: str) -> StateDecision:
    """The model could not answer: nothing changes, and a scheduled email stays scheduled at its time.

    The request stays in the conversation, so the next message (or "try again") replays it.
    """
    email = record.email
    due_soon = services.clock() + timedelta(seconds=services.undo_seconds)
    if email.scheduled and email.send_at is not None and email.send_at > due_soon:
        when = format_local(email.send_at, record.timezone)
        record.tell(f"Sorry, {reason}. Nothing was changed: the email still goes out {when}.", reason)
        record.status = EmailStatus.SCHEDULED
        return go(record, sending.ScheduleState)
    if email.scheduled and email.send_at is not None:
        # Due now (the message came as the timer fired) or within the undo window: going out without the words
        # nobody could read would drop a last-moment change, so it waits for the owner instead.
        when = format_local(email.send_at, record.timezone)
        record.email = email.model_copy(update={"scheduled": False, "send_at": None, "undo_until": None})
        record.tell(
            f"Sorry, {reason}. Your message came as the email was due ({when}), so I put it on hold rather than "
            "send it without your change: send your message again, or tell me when to send it as it is.",
            reason,
        )
        record.status = record.at_rest()  # "delivery unknown" stays so, if an earlier copy may be out
        return go(record, AgentState)
    record.tell(f"Sorry, {reason}. Nothing was changed; your message is kept, send it again or rephrase.", reason)
    record.status = record.at_rest()
    return go(record, AgentState)


class ComposeState(WorkflowState[None]):
    """Runs the model on the whole conversation and applies what it proposes, after checking it."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            execute_api_data_attributes_loading_policy=load(
                DA_CONVERSATION, DA_EMAIL, DA_TIMEZONE, DA_CARD, DA_CONFIRMED, DA_MAYBE_SENT, DA_DELIVERY
            ),
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
            return _not_understood(record, services, error.reason)

        outcome = apply_reply(reply, email, timezone=timezone, now=services.clock(), policy=policy(record, services))
        if outcome.next == "cancel":
            record.add_turn(Turn(role="assistant", text=outcome.reply or "Canceled."))
            # Decided under the inbox lock: the user may have written more while the model thought.
            return StateDecision.single_next_state(CancelByRequestState)
        if fresh_attempts(email, outcome.email, outcome.next):
            record.set(DA_SEND_ATTEMPTS, 0)
        record.email = outcome.email
        record.add_turn(Turn(role="assistant", text=outcome.reply))
        record.tell(outcome.reply, outcome.problem)
        if outcome.next == "schedule":
            record.status = EmailStatus.SCHEDULED
            return go(record, sending.ScheduleState)
        record.status = record.at_rest()
        return go(record, AgentState)


class ComposeCrashedState(WorkflowState[None]):
    """Reached only when the compose step kept crashing (a bug or an outage), not on a model error."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            execute_api_data_attributes_loading_policy=load(DA_EMAIL, DA_TIMEZONE, DA_CARD, DA_MAYBE_SENT, DA_DELIVERY)
        )

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        return _not_understood(Record(persistence), self._services, "the assistant failed repeatedly on this request")


class CancelByRequestState(WorkflowState[None]):
    """Ends the email the user asked (in words) to cancel, unless they wrote more meanwhile.

    Under the inbox lock, so no request can be accepted between the check and the end. With requests
    waiting, the email is put on hold (never sent) and the newer words are answered instead of dropped.
    """

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            execute_api_data_attributes_loading_policy=load(DA_EMAIL, *TAKE_UP_KEYS, lock=INBOX_KEYS)
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
        if not record.pending:
            return cancel(record)
        record.email = record.email.model_copy(update={"send_at": None, "scheduled": False})
        record.status = record.at_rest()
        record.tell("It will not be sent. You wrote more in the meantime; reading that now.")
        return go(record, AgentState)
