"""State logic in-process, for the races and crashes an end-to-end test cannot aim at precisely: a dict
stands in for iWF's Persistence, an in-memory ledger for the ledger workflow and a recording mailer for
SMTP. The same paths run for real, through the engine, in tests/engine/."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from iwf.command_results import CommandResults, InternalChannelCommandResult, TimerCommandResult
from iwf.errors import WorkflowAlreadyStartedError, WorkflowNotExistsError
from iwf.iwf_api.models import ChannelRequestStatus, TimerStatus
from iwf.iwf_api.models.error_response import ErrorResponse
from iwf.state_decision import StateDecision
from iwf.workflow_context import WorkflowContext

from workflows.agent import AgentReply, AgentUnavailableError
from workflows.deliveries import Delivered, DeliveryRegistry
from workflows.ledger import ClaimRequest, ClaimResult, DeliveryLedgerWorkflow, IwfDeliveryLedger, SettleRequest
from workflows.mailer import AmbiguousSendError, OutgoingEmail, PermanentSendError, TransientSendError
from workflows.mailer.message import build_message
from workflows.model import DeliveryIntent, EmailDraft, EmailStatus, Turn
from workflows.record import CH_CANCEL, CH_USER_INPUT, DA_OWNER_PROFILE, Record, build_view
from workflows.states import (
    AgentState,
    CancelByRequestState,
    ComposeCrashedState,
    ComposeState,
    DeliverState,
    DeliveryCrashedState,
    NotifyGaveUpState,
    ScheduleState,
    Services,
    handover,
)
from workflows.states.common import MAYBE_SENT_CANCELED

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Attributes(dict[str, Any]):
    def get_data_attribute(self, key: str) -> Any:
        return self.get(key)

    def set_data_attribute(self, key: str, value: Any) -> None:
        self[key] = value

    def get_search_attribute_keyword(self, key: str) -> str | None:
        return self.get(f"sa:{key}")

    def set_search_attribute_keyword(self, key: str, value: str | None) -> None:
        self[f"sa:{key}"] = value

    get_search_attribute_datetime = get_search_attribute_keyword
    set_search_attribute_datetime = set_search_attribute_keyword


class RecordingMailer:
    description = "recording"

    def __init__(self, fail_with: Exception | None = None, delivered: bool | None = None) -> None:
        self.sent: list[OutgoingEmail] = []
        self.fail_with = fail_with
        self.delivered = delivered
        self.asked: list[tuple[str, bool]] = []

    def send(self, email: OutgoingEmail) -> str:
        self.sent.append(email)
        if self.fail_with is not None:
            raise self.fail_with
        return "recorded"

    def was_delivered(self, message_id: str, settle: bool = True) -> bool | None:
        self.asked.append((message_id, settle))
        return self.delivered


class MemoryLedger:
    """The ledger workflow's claim RPC, run on a dict: the same code, without the engine, on the tests' clock."""

    def __init__(self, clock: Callable[[], datetime] = lambda: NOW) -> None:
        self.attributes = Attributes()
        self._workflow = DeliveryLedgerWorkflow(clock)

    def claim(
        self, intent: DeliveryIntent, execution: str, daily_limit: int, take_over_after: float = 0
    ) -> ClaimResult:
        request = ClaimRequest(message_id=intent.message_id, round=intent.round, execution=execution)
        request.daily_limit = daily_limit
        request.take_over_after_seconds = take_over_after
        raw = self._workflow.claim(None, request.model_dump_json(), self.attributes, None)  # type: ignore[arg-type]
        return ClaimResult.model_validate_json(raw)

    def settle(
        self,
        intent: DeliveryIntent,
        execution: str,
        outcome: str,
        reason: str = "",
        delivered_to: list[str] | None = None,
    ) -> None:
        request = SettleRequest.of(intent, execution, outcome, reason, delivered_to)
        self._workflow.settle(None, request.model_dump_json(), self.attributes, None)  # type: ignore[arg-type]

    def outcome_of(self, intent: DeliveryIntent) -> str:
        return str(json.loads(self.attributes["claims"])[f"{intent.message_id}#{intent.round}"].get("outcome", ""))

    def age_claims(self, seconds: float) -> None:
        """As if every claim had been made `seconds` earlier."""
        claims = json.loads(self.attributes["claims"])
        for claim in claims.values():
            claim["at"] = (datetime.fromisoformat(claim["at"]) - timedelta(seconds=seconds)).isoformat()
        self.attributes["claims"] = json.dumps(claims)


class FailingAgent:
    def respond(self, *args: Any) -> AgentReply:
        raise AgentUnavailableError("the assistant is rate-limited right now")


def services(mailer: RecordingMailer, ledger: MemoryLedger | None = None, **kwargs: Any) -> Services:
    return Services(
        agent=kwargs.pop("agent", None),
        mailer=mailer,
        ledger=ledger or MemoryLedger(),
        clock=kwargs.pop("clock", lambda: NOW),
        **kwargs,
    )


def results(*channels: tuple[str, str], timer: bool = True) -> CommandResults:
    return CommandResults(
        timer_commands=[TimerCommandResult(TimerStatus.FIRED, "")] if timer else [],
        internal_channel_commands=[
            InternalChannelCommandResult(name, value, ChannelRequestStatus.RECEIVED, "") for name, value in channels
        ],
        signal_channel_commands=[],
    )


def scheduled(**extra: Any) -> Attributes:
    attributes = Attributes({"status": EmailStatus.SCHEDULED.value, "timezone": "UTC", "owner": "alice", **extra})
    Record(attributes).email = EmailDraft(
        to=["a@example.com"], subject="Hi", body="Words", send_at=NOW, scheduled=True, revision=1
    )
    return attributes


CTX = WorkflowContext(
    workflow_id="wf-1", workflow_run_id="run-1", workflow_start_timestamp_seconds=0, state_execution_id="Deliver-1"
)


def next_state(decision: StateDecision) -> str:
    return str(decision.next_states[0].state_id)


def test_a_request_accepted_as_the_timer_fired_is_answered_before_anything_goes_out() -> None:
    """The timer won the wait, but a request was accepted before the decision: it is still in its channel."""
    attributes = scheduled(pending=1)
    decision = ScheduleState(services(RecordingMailer())).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert next_state(decision) == "AgentState", "the waiting request is taken up first"
    assert Record(attributes).delivery is None and Record(attributes).status == EmailStatus.SCHEDULED


def test_a_cancel_accepted_as_the_timer_fired_wins() -> None:
    attributes = scheduled(cancel_requested=1, pending=2)
    ScheduleState(services(RecordingMailer())).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.CANCELED
    assert record.pending == 0, "a canceled email shows nothing pending"


def test_the_timer_records_the_hand_over_before_delivering() -> None:
    attributes = scheduled()
    decision = ScheduleState(services(RecordingMailer())).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert next_state(decision) == "DeliverState"
    assert record.status == EmailStatus.SENDING
    assert record.delivery is not None and record.delivery.round == 1 and record.delivery.revision == 1


def _ready_to_deliver(attributes: Attributes, svc: Services) -> None:
    ScheduleState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]


def test_a_re_executed_delivery_in_the_same_process_does_not_send_twice() -> None:
    mailer, ledger = RecordingMailer(), MemoryLedger()
    svc = services(mailer, ledger)
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    first, again = Attributes(attributes), Attributes(attributes)
    DeliverState(svc).execute(CTX, None, results(), first, None)  # type: ignore[arg-type]
    # iWF runs the step again (a local activity gave up, a workflow task replayed): same input, new execution.
    DeliverState(svc).execute(CTX, None, results(), again, None)  # type: ignore[arg-type]
    assert len(mailer.sent) == 1
    assert Record(first).status == Record(again).status == EmailStatus.SENT


def test_a_re_execution_while_the_first_is_still_claiming_waits_for_it() -> None:
    """iWF re-runs the step in the same process while the first execution's claim is still on its way
    (iWF restarted mid-call): the second must not find that claim, guess "maybe delivered", and say
    "delivery unknown" while the first goes on to send. It waits for the first and shares its outcome."""
    import threading

    class SlowLedger(MemoryLedger):
        def __init__(self) -> None:
            super().__init__()
            self.claimed, self.answer = threading.Event(), threading.Event()

        def claim(self, intent: DeliveryIntent, execution: str, daily_limit: int) -> ClaimResult:
            result = super().claim(intent, execution, daily_limit)  # recorded, durable
            if not self.claimed.is_set():
                self.claimed.set()
                self.answer.wait(5)  # ... but its answer is late
            return result

    mailer, ledger = RecordingMailer(delivered=None), SlowLedger()
    svc = services(mailer, ledger)
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    first, again = Attributes(attributes), Attributes(attributes)
    running = threading.Thread(target=lambda: DeliverState(svc).execute(CTX, None, results(), first, None))  # type: ignore[arg-type]
    running.start()
    assert ledger.claimed.wait(5)
    second = threading.Thread(target=lambda: DeliverState(svc).execute(CTX, None, results(), again, None))  # type: ignore[arg-type]
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second execution waits for the first"
    ledger.answer.set()
    running.join(5)
    second.join(5)
    assert len(mailer.sent) == 1
    assert Record(first).status == Record(again).status == EmailStatus.SENT


def test_a_re_executed_delivery_in_another_process_does_not_resend_blindly() -> None:
    """The first execution claimed the hand-over and died; the mail server cannot be asked."""
    ledger = MemoryLedger()
    first_process = services(RecordingMailer(), ledger)
    attributes = scheduled()
    _ready_to_deliver(attributes, first_process)
    intent = Record(attributes).delivery
    assert intent is not None
    ledger.claim(intent, "Deliver-1:crashed-execution", 0)
    mailer = RecordingMailer(delivered=None)
    decision = DeliverState(services(mailer, ledger)).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert mailer.sent == []
    assert record.status == EmailStatus.UNCONFIRMED and not record.email.scheduled
    assert "not sure" in record.get_str("last_reply")
    assert next_state(decision) == "AgentState"


def test_a_re_executed_delivery_asks_the_mail_server_when_it_can() -> None:
    """Another process's claim. Found in the sent mail: it was sent. Not there and the claim older than a
    whole hand-over: not sent, so the ledger takes the claim over and it is sent now. Not there and the
    claim young: that hand-over may still be under way, so it looks again in a new round once it must be
    over (a durable timer, where the user can still cancel), and that round looks before it sends."""
    real_clock = lambda: NOW  # noqa: E731 - the same clock as the MemoryLedger's
    for delivered, age, sends, status in (
        (True, 0.0, 0, EmailStatus.SENT),
        (False, 91.0, 1, EmailStatus.SENT),
        (False, 5.0, 0, EmailStatus.SCHEDULED),
    ):
        ledger = MemoryLedger()
        attributes = scheduled()
        _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
        intent = Record(attributes).delivery
        assert intent is not None
        ledger.claim(intent, "Deliver-1:crashed-execution", 0)
        ledger.age_claims(age)
        mailer = RecordingMailer(delivered=delivered)
        svc = services(mailer, ledger, handover_seconds=90, clock=real_clock)
        decision = DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
        record = Record(attributes)
        assert (len(mailer.sent), record.status) == (sends, status), (delivered, age)
        if delivered:
            assert "checked the account's sent mail" in record.get_str("last_reply")
        if status == EmailStatus.SCHEDULED:
            assert next_state(decision) == "ScheduleState" and record.email.send_at is not None
            wait = (record.email.send_at - NOW).total_seconds()
            assert wait == 85, "not before the earlier hand-over must be over (90 s from a claim 5 s old)"
            assert "interrupted moments ago" in record.get_str("last_error")


class OnlyThese(RecordingMailer):
    """A Sent folder that holds exactly the given Message-IDs."""

    def __init__(self, *found: str) -> None:
        super().__init__()
        self.found = set(found)

    def was_delivered(self, message_id: str, settle: bool = True) -> bool | None:
        self.asked.append((message_id, settle))
        return message_id in self.found


def _while_an_earlier_hand_over_may_be_under_way() -> tuple[Attributes, MemoryLedger, str]:
    """Round 1 claimed by another process a moment ago, not in the Sent folder yet: back to Schedule, and
    the email may have gone out."""
    real_clock = lambda: NOW  # noqa: E731 - the same clock as the MemoryLedger's
    ledger, attributes = MemoryLedger(), scheduled()
    _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
    intent = Record(attributes).delivery
    assert intent is not None
    ledger.claim(intent, "Deliver-1:elsewhere", 0)
    svc = services(RecordingMailer(delivered=False), ledger, handover_seconds=90, clock=real_clock)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.SCHEDULED and Record(attributes).maybe_sent
    return attributes, ledger, intent.message_id


def test_words_edited_while_an_earlier_hand_over_may_be_under_way_are_not_sent_as_a_second_email() -> None:
    """The owner edits while round 1 may still be going out elsewhere: round 2 has a new Message-ID, and looks
    for round 1's first. Found: that went out, and the new words are not sent as a second email. Not found
    (its hand-over is over by then): the new words go out."""
    for found in (True, False):
        attributes, ledger, first_id = _while_an_earlier_hand_over_may_be_under_way()
        record = Record(attributes)
        record.email = record.email.model_copy(update={"subject": "Fixed", "revision": 2})
        record.delivery = record.delivery.model_copy(update={"not_before": None})  # type: ignore[union-attr]
        mailer = OnlyThese(first_id) if found else OnlyThese()
        svc = services(mailer, ledger)
        _ready_to_deliver(attributes, svc)
        second = Record(attributes).delivery
        assert second is not None and second.message_id != first_id and second.round == 2
        DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
        record = Record(attributes)
        assert record.status == EmailStatus.SENT
        if found:
            assert mailer.sent == [] and record.get_str("sent_message_id") == first_id
            assert "did not send the new version" in record.get_str("last_reply")
        else:
            assert [m.subject for m in mailer.sent] == ["Fixed"]
            assert record.get_str("sent_message_id") == second.message_id
        assert (first_id, False) in mailer.asked


def test_a_cancel_while_an_earlier_hand_over_may_be_under_way_does_not_promise_it_was_not_sent() -> None:
    attributes, _, _ = _while_an_earlier_hand_over_may_be_under_way()
    decision = ScheduleState(services(RecordingMailer())).execute(  # type: ignore[arg-type]
        CTX, None, results((CH_CANCEL, "{}"), timer=False), attributes, None
    )
    record = Record(attributes)
    assert record.status == EmailStatus.CANCELED and record.get_str("last_reply") == MAYBE_SENT_CANCELED
    assert "may still have delivered it" in MAYBE_SENT_CANCELED
    assert decision.next_states


def test_a_sender_name_with_a_tab_or_line_break_is_sent_as_one_line_not_refused_at_send_time() -> None:
    """A Slack profile's name is not checked by anyone before the send: a tab in it once failed every email of
    that owner, permanently, after the daily-limit claim."""
    mailer = RecordingMailer()
    svc = services(mailer, MemoryLedger())
    profile = json.dumps({"name": "Ana\tMaría\u2028Example", "email": None})
    attributes = scheduled(**{DA_OWNER_PROFILE: profile})
    _ready_to_deliver(attributes, svc)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    [sent] = mailer.sent
    assert sent.from_name == "Ana María Example (via email-agent)"
    message = build_message(sent, "agent@example.com")
    assert message["From"].addresses[0].display_name == "Ana María Example (via email-agent)"
    assert Record(attributes).status == EmailStatus.SENT


def test_a_taken_over_claim_is_live_again_for_a_third_execution() -> None:
    """B took over A's stale claim and is sending: C, a moment later, must see B's claim as live."""
    ledger = MemoryLedger()
    intent = DeliveryIntent(message_id="<m@x>", revision=1, round=1, ledger="l")
    assert ledger.claim(intent, "A", 0).first
    ledger.age_claims(120)
    b = ledger.claim(intent, "B", 0, take_over_after=90)
    assert b.first and b.taken_over
    c = ledger.claim(intent, "C", 0, take_over_after=90)
    assert not c.first and c.earlier_at, "B's take-over re-stamped the claim: C sees it live"
    assert ledger.claim(intent, "B", 0, take_over_after=90).first, "B asking again is still first"
    assert not ledger.claim(intent, "A", 0).first, "and A, back from the dead, is not"


def test_a_later_round_looks_in_the_sent_mail_before_sending_again() -> None:
    """Round 1's answer was lost and the Sent folder did not show it then; by round 2 it does (an index that
    lagged): round 2 does not send a second copy. One look, no settle: the round waited already."""
    mailer, ledger = RecordingMailer(delivered=True), MemoryLedger()
    svc = services(mailer, ledger)
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    record = Record(attributes)
    intent = record.delivery
    assert intent is not None
    record.delivery = intent.model_copy(update={"round": 2})
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert mailer.sent == [] and Record(attributes).status == EmailStatus.SENT
    assert mailer.asked == [(intent.message_id, False)]


def test_a_claim_answered_too_late_is_not_used_to_send() -> None:
    """Others judge a claim by its age: if the ledger's answer took longer than the grace, sending now could
    overlap a take-over. It backs off to a new round instead (nothing was sent)."""
    mailer, ledger = RecordingMailer(), MemoryLedger()
    times = iter([NOW, NOW + timedelta(seconds=11)])
    svc = services(mailer, ledger, claim_grace_seconds=10, clock=lambda: next(times, NOW + timedelta(seconds=11)))
    attributes = scheduled()
    ScheduleState(services(mailer, ledger)).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    decision = DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert mailer.sent == [] and next_state(decision) == "ScheduleState"
    assert "answered too late" in Record(attributes).get_str("last_error")


def test_a_connection_lost_after_data_is_reported_not_retried() -> None:
    mailer = RecordingMailer(fail_with=AmbiguousSendError("the connection broke after the message was handed over"))
    svc = services(mailer)
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.UNCONFIRMED and len(mailer.sent) == 1


def test_a_definite_transient_failure_backs_off_through_schedule() -> None:
    mailer = RecordingMailer(fail_with=TransientSendError("451 try later"))
    svc = services(mailer)
    attributes = scheduled()
    Record(attributes).email = Record(attributes).email.model_copy(update={"undo_until": NOW})  # sent after Undo's 10 s
    _ready_to_deliver(attributes, svc)
    decision = DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert next_state(decision) == "ScheduleState"
    assert record.status == EmailStatus.SCHEDULED and record.email.scheduled
    assert record.email.send_at == NOW + timedelta(seconds=2)
    assert record.email.undo_until is None, "no 'Sending in 0 s - Undo' through the back-off"
    # The next hand-over is a new round: it is claimed afresh, so it is sent.
    _ready_to_deliver(attributes, svc)
    assert Record(attributes).delivery.round == 2  # type: ignore[union-attr]


def test_the_daily_limit_refuses_before_sending() -> None:
    mailer, ledger = RecordingMailer(), MemoryLedger()
    svc = services(mailer, ledger, daily_send_limit=1)
    ledger.claim(DeliveryIntent(message_id="<other@x>", revision=0, round=1, ledger="l"), "e", 1)
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert mailer.sent == [] and record.status == EmailStatus.FAILED
    assert "daily limit of 1" in record.get_str("last_error")


def test_the_daily_limit_counts_an_email_once_whatever_its_revisions_and_rounds() -> None:
    ledger = MemoryLedger()
    first, edited, other = "<aa11.r1@x>", "<aa11.r3@x>", "<bb22.r1@x>"
    for message_id, round_ in ((first, 1), (first, 2), (edited, 1)):
        claim = ledger.claim(DeliveryIntent(message_id=message_id, revision=0, round=round_, ledger="l"), "e", 1)
        assert (claim.first, claim.refused, claim.emails_today) == (True, False, 1), (message_id, claim)
    refused = ledger.claim(DeliveryIntent(message_id=other, revision=0, round=1, ledger="l"), "e", 1)
    assert refused.refused and refused.emails_today == 1


def test_one_owners_emails_in_any_zones_count_against_one_daily_ledger() -> None:
    """At 11:00 UTC it is the 24th at UTC-12, the 25th in UTC and the 26th at UTC+14: an owner picking a zone
    per email (an API token may) must not get three days' worth of the limit."""
    clock = lambda: datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # noqa: E731
    ledgers = set()
    for zone_name in ("Etc/GMT+12", "UTC", "Pacific/Kiritimati"):
        attributes = scheduled(timezone=zone_name)
        _ready_to_deliver(attributes, services(RecordingMailer(), MemoryLedger(), clock=clock))
        intent = Record(attributes).delivery
        assert intent is not None
        ledgers.add(intent.ledger)
    assert len(ledgers) == 1 and ledgers.pop().endswith("-20261125")


def test_a_crashed_delivery_that_never_claimed_is_a_definite_failure() -> None:
    ledger = MemoryLedger()
    attributes = scheduled()
    _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
    DeliveryCrashedState(services(RecordingMailer(), ledger)).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.FAILED


def test_a_crashed_delivery_that_claimed_is_unconfirmed() -> None:
    ledger = MemoryLedger()
    attributes = scheduled()
    _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
    intent = Record(attributes).delivery
    assert intent is not None
    ledger.claim(intent, "Deliver-1:crashed", 0)
    ledger.age_claims(3600.0)  # an hour of crashing: that hand-over is long over
    real_clock = lambda: NOW  # noqa: E731 - the same clock as the MemoryLedger's
    svc = services(RecordingMailer(), ledger, handover_seconds=90, clock=real_clock)
    DeliveryCrashedState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.UNCONFIRMED


def test_a_delivery_whose_last_attempt_timed_out_moments_ago_is_judged_once_it_must_be_over() -> None:
    """iWF gave up waiting for the last attempt (a time-out), not the attempt itself: its claim is young, so
    instead of "failed" while it may still deliver, a new round looks again once that hand-over is over."""
    ledger = MemoryLedger()
    attributes = scheduled()
    _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
    intent = Record(attributes).delivery
    assert intent is not None
    ledger.claim(intent, "Deliver-1:timed-out", 0)
    ledger.age_claims(20.0)
    real_clock = lambda: NOW  # noqa: E731 - the same clock as the MemoryLedger's
    svc = services(RecordingMailer(delivered=False), ledger, handover_seconds=90, clock=real_clock)
    decision = DeliveryCrashedState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.SCHEDULED and next_state(decision) == "ScheduleState"
    assert record.delivery is not None and record.delivery.not_before is not None
    wait = (record.delivery.not_before - NOW).total_seconds()
    assert wait == 70, wait  # 90 s from a claim 20 s old
    # That copy may still arrive: a cancel meanwhile must not say "not sent", and the wait costs no attempt.
    assert record.maybe_sent and record.send_attempts == 0
    ScheduleState(svc).execute(CTX, None, results((CH_CANCEL, "{}"), timer=False), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).get_str("last_reply") == MAYBE_SENT_CANCELED


def test_a_model_failure_leaves_a_scheduled_email_scheduled_at_its_time() -> None:
    attributes = scheduled(status=EmailStatus.PROCESSING.value)
    later = NOW + timedelta(hours=1)
    Record(attributes).email = Record(attributes).email.model_copy(update={"send_at": later})
    Record(attributes).add_turn(Turn(role="user", text="what time does it go out?"))
    svc = services(RecordingMailer(), agent=FailingAgent(), clock=lambda: NOW, undo_seconds=10)
    decision = ComposeState(svc).execute(CTX, None, results(timer=False), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert next_state(decision) == "ScheduleState"
    assert record.status == EmailStatus.SCHEDULED
    assert record.email.send_at == later and record.email.scheduled
    assert "still goes out" in record.get_str("last_reply")


def test_a_model_failure_on_words_that_came_as_the_email_was_due_holds_it() -> None:
    """Taken up as the timer fired ("change the recipient to carol"), then the model failed: sending at once
    with the old recipient would drop the change nobody could read."""
    attributes = scheduled(status=EmailStatus.PROCESSING.value)
    Record(attributes).add_turn(Turn(role="user", text="stop, change the recipient to carol@example.com"))
    svc = services(RecordingMailer(), agent=FailingAgent(), clock=lambda: NOW + timedelta(seconds=1), undo_seconds=10)
    decision = ComposeState(svc).execute(CTX, None, results(timer=False), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert next_state(decision) == "AgentState" and record.status == EmailStatus.WAITING
    assert not record.email.scheduled and record.email.send_at is None
    assert "put it on hold" in record.get_str("last_reply")


def test_a_model_failure_on_an_unscheduled_email_waits() -> None:
    attributes = scheduled(status=EmailStatus.PROCESSING.value)
    Record(attributes).email = Record(attributes).email.model_copy(update={"scheduled": False})
    svc = services(RecordingMailer(), agent=FailingAgent())
    decision = ComposeState(svc).execute(CTX, None, results(timer=False), attributes, None)  # type: ignore[arg-type]
    assert next_state(decision) == "AgentState" and Record(attributes).status == EmailStatus.WAITING


def test_a_cancel_in_words_with_newer_words_waiting_holds_instead_of_dropping_them() -> None:
    attributes = scheduled(status=EmailStatus.PROCESSING.value, pending=1)
    decision = CancelByRequestState().execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.WAITING and record.email.send_at is None and not record.email.scheduled
    assert next_state(decision) == "AgentState", "the waiting request is answered next"
    attributes["pending"] = 0
    CancelByRequestState().execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.CANCELED


def test_a_request_or_cancel_received_by_schedule_is_taken_up() -> None:
    attributes = scheduled(pending=1)
    request = '{"text": "subject: New", "message_id": "m2"}'
    decision = ScheduleState(services(RecordingMailer())).execute(
        CTX,
        None,
        results((CH_USER_INPUT, request), timer=False),
        attributes,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
    )
    record = Record(attributes)
    assert next_state(decision) == "ComposeState"
    assert [t.text for t in record.conversation] == ["subject: New"] and record.pending == 0
    attributes = scheduled()
    ScheduleState(services(RecordingMailer())).execute(
        CTX, None, results((CH_CANCEL, "{}"), timer=False), attributes, None
    )  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.CANCELED


def test_the_ledger_lets_exactly_one_execution_be_first() -> None:
    ledger = MemoryLedger()
    intent = DeliveryIntent(message_id="<m@x>", revision=1, round=1, ledger="l")
    assert ledger.claim(intent, "exec-a", 0).first
    assert ledger.claim(intent, "exec-a", 0).first, "a retried claim call of the same execution"
    later = ledger.claim(intent, "exec-b", 0)
    assert not later.first and later.earlier_at
    assert ledger.claim(intent.model_copy(update={"round": 2}), "exec-c", 0).first, "a new round"


def test_the_registry_joins_a_concurrent_hand_over() -> None:
    import threading

    registry = DeliveryRegistry()
    gate, calls = threading.Event(), []

    def deliver() -> Delivered:
        calls.append(1)
        gate.wait(5)
        return Delivered("smtp")

    outcomes: list[object] = []
    first = threading.Thread(target=lambda: outcomes.append(registry.run("k", deliver)))
    first.start()
    deadline = time.monotonic() + 10
    while not calls:
        assert time.monotonic() < deadline, "the first hand-over never started"
    second = threading.Thread(target=lambda: outcomes.append(registry.run("k", deliver)))
    second.start()
    # Released only once the second execution waits on the first's hand-over (its Future's condition), so
    # this is the concurrent join, not a later call answered from the registry's memory.
    in_flight = registry._entries["k"]
    while not in_flight._condition._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the second execution never waited on the first"
        time.sleep(0.01)
    gate.set()
    first.join(5)
    second.join(5)
    assert len(calls) == 1 and len(outcomes) == 2 and outcomes[0] == outcomes[1]


def test_an_idle_email_whose_delivery_is_unknown_never_closes_as_nothing_sent() -> None:
    attributes = scheduled(status=EmailStatus.UNCONFIRMED.value, pending=0)
    state = AgentState(services(RecordingMailer(), draft_ttl_seconds=86400))
    decision = state.execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.UNCONFIRMED and "still unknown" in attributes["last_reply"]
    assert "nothing was sent" not in attributes["last_reply"]
    assert decision.next_states[0].state_id == "_SYS_GRACEFUL_COMPLETING_WORKFLOW"
    draft = scheduled(status=EmailStatus.WAITING.value, pending=0)
    state.execute(CTX, None, results(), draft, None)  # type: ignore[arg-type]
    assert Record(draft).status == EmailStatus.CANCELED and "nothing was sent" in draft["last_reply"]


class AnsweringAgent:
    """Answers a question in words and changes nothing ("did it go out?")."""

    def respond(self, *args: Any) -> AgentReply:
        return AgentReply(reply="I can't tell whether it went out; the recipient can.")


def test_once_delivery_is_unknown_a_question_and_the_idle_close_keep_saying_so() -> None:
    """A hand-over with no answer, then a question: the email waits again, still "delivery unknown" (not
    "not scheduled yet"), through a model answer or a model failure, and the idle close never says "nothing
    was sent" and never ends it canceled (the user might start it again, and the recipient get it twice)."""
    mailer = RecordingMailer(fail_with=AmbiguousSendError("the connection broke after the message was handed over"))
    for agent in (AnsweringAgent(), FailingAgent()):
        svc = services(mailer, agent=agent, draft_ttl_seconds=86400)
        attributes = scheduled()
        _ready_to_deliver(attributes, svc)
        DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
        assert Record(attributes).status == EmailStatus.UNCONFIRMED
        record = Record(attributes)
        record.add_turn(Turn(role="user", text="did it go out?"))
        record.status = EmailStatus.PROCESSING  # as accept_request leaves it
        decision = ComposeState(svc).execute(CTX, None, results(timer=False), attributes, None)  # type: ignore[arg-type]
        assert next_state(decision) == "AgentState"
        assert Record(attributes).status == EmailStatus.UNCONFIRMED, type(agent).__name__
        AgentState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
        assert Record(attributes).status == EmailStatus.UNCONFIRMED
        assert "still unknown" in attributes["last_reply"] and "nothing was sent" not in attributes["last_reply"]


def test_a_slow_look_in_the_sent_mail_does_not_age_the_claim_it_sends_under() -> None:
    """Round 2 looks in the Sent folder first (an IMAP server taking 30 s to answer "not there"); the claim is
    made after that look, so it is fresh when the message goes out, not refused as answered too late."""
    now = [NOW]

    class SlowLook(RecordingMailer):
        def was_delivered(self, message_id: str, settle: bool = True) -> bool | None:
            now[0] += timedelta(seconds=30)
            return super().was_delivered(message_id, settle)

    mailer = SlowLook(delivered=False)
    svc = services(mailer, MemoryLedger(), clock=lambda: now[0])
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    record = Record(attributes)
    intent = record.delivery
    assert intent is not None
    record.delivery = intent.model_copy(update={"round": 2})
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert len(mailer.sent) == 1 and Record(attributes).status == EmailStatus.SENT
    assert mailer.asked == [(intent.message_id, False)]


def test_sending_again_after_a_failure_gets_a_fresh_budget_of_attempts() -> None:
    """Five transient failures ended in `failed`; the owner says send it now: a new budget of attempts, not an
    immediate "failed after 6 attempts" on the first 4xx. A question while it backs off keeps the budget."""
    from workflows.model import Control
    from workflows.states.common import fresh_attempts, take_control

    attributes = scheduled(status=EmailStatus.FAILED.value, send_attempts=5)
    record = Record(attributes)
    record.email = record.email.model_copy(update={"scheduled": False, "send_at": None})
    svc = services(RecordingMailer())
    take_control(record, Control(kind="send_now", actor="alice").model_dump_json(), svc)
    assert record.send_attempts == 0 and record.status == EmailStatus.SCHEDULED
    backing_off = record.email.model_copy(update={"scheduled": True})
    assert not fresh_attempts(backing_off, backing_off, "schedule"), "a question about it: same budget"


def test_send_now_while_an_earlier_hand_over_may_be_under_way_still_waits_for_it() -> None:
    """Another process's claim is young (its hand-over may still be going), so the email backs off to a new
    round once that must be over. The owner clicks Send now meanwhile: the next round would claim afresh,
    blind to the old one, so the schedule still waits until then."""
    attributes, svc, _ = _young_claim_elsewhere(attempts=0, delivered=False)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.SCHEDULED and record.delivery is not None and record.delivery.not_before
    assert _timer_after_send_now(attributes, svc) == 85
    # The card and describe say so, rather than a send time that passes with nothing sent.
    after = Record(attributes)
    assert after.delivery is not None and after.email.send_at == after.delivery.not_before
    assert after.email.undo_until is None or after.email.undo_until >= after.email.send_at
    view = build_view(after)
    assert view.will_send and view.send_at == after.delivery.not_before
    assert "at the earliest: an earlier attempt to send it may still be under way" in view.last_reply


def _young_claim_elsewhere(attempts: int, delivered: bool | None) -> tuple[Attributes, Services, DeliveryIntent]:
    """An email whose hand-over another process claimed 5 s ago (it may still be sending)."""
    real_clock = lambda: NOW  # noqa: E731 - the same clock as the MemoryLedger's
    ledger = MemoryLedger()
    attributes = scheduled(send_attempts=attempts)
    _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
    intent = Record(attributes).delivery
    assert intent is not None
    ledger.claim(intent, "Deliver-1:another-process", 0)
    ledger.age_claims(5.0)
    svc = services(RecordingMailer(delivered=delivered), ledger, handover_seconds=90, clock=real_clock)
    return attributes, svc, intent


def _timer_after_send_now(attributes: Attributes, svc: Services) -> int:
    from iwf.command_request import TimerCommand

    from workflows.model import Control
    from workflows.states.common import take_control

    take_control(Record(attributes), Control(kind="send_now", actor="alice").model_dump_json(), svc)
    request = ScheduleState(svc).wait_until(CTX, None, attributes, None)  # type: ignore[arg-type]
    [timer] = [c for c in request.commands if isinstance(c, TimerCommand)]
    return timer.duration_seconds


def test_waiting_for_an_earlier_hand_over_uses_no_attempt_even_with_the_budget_spent() -> None:
    """Four 451s spent the budget of five; the fifth round finds another process's young claim. That is no
    failure of this email's: it waits for that hand-over (not "failed after 5 attempts", which would let a
    Send now go out at once, beside a copy that may still arrive)."""
    attributes, svc, _ = _young_claim_elsewhere(attempts=4, delivered=False)
    svc = replace(svc, send_max_attempts=5)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.SCHEDULED and record.send_attempts == 4
    assert _timer_after_send_now(attributes, svc) == 85


def test_an_earlier_hand_over_that_cannot_be_asked_about_holds_back_send_again() -> None:
    """Young claim elsewhere, and no Sent folder to ask: "delivery unknown", and a Send again waits until
    that hand-over must be over."""
    attributes, svc, _ = _young_claim_elsewhere(attempts=0, delivered=None)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.UNCONFIRMED
    assert _timer_after_send_now(attributes, svc) == 85


def test_a_resend_that_fails_after_an_unknown_delivery_stays_unknown() -> None:
    mailer = RecordingMailer(fail_with=AmbiguousSendError("the connection broke after the message was handed over"))
    svc = services(mailer)
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.UNCONFIRMED
    refusing = services(RecordingMailer(fail_with=PermanentSendError("554 rejected")))
    Record(attributes).email = Record(attributes).email.model_copy(update={"scheduled": True, "send_at": NOW})
    _ready_to_deliver(attributes, refusing)
    DeliverState(refusing).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    record = Record(attributes)
    assert record.status == EmailStatus.UNCONFIRMED, "the first copy may have arrived: never just 'failed'"
    assert "earlier copy may have arrived" in record.get_str("last_reply")


class RecordingCommunication:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    def publish_to_internal_channel(self, channel: str, value: Any) -> None:
        self.published.append((channel, value))


def test_inputs_share_one_queue_and_a_legacy_control_is_never_lost() -> None:
    """A control is queued with the requests now; a workflow started before that may still hold one in the
    old control channel: taken with a request in one wait, the request goes first and the control goes back
    to its channel (still counted as pending), not dropped."""
    from workflows.model import Control, UserRequest
    from workflows.record import CH_CONTROL
    from workflows.states.common import is_control, next_input

    request = UserRequest(text="subject: Hi", message_id="m1").model_dump_json()
    control = Control(kind="send_now", actor="alice").model_dump_json()
    assert is_control(control) and not is_control(request) and not is_control("not json")
    communication = RecordingCommunication()
    taken = next_input(results((CH_USER_INPUT, control), timer=False), communication)  # type: ignore[arg-type]
    assert taken == control and communication.published == []
    taken = next_input(results((CH_USER_INPUT, request), (CH_CONTROL, control), timer=False), communication)  # type: ignore[arg-type]
    assert taken == request and communication.published == [(CH_CONTROL, control)]


def test_every_state_that_can_schedule_loads_the_earlier_hand_over() -> None:
    """`go(..., ScheduleState)` moves a new time past an earlier hand-over that may still be under way; a state
    that does not load DA_DELIVERY would promise a time that passes unsent (seen: "send it again" in words)."""
    from workflows.record import DA_DELIVERY

    svc = services(RecordingMailer())
    for state in (
        AgentState(svc),
        ComposeState(svc),
        ComposeCrashedState(svc),
        CancelByRequestState(),
        ScheduleState(svc),
        DeliverState(svc),
        DeliveryCrashedState(svc),
    ):
        policy = state.get_state_options().execute_api_data_attributes_loading_policy
        assert policy is not None and DA_DELIVERY in (policy.partial_loading_keys or []), type(state).__name__


def test_a_card_that_cannot_show_the_end_does_not_keep_a_delivery_unknown_email_open() -> None:
    """The idle close of a "delivery unknown" email (a status that is not final) while Slack is down: the card
    step gives up, and the email must end all the same, not wait forever taking requests nobody reads."""
    attributes = Attributes({"status": EmailStatus.UNCONFIRMED.value})
    ended = NotifyGaveUpState().execute(CTX, "expired", results(), attributes, None)  # type: ignore[arg-type]
    assert ended == StateDecision.graceful_complete_workflow("expired")
    attributes = Attributes({"status": EmailStatus.SCHEDULED.value})
    carried_on = NotifyGaveUpState().execute(CTX, "", results(), attributes, None)  # type: ignore[arg-type]
    assert carried_on == StateDecision.dead_end, "a card that failed mid-email changes nothing about the email"


class DroppingLedgerEngine:
    """An iWF client whose ledger is running but drops every claim (iWF answers "not exists" for an update
    whose workflow task failed), so opening it says "already started"."""

    def __init__(self) -> None:
        self.claims = 0
        self.opens = 0

    def invoke_rpc(self, *args: Any) -> Any:
        self.claims += 1
        raise WorkflowNotExistsError(400, ErrorResponse(detail="workflow not exists"))

    def start_workflow(self, *args: Any) -> Any:
        self.opens += 1
        raise WorkflowAlreadyStartedError(400, ErrorResponse(detail="already started"))


def test_a_ledger_that_keeps_dropping_claims_is_given_up_on_after_the_outage_bound_not_spun_on() -> None:
    engine = DroppingLedgerEngine()
    ledger = IwfDeliveryLedger(engine, outage_seconds=0.5)  # type: ignore[arg-type]
    intent = DeliveryIntent(message_id="<m@x>", revision=1, round=1, ledger="ledger-x")
    with pytest.raises(WorkflowNotExistsError):
        ledger.claim(intent, "Deliver-1:e", 0)
    assert 2 <= engine.claims <= 6 and engine.opens == engine.claims, (engine.claims, engine.opens)


# --- a sibling execution in another process (iWF's local activity given up, the step run again elsewhere) -----


class SettlingElsewhere(MemoryLedger):
    """Another process claimed the hand-over and is still sending; it settles its claim (as `outcome`) while
    this execution waits, on its second look."""

    def __init__(self, outcome: str) -> None:
        super().__init__()
        self.outcome, self.looks = outcome, 0
        self.intent: DeliveryIntent | None = None

    def claim(
        self, intent: DeliveryIntent, execution: str, daily_limit: int, take_over_after: float = 0
    ) -> ClaimResult:
        self.looks += 1
        if self.looks == 2 and self.intent is not None:
            partly = ("b@example.com was refused (550)", ["a@example.com"]) if self.outcome == "partly" else ("", [])
            self.settle(self.intent, "Deliver-1:another-process", self.outcome, *partly)
        return super().claim(intent, execution, daily_limit, take_over_after)


def _sibling(
    outcome: str, delivered: bool | None = None, wait: float = 5
) -> tuple[Attributes, SettlingElsewhere, RecordingMailer]:
    ledger = SettlingElsewhere(outcome)
    attributes = scheduled()
    _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
    intent = Record(attributes).delivery
    assert intent is not None
    MemoryLedger.claim(ledger, intent, "Deliver-1:another-process", 0)
    ledger.intent = intent
    mailer = RecordingMailer(delivered=delivered)
    svc = services(mailer, ledger, handover_seconds=90, settle_wait_seconds=wait)
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    return attributes, ledger, mailer


def test_a_sibling_that_finds_a_young_claim_waits_for_its_word_and_does_not_send_again() -> None:
    """No Sent folder (delivered=None): before, the sibling said "delivery unknown" of an email the other
    process was delivering that very moment."""
    attributes, ledger, mailer = _sibling("delivered")
    record = Record(attributes)
    assert record.status == EmailStatus.SENT and mailer.sent == [], record.last_reply
    assert ledger.looks >= 2


def test_a_sibling_told_the_other_attempt_was_refused_sends_itself_at_once() -> None:
    """A definite failure over there (a 451, nothing taken): no reason to wait out the claim or say "unknown"."""
    attributes, ledger, mailer = _sibling("not_sent")
    assert Record(attributes).status == EmailStatus.SENT and len(mailer.sent) == 1
    [claim] = json.loads(ledger.attributes["claims"]).values()
    assert claim["execution"] != "Deliver-1:another-process", "taken over, so a third execution sees it live"


def _deliver_once(mailer: RecordingMailer, ledger: MemoryLedger) -> DeliveryIntent:
    """A scheduled email through Deliver, this process alone: the intent it handed over."""
    svc = services(mailer, ledger)
    attributes = scheduled()
    _ready_to_deliver(attributes, svc)
    intent = Record(attributes).delivery
    assert intent is not None
    DeliverState(svc).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    return intent


def test_a_hand_over_that_took_long_settles_its_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handover, "SETTLE_AFTER_SECONDS", 0.0)
    mailer, ledger = RecordingMailer(), MemoryLedger()
    intent = _deliver_once(mailer, ledger)
    assert len(mailer.sent) == 1 and ledger.outcome_of(intent) == "delivered"


def test_a_short_hand_over_costs_the_ledger_no_settlement() -> None:
    mailer, ledger = RecordingMailer(), MemoryLedger()
    intent = _deliver_once(mailer, ledger)
    assert len(mailer.sent) == 1 and ledger.outcome_of(intent) == ""


def test_a_word_that_comes_while_the_sibling_asks_the_sent_folder_is_heard_by_its_take_over_claim() -> None:
    """No wait left (or none configured): the sibling asks the Sent folder (not there yet), and the other
    process settles "delivered" meanwhile. Its take-over claim answers with that word: sent, not a new round
    that could send a second copy."""
    attributes, ledger, mailer = _sibling("delivered", delivered=False, wait=0)
    assert Record(attributes).status == EmailStatus.SENT and mailer.sent == []
    assert ledger.looks == 2


def test_a_new_round_hears_that_an_earlier_round_of_the_same_message_went_out() -> None:
    ledger = MemoryLedger()
    attributes = scheduled()
    _ready_to_deliver(attributes, services(RecordingMailer(), ledger))
    first = Record(attributes).delivery
    assert first is not None
    ledger.claim(first, "Deliver-1:another-process", 0)
    ledger.settle(first, "Deliver-1:another-process", "delivered")
    Record(attributes).delivery = first.model_copy(update={"round": 2})  # the sibling backed off to a new round
    mailer = RecordingMailer(delivered=False)  # the Sent folder lags behind
    DeliverState(services(mailer, ledger)).execute(CTX, None, results(), attributes, None)  # type: ignore[arg-type]
    assert Record(attributes).status == EmailStatus.SENT and mailer.sent == []


def test_a_sibling_told_the_other_attempt_reached_only_some_says_who_did_not_get_it() -> None:
    attributes, _, mailer = _sibling("partly")
    record = Record(attributes)
    assert record.status == EmailStatus.SENT and mailer.sent == []
    reply = record.get_str("last_reply")
    assert "b@example.com was refused (550)" in reply and "they did not get it" in reply, reply


def test_a_lost_answer_the_sent_folder_did_not_show_is_not_settled_as_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Not found" right after a lost answer is no proof (the folder may lag): a sibling told "not sent" would
    take over and send at once."""
    monkeypatch.setattr(handover, "SETTLE_AFTER_SECONDS", 0.0)
    mailer = RecordingMailer(fail_with=AmbiguousSendError("no answer to DATA"), delivered=False)
    ledger = MemoryLedger()
    intent = _deliver_once(mailer, ledger)
    assert len(mailer.sent) == 1 and ledger.outcome_of(intent) == ""
