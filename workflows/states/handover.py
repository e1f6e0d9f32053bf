"""The hand-over protocol the Deliver step runs: claim it in the owner's delivery ledger, then give the email
to the mail server once; an execution that finds another's claim asks the mail account instead of sending.

Another process's claim that is still young is usually a sibling execution of this very step: iWF gives a
local activity up after 7 s and runs the step again as a normal activity, which the load balancer may send to
another replica while the first is still talking to the mail server. So a hand-over that took that long
records how it ended in the ledger (settle), and the sibling waits a while for that word before it falls back
on the mail account, or on "delivery unknown".

Plain functions over `Services` (no iWF state here): what comes back is an `Outcome`, which
`workflows/states/sending.py` applies to the email.
"""

import logging
import time
from datetime import UTC, datetime

from workflows.deliveries import Delivered, Outcome
from workflows.ledger import OUTCOME_DELIVERED, OUTCOME_NOT_SENT, OUTCOME_PARTLY, ClaimResult
from workflows.mailer import (
    AmbiguousSendError,
    OutgoingEmail,
    PartlyDeliveredError,
    PermanentSendError,
    TransientSendError,
)
from workflows.model import DeliveryIntent
from workflows.states.common import Services

log = logging.getLogger(__name__)

CONFIRMED_AFTERWARDS = "(The mail server's answer got lost; I checked the account's sent mail and it is there.)"
# A hand-over this long may have a sibling execution waiting on it (iWF abandons a local activity 7 s after it
# began, time in the worker's queue included): it settles its claim. Shorter ones, nearly all, cost the ledger
# nothing more.
SETTLE_AFTER_SECONDS = 3.0


class StillUnderWay(TransientSendError):
    """Another process's hand-over of this email may still be going: not a failed attempt of this one (it
    uses no attempt of the budget), and no new round before `retry_after`, whatever the owner asks."""


def hand_over(
    services: Services, intent: DeliveryIntent, outgoing: OutgoingEmail, execution: str, earlier_id: str = ""
) -> Outcome:
    """Claim the hand-over in the ledger, then give the email to the mail server, once per process (the
    registry runs this): what comes back is what happened, as far as it can be known. `earlier_id` is the
    Message-ID of a copy that may have gone out in an earlier round (an edit since gives this round a new one)."""
    began = time.monotonic()
    if intent.round > 1 and services.mailer.was_delivered(intent.message_id, settle=False) is True:
        # An earlier round whose answer was lost arrived after all (a search index may lag behind). Asked
        # before the claim: the claim's age is what others judge it by, and this look may take a while.
        return Delivered("delivered by an earlier attempt (confirmed by the mail account)", CONFIRMED_AFTERWARDS)
    if earlier_id and earlier_id != intent.message_id and services.mailer.was_delivered(earlier_id, settle=False):
        # The words changed while an earlier hand-over was still under way (or its outcome unknown), and that
        # copy arrived: sending these words too would be a second, different email.
        return Delivered(
            "an earlier version was delivered (confirmed by the mail account)", earlier_message_id=earlier_id
        )
    asked = services.clock()
    claim = services.ledger.claim(intent, execution, services.daily_send_limit)
    if claim.refused:
        return PermanentSendError(f"the daily limit of {services.daily_send_limit} emails per person is reached")
    if not claim.first:  # another process's hand-over (this process's own would be in its registry)
        claim = wait_for_its_word(services, intent, execution, claim)
        if (said := its_word(claim)) is not None:
            return said
        if claim.earlier_outcome != OUTCOME_NOT_SENT:
            young = services.handover_seconds - claim_age_seconds(services, claim.earlier_at)
            earlier = after_an_earlier_attempt(services, intent.message_id)
            if isinstance(earlier, AmbiguousSendError) and young > 0:
                # Cannot be asked, and that hand-over may still be going: "Send again" waits until it must be over.
                return AmbiguousSendError(earlier.reason, hold_seconds=young)
            if earlier is not None:
                return earlier
        # Not sent, as that execution said, or not in the account's sent mail, which means "not sent" once that
        # hand-over is over (sent, or timed out): the ledger agrees under its lock and re-stamps the claim as
        # this execution's, so a later execution sees a live claim again.
        asked = services.clock()
        claim = services.ledger.claim(
            intent, execution, services.daily_send_limit, take_over_after=services.handover_seconds
        )
        if (said := its_word(claim)) is not None:  # settled while this execution was asking the Sent folder
            return said
        if not claim.first:
            # It may still be under way: look again, in a new round, once it must be over (a durable timer
            # through Schedule, where the user can still cancel). The new round looks before sending (and its
            # claim answers with this one's word, should it come meanwhile).
            wait = services.handover_seconds - claim_age_seconds(services, claim.earlier_at)
            return StillUnderWay(
                "an earlier attempt to send it was interrupted moments ago, and it is not in the account's "
                "sent mail yet",
                retry_after=max(1.0, wait),
            )
    if (services.clock() - asked).total_seconds() > services.claim_grace_seconds:
        # Others judge a claim by its age: one answered this late may already look over to them.
        return TransientSendError("the delivery ledger answered too late to send safely now")
    try:
        outcome: Outcome = Delivered(services.mailer.send(outgoing))
    except (PermanentSendError, TransientSendError, PartlyDeliveredError) as answered:  # the server's own word
        outcome = answered
    except AmbiguousSendError as lost:  # this hand-over is over, its answer lost: the account may tell
        return after_a_lost_answer(services, intent, lost)  # never settled: "not found" is no proof
    if time.monotonic() - began >= SETTLE_AFTER_SECONDS:
        settle(services, intent, execution, outcome)
    return outcome


def after_a_lost_answer(services: Services, intent: DeliveryIntent, lost: AmbiguousSendError) -> Outcome:
    checked = services.mailer.was_delivered(intent.message_id)
    if checked is None:
        return lost
    if checked:
        return Delivered("confirmed by the mail account afterwards", CONFIRMED_AFTERWARDS)
    return TransientSendError(f"{lost.reason}, and it did not arrive")


def settle(services: Services, intent: DeliveryIntent, execution: str, outcome: Outcome) -> None:
    """Tell a sibling execution that may be waiting (see the module docstring) how the mail server answered.
    Failing to is only logged: the sibling then does what it would without the word."""
    reason, delivered_to = "", list[str]()
    if isinstance(outcome, Delivered):
        word = OUTCOME_DELIVERED
    elif isinstance(outcome, PartlyDeliveredError):  # sent, to some: sending again would repeat it to them
        word, reason, delivered_to = OUTCOME_PARTLY, str(outcome), outcome.delivered_to
    else:
        word = OUTCOME_NOT_SENT
    try:
        services.ledger.settle(intent, execution, word, reason, delivered_to)
    except Exception as error:  # the engine failing here must not turn a sent email into an error
        log.warning("could not settle the hand-over of %s in its ledger: %s", intent.message_id, error)


def its_word(claim: ClaimResult) -> Outcome | None:
    """What another execution settled this hand-over (or an earlier round of it) as, if it went out."""
    if claim.earlier_outcome == OUTCOME_DELIVERED:
        return Delivered("delivered by another process's attempt (recorded in the delivery ledger)")
    if claim.earlier_outcome == OUTCOME_PARTLY:
        return PartlyDeliveredError(claim.earlier_reason, claim.earlier_delivered_to)
    return None


def wait_for_its_word(services: Services, intent: DeliveryIntent, execution: str, claim: ClaimResult) -> ClaimResult:
    """Another process's young claim: wait (a while, within this step's time-out) for that execution to settle
    it. Asked again with this execution's own token, the claim only answers, it changes nothing."""
    young = services.handover_seconds - claim_age_seconds(services, claim.earlier_at)
    deadline = time.monotonic() + min(young, services.settle_wait_seconds)
    pause = 0.25
    while not claim.earlier_outcome and time.monotonic() + pause < deadline:
        time.sleep(pause)
        pause = min(pause * 1.5, 4.0)
        claim = services.ledger.claim(intent, execution, services.daily_send_limit)
    return claim


def claim_age_seconds(services: Services, earlier_at: str) -> float:
    try:
        claimed = datetime.fromisoformat(earlier_at)
    except ValueError:
        return 0.0  # unknown: as young as can be
    return (services.clock() - (claimed if claimed.tzinfo else claimed.replace(tzinfo=UTC))).total_seconds()


def after_an_earlier_attempt(services: Services, message_id_: str) -> Outcome | None:
    """An earlier execution claimed this hand-over and its outcome is not known here: ask the mail account.
    Found is sent; None is "not there" (which proves nothing while that execution may still be sending)."""
    checked = services.mailer.was_delivered(message_id_)
    if checked is True:
        return Delivered("delivered by an earlier attempt (confirmed by the mail account)", CONFIRMED_AFTERWARDS)
    if checked is False:
        return None
    return AmbiguousSendError("an earlier attempt to send it was interrupted, and the mail server cannot be asked")
