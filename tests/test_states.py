"""State logic in-process, for the races an end-to-end test cannot aim at: a dict stands in for iWF's
Persistence and a recording mailer for SMTP. The same paths run for real in tests/engine/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from iwf.command_results import CommandResults, InternalChannelCommandResult, TimerCommandResult
from iwf.iwf_api.models import ChannelRequestStatus, TimerStatus
from iwf.workflow_context import WorkflowContext

from workflows.mailer import OutgoingEmail
from workflows.model import EmailDraft, EmailStatus, UserRequest
from workflows.record import CH_CANCEL, CH_USER_INPUT, Record
from workflows.states import CancelByRequestState, SendingState, Services, TakeUpRequestState


class Attributes(dict[str, Any]):
    def get_data_attribute(self, key: str) -> Any:
        return self.get(key)

    def set_data_attribute(self, key: str, value: Any) -> None:
        self[key] = value


class RecordingMailer:
    description = "recording"

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send(self, email: OutgoingEmail) -> str:
        self.sent.append(email)
        return "recorded"


def results(*channels: tuple[str, str]) -> CommandResults:
    return CommandResults(
        timer_commands=[TimerCommandResult(TimerStatus.FIRED, "")],
        internal_channel_commands=[
            InternalChannelCommandResult(name, value, ChannelRequestStatus.RECEIVED, "") for name, value in channels
        ],
        signal_channel_commands=[],
    )


def scheduled_email() -> tuple[Attributes, RecordingMailer, SendingState]:
    attributes = Attributes(status=EmailStatus.SENDING.value, pending=1, timezone="UTC")
    Record(attributes).email = EmailDraft(
        to=["a@example.com"], subject="Old", body="Old words", send_at=datetime.now(UTC), revision=1
    )
    mailer = RecordingMailer()
    return attributes, mailer, SendingState(Services(agent=None, mailer=mailer))  # type: ignore[arg-type]


CTX = WorkflowContext(workflow_id="wf-1", workflow_run_id="run-1", workflow_start_timestamp_seconds=0)


def test_a_request_accepted_just_before_sending_is_answered_first_not_dropped() -> None:
    attributes, mailer, state = scheduled_email()
    request = UserRequest(text="subject: New", message_id="m2").model_dump_json()
    decision = state.execute(CTX, None, results((CH_USER_INPUT, request)), attributes, None)  # type: ignore[arg-type]
    assert mailer.sent == [], "nothing goes out before the change is answered"
    [movement] = decision.next_states
    assert movement.state_id == "TakeUpRequestState" and movement.state_input == request
    decision = TakeUpRequestState().execute(CTX, request, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert [t.text for t in record.conversation] == ["subject: New"]
    assert record.pending == 0 and record.status == EmailStatus.PROCESSING
    assert decision.next_states[0].state_id == "ComposeState"


def test_a_cancel_that_raced_in_wins_over_sending() -> None:
    attributes, mailer, state = scheduled_email()
    decision = state.execute(CTX, None, results((CH_CANCEL, "{}")), attributes, None)  # type: ignore[arg-type]
    assert mailer.sent == []
    assert Record(attributes).status == EmailStatus.CANCELED
    assert decision.next_states[0].state_id != "SendingState"


def test_a_retried_send_step_does_not_send_twice() -> None:
    attributes, mailer, state = scheduled_email()
    state.execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    attributes["status"] = EmailStatus.SENDING.value  # the workflow is back in Sending for the same revision
    state.execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert len(mailer.sent) == 1
    assert Record(attributes).status == EmailStatus.SENT


def test_a_cancel_in_words_with_newer_words_waiting_holds_instead_of_dropping_them() -> None:
    attributes, mailer, _ = scheduled_email()
    attributes["status"] = EmailStatus.PROCESSING.value
    decision = CancelByRequestState().execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.WAITING and record.email.send_at is None
    assert decision.next_states[0].state_id == "AgentState", "the waiting request is answered next"
    attributes["pending"] = 0
    decision = CancelByRequestState().execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.CANCELED
    assert mailer.sent == []
