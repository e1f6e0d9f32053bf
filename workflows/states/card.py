"""The user's card: posted, then kept up to date beside every step of an email that has one."""

# No `from __future__ import annotations`: the iWF SDK reads these classes' annotations at runtime.

from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.iwf_api.models import RetryPolicy
from iwf.persistence import Persistence
from iwf.state_decision import StateDecision
from iwf.workflow_context import WorkflowContext
from iwf.workflow_state import WorkflowState
from iwf.workflow_state_options import WorkflowStateOptions

from workflows.record import DA_CARD, DA_CONVERSATION, VIEW_KEYS, Record, build_view
from workflows.states.common import Services, load


class NotifyState(WorkflowState[str]):
    """Brings the user's card up to date, posting it the first time.

    Runs beside the main thread after every change. Executions hold a lock on the card, so they run
    one at a time and each renders the attributes as they are *then*: the last one shows the latest
    state even if an earlier one was slow. A failed call (Slack 429, 5xx, network) raises and the iWF
    server retries it with back-off. Input: the workflow's output when this is the final update.

    An email started from a slash command has no thread yet: its root message is posted first, in a step
    of its own, so a retry never posts it twice once it is recorded.
    """

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            # Everything the card shows; the conversation is not shown, so it does not travel.
            execute_api_data_attributes_loading_policy=load(
                *(key for key in VIEW_KEYS if key not in (DA_CARD, DA_CONVERSATION)), lock=[DA_CARD]
            ),
            execute_api_timeout_seconds=30,
            execute_api_retry_policy=RetryPolicy(
                initial_interval_seconds=1,
                backoff_coefficient=2,
                maximum_interval_seconds=60,
                maximum_attempts_duration_seconds=self._services.card_retry_seconds,
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
            retry = (ctx.attempt or 1) > 1
            if not card.thread_ts:
                channel, thread_ts = notifier.post_root(card, ctx.workflow_id, retry=retry)
                record.card = card.model_copy(update={"channel": channel, "thread_ts": thread_ts})
                return StateDecision.single_next_state(NotifyState, input)
            view = build_view(record)
            if card.ts:
                notifier.update(card, ctx.workflow_id, view)
            else:
                card = card.model_copy(update={"ts": notifier.post(card, ctx.workflow_id, view, retry=retry)})
                record.card = card
            notifier.settled(card, ctx.workflow_id, view)
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
        # An input is the end the card was to show (`finish`): it ends now, card or not. That includes ends
        # whose status is not final ("delivery unknown" closed after the idle time), which would otherwise
        # stay open for good, taking requests nobody reads.
        if input or Record(persistence).over:
            return StateDecision.graceful_complete_workflow(input or "finished")
        return StateDecision.dead_end
