"""Scheduling and delivery: a durable timer, a decision under the inbox lock, one hand-over.

    Schedule (timer | request | cancel) -> Compose | Deliver (decided under the lock) | Agent (a request
        accepted in the last moment is answered before anything goes out)
    Deliver -> done (sent) | Schedule (definite transient failure: back off) | Agent (failed, unconfirmed)

Exactly once, as far as it can be known: the hand-over is decided and recorded (DeliveryIntent) in a step
that completes before the mail server is contacted; the delivering execution then claims it in the
owner's delivery ledger before sending. Claim and send run once per hand-over in a process (its
registry): a re-execution there waits for the first and shares its outcome. An execution that finds
another process's claim does not send blindly: it asks the mail account (outbox, Sent folder), and if
that cannot tell, it stops and tells the user "delivery unknown" (that protocol: handover.py; here, the
states and what each outcome does to the email).
"""

# No `from __future__ import annotations`: the iWF SDK reads these classes' annotations at runtime.

import uuid
from datetime import timedelta

from iwf.command_request import CommandRequest, InternalChannelCommand, TimerCommand
from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.iwf_api.models import RetryPolicy
from iwf.persistence import Persistence
from iwf.state_decision import StateDecision
from iwf.workflow_context import WorkflowContext
from iwf.workflow_state import WorkflowState
from iwf.workflow_state_options import WorkflowStateOptions

from workflows.deliveries import Delivered, Outcome
from workflows.ledger import ledger_day, ledger_id
from workflows.mailer import (
    AmbiguousSendError,
    OutgoingEmail,
    PartlyDeliveredError,
    PermanentSendError,
    SendError,
    TransientSendError,
    on_behalf_of,
)
from workflows.model import DeliveryIntent, EmailDraft, EmailStatus
from workflows.record import (
    CH_CANCEL,
    CH_CONTROL,
    CH_USER_INPUT,
    DA_CARD,
    DA_DELIVERY,
    DA_EMAIL,
    DA_MAYBE_SENT,
    DA_OWNER,
    DA_OWNER_PROFILE,
    DA_SEND_ATTEMPTS,
    DA_SENT_MESSAGE_ID,
    DA_TIMEZONE,
    Record,
    message_id,
)
from workflows.sendtime import format_local, seconds_until
from workflows.states import conversation
from workflows.states.common import (
    INBOX_KEYS,
    TAKE_UP_KEYS,
    Services,
    finish,
    go,
    load,
    take_up,
)
from workflows.states.handover import StillUnderWay, after_an_earlier_attempt, claim_age_seconds, hand_over

_DELIVERY_KEYS = (DA_EMAIL, DA_DELIVERY, DA_SEND_ATTEMPTS, DA_TIMEZONE, DA_CARD, DA_OWNER_PROFILE, DA_MAYBE_SENT)


class ScheduleState(WorkflowState[None]):
    """A durable timer to the send time; new input or a cancel interrupts it. When it fires, the hand-over is
    decided here, under the inbox lock: a request accepted after the wait ended is answered first."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            wait_until_api_data_attributes_loading_policy=load(DA_EMAIL, DA_DELIVERY),
            execute_api_data_attributes_loading_policy=load(
                *TAKE_UP_KEYS, DA_EMAIL, DA_DELIVERY, DA_OWNER, DA_TIMEZONE, lock=INBOX_KEYS
            ),
        )

    def wait_until(
        self, ctx: WorkflowContext, input: None, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        record = Record(persistence)
        record.status = EmailStatus.SCHEDULED
        send_at = record.email.send_at or self._services.clock()
        previous = record.delivery
        if previous is not None and previous.not_before is not None:
            send_at = max(send_at, previous.not_before)
        return CommandRequest.for_any_command_completed(
            TimerCommand.by_seconds(seconds_until(send_at, self._services.clock())),
            InternalChannelCommand.by_name(CH_USER_INPUT),
            InternalChannelCommand.by_name(CH_CANCEL),
            InternalChannelCommand.by_name(CH_CONTROL),
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
        # A request accepted while the timer fired is answered before anything goes out.
        if (decided := take_up(record, command_results, communication, self._services)) is not None:
            return decided
        email = record.email
        previous = record.delivery
        if previous is not None and previous.revision == email.revision:
            same_id = previous.message_id  # the same words keep their Message-ID round after round
        else:
            same_id = message_id(ctx.workflow_id, email.revision, self._services.mail_domain, ctx.workflow_run_id)
        record.delivery = DeliveryIntent(
            message_id=same_id,
            revision=email.revision,
            round=(previous.round + 1) if previous else 1,
            ledger=ledger_id(
                self._services.ledger_scope,
                record.get_str(DA_OWNER) or None,
                ctx.workflow_id,
                ledger_day(self._services.clock()),
            ),
        )
        # From here on requests and cancels are refused ("being sent"), so nothing can be accepted unread.
        record.status = EmailStatus.SENDING
        return go(record, DeliverState)


class DeliverState(WorkflowState[None]):
    """Hands the email to the mail server once, as decided by Schedule (see the module docstring)."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(
            execute_api_data_attributes_loading_policy=load(*_DELIVERY_KEYS),
            execute_api_timeout_seconds=self._services.send_timeout_seconds,
            # A worker that is down (the app restarting) is retried for up to an hour; a step that keeps
            # crashing then lands in DeliveryCrashedState, which finds out what happened.
            execute_api_retry_policy=RetryPolicy(
                initial_interval_seconds=2,
                backoff_coefficient=2,
                maximum_interval_seconds=60,
                maximum_attempts_duration_seconds=3600,
            ),
            proceed_to_state_when_execute_retry_exhausted=DeliveryCrashedState,
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
        email, intent = record.email, record.delivery
        if intent is None:  # cannot happen: Schedule records the intent before moving here
            raise RuntimeError("no delivery intent recorded")
        profile = record.owner_profile
        outgoing = OutgoingEmail(
            message_id=intent.message_id,
            to=email.to,
            subject=email.subject,
            body=email.body,
            from_name=on_behalf_of(services.from_name_format, profile.name) if profile.name else None,
            reply_to=profile.email,
        )
        execution = f"{ctx.state_execution_id}:{uuid.uuid4()}"
        key = f"{intent.message_id}#{intent.round}"
        earlier = record.maybe_sent_id
        outcome = services.deliveries.run(key, lambda: hand_over(services, intent, outgoing, execution, earlier))
        return _apply(record, email, intent, outcome, services)


def _apply(
    record: Record, email: EmailDraft, intent: DeliveryIntent, outcome: Outcome, services: Services
) -> StateDecision:
    if isinstance(outcome, Delivered) and outcome.earlier_message_id:
        record.set(DA_SENT_MESSAGE_ID, outcome.earlier_message_id)
        record.status = EmailStatus.SENT
        record.tell(
            "An earlier version of this email went out before your last change could: I found it in the "
            "account's sent mail, so I did not send the new version as a second email. Start a new email if "
            "the change matters."
        )
        return finish(record, outcome.where)
    if isinstance(outcome, Delivered):
        record.set(DA_SENT_MESSAGE_ID, intent.message_id)
        record.status = EmailStatus.SENT
        record.tell(f"Sent to {', '.join(email.to)}." + (f" {outcome.note}" if outcome.note else ""))
        return finish(record, outcome.where)
    if isinstance(outcome, PartlyDeliveredError):  # sent: a retry would send it to everyone again
        record.set(DA_SENT_MESSAGE_ID, intent.message_id)
        record.status = EmailStatus.SENT
        record.tell(
            f"Sent to {', '.join(outcome.delivered_to)}, but {outcome.reason}: they did not get it. "
            "Start a new email to them if you want to try another address.",
            outcome.reason,
        )
        return finish(record, "partly delivered")
    if isinstance(outcome, AmbiguousSendError):
        record.status = EmailStatus.UNCONFIRMED
        record.set(DA_MAYBE_SENT, intent.message_id)
        if outcome.hold_seconds:
            hold_until = services.clock() + timedelta(seconds=outcome.hold_seconds)
            record.delivery = intent.model_copy(update={"not_before": hold_until})
        # No time kept: it goes out again only when the user gives one (a question is no resend order).
        record.email = email.model_copy(update={"scheduled": False, "send_at": None, "undo_until": None})
        record.tell(
            f"I am not sure the email went out: {outcome.reason}. It may have been delivered. "
            "Check with the recipient, or ask me to send it again (the copy carries the same Message-ID, "
            "so most mail servers drop it if the first one arrived).",
            outcome.reason,
        )
        return go(record, conversation.AgentState)
    return _failed(record, email, outcome, services)


def _failed(record: Record, email: EmailDraft, error: SendError, services: Services) -> StateDecision:
    under_way = isinstance(error, StillUnderWay)
    attempts = record.send_attempts + (0 if under_way else 1)
    record.set(DA_SEND_ATTEMPTS, attempts)
    hold = error.retry_after if isinstance(error, TransientSendError) else 0.0
    intent = record.delivery
    if hold and intent is not None:
        # An earlier hand-over may still be under way elsewhere: no new round before it must be over, even
        # if the owner says "send now" or "send again" meanwhile (the next round's claim is a new one, blind
        # to the old), and even once this email has failed.
        record.delivery = intent.model_copy(update={"not_before": services.clock() + timedelta(seconds=hold)})
    if under_way and intent is not None:
        # ...and that copy may arrive: a cancel meanwhile cannot promise "not sent", and a round with words
        # edited meanwhile (a new Message-ID) first looks for this one.
        record.set(DA_MAYBE_SENT, intent.message_id)
    if isinstance(error, PermanentSendError) or (not under_way and attempts >= services.send_max_attempts):
        record.email = email.model_copy(update={"send_at": None, "scheduled": False})
        tried = "" if isinstance(error, PermanentSendError) else f" after {attempts} attempts"
        if record.maybe_sent:  # an earlier hand-over's outcome is unknown: it may have arrived all the same
            record.status = EmailStatus.UNCONFIRMED
            record.tell(
                f"I could not send the email again{tried}: {error.reason}. An earlier copy may have arrived: "
                "check with the recipient, or tell me when to try again.",
                error.reason,
            )
        else:
            record.status = EmailStatus.FAILED
            record.tell(f"I could not send the email{tried}: {error.reason}. Tell me when to try again.", error.reason)
        return go(record, conversation.AgentState)
    delay = min(services.send_backoff_seconds * 2 ** max(0, attempts - 1), services.send_backoff_max_seconds)
    delay = max(delay, hold)
    retry_at = services.clock() + timedelta(seconds=delay)
    # The undo window, if any, is over: the card must not count down "Sending in 0 s" through the back-off.
    record.email = email.model_copy(update={"send_at": retry_at, "scheduled": True, "undo_until": None})
    counted = "" if under_way else f" (attempt {attempts + 1} of {services.send_max_attempts})"
    record.tell(
        f"Sending failed ({error.reason}); retrying at {format_local(retry_at, record.timezone)}{counted}.",
        error.reason,
    )
    # Back through Schedule, so the user can still revise or cancel while we wait.
    record.status = EmailStatus.SCHEDULED
    return go(record, ScheduleState)


class DeliveryCrashedState(WorkflowState[None]):
    """Reached when the delivery step kept crashing for an hour; iWF gave up retrying it."""

    def __init__(self, services: Services):
        self._services = services

    def get_state_options(self) -> WorkflowStateOptions:
        return WorkflowStateOptions(execute_api_data_attributes_loading_policy=load(*_DELIVERY_KEYS))

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        services, record = self._services, Record(persistence)
        email, intent = record.email, record.delivery
        reason = "the send step failed repeatedly (see the worker logs)"
        if intent is None:
            return _failed(record, email, PermanentSendError(reason), services)
        outcome = services.deliveries.known(f"{intent.message_id}#{intent.round}")
        if outcome is None:
            # A probe: if no crashed execution got as far as its claim, none reached the mail server.
            claim = services.ledger.claim(intent, f"crashed:{uuid.uuid4()}", 0)
            if claim.first:
                return _failed(record, email, PermanentSendError(reason), services)
            age = claim_age_seconds(services, claim.earlier_at)
            if age < services.handover_seconds:
                # The last attempt timed out rather than crashed, and its hand-over may still be going (iWF
                # stops waiting for it, not the attempt): a new round, once that must be over, judges it.
                # As StillUnderWay: that copy may arrive, so a cancel meanwhile cannot promise "not sent", and the
                # wait uses no attempt of the budget.
                outcome = StillUnderWay(
                    "the last attempt to send it timed out and may still be under way",
                    retry_after=max(1.0, services.handover_seconds - age),
                )
            else:  # that hand-over is over, so "not there" is "not sent"
                outcome = after_an_earlier_attempt(services, intent.message_id) or PermanentSendError(reason)
        return _apply(record, email, intent, outcome, services)
