"""The delivery ledger: one small workflow per owner and day, where every hand-over to the mail server
is claimed before it happens.

Why a workflow of its own: an iWF state keeps its data-attribute writes only from a *successful*
execution, so a delivery step that crashed after the mail server took the message leaves no trace in
the email's own record, and its re-execution cannot tell "never tried" from "maybe delivered". A claim
in the ledger is made by the delivering execution itself, through a locked RPC (a Temporal update:
durable once answered), before any byte goes to the mail server. A later execution that finds an earlier
execution's claim knows the email may already be out. The same claims count the owner's emails per day
(each email once, whatever its revisions and rounds).
"""

# No `from __future__ import annotations` here: the iWF SDK inspects RPC parameter annotations at runtime.

import hashlib
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from iwf.client import Client
from iwf.command_request import CommandRequest, TimerCommand
from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.errors import (
    ServerSideError,
    WorkflowAlreadyStartedError,
    WorkflowNotExistsError,
    WorkflowRPCAcquiringLockFailure,
    WorkflowRPCExecutionError,
)
from iwf.iwf_api.models import (
    ExecutingStateIdMode,
    IDReusePolicy,
    PersistenceLoadingPolicy,
    PersistenceLoadingType,
    WorkflowConfig,
)
from iwf.persistence import Persistence
from iwf.persistence_schema import PersistenceField, PersistenceSchema
from iwf.rpc import rpc
from iwf.state_decision import StateDecision
from iwf.state_schema import StateSchema
from iwf.workflow import ObjectWorkflow
from iwf.workflow_context import WorkflowContext
from iwf.workflow_options import WorkflowOptions
from iwf.workflow_state import WorkflowState
from pydantic import BaseModel, Field

from workflows.model import DeliveryIntent, utcnow
from workflows.record import email_of
from workflows.sendtime import seconds_until

DA_CLAIMS = "claims"  # JSON {"<message_id>#<round>": {"execution": str, "at": iso, "outcome"?: str}}
# What the claiming execution itself found, when it may have had company (see settle): the email went out, or
# it definitely did not (the mail server refused it, or nothing reached it).
OUTCOME_DELIVERED = "delivered"
OUTCOME_PARTLY = "partly"  # delivered to some recipients, refused for the others
OUTCOME_NOT_SENT = "not_sent"
_WENT_OUT = (OUTCOME_DELIVERED, OUTCOME_PARTLY)
SHARED_SHARDS = 32  # emails without an owner spread over this many ledgers per day
LEDGER_DAYS = 3  # a ledger outlives its day by enough for every late retry of a delivery step

_LOCKED_CLAIMS = PersistenceLoadingPolicy(
    persistence_loading_type=PersistenceLoadingType.LOAD_PARTIAL_WITH_EXCLUSIVE_LOCK,
    partial_loading_keys=[DA_CLAIMS],
    locking_keys=[DA_CLAIMS],
)


class ClaimRequest(BaseModel):
    message_id: str
    round: int
    execution: str = Field(description="Unique per delivery-step execution; a retried claim call reuses it.")
    daily_limit: int = Field(0, description="Emails this ledger may take per day; 0: no limit.")
    take_over_after_seconds: float = Field(
        0,
        description="An earlier execution's claim at least this old (its hand-over is over, done or timed out) is "
        "replaced by this one, stamped now, so that a third execution sees a live claim again; 0: never.",
    )


class ClaimResult(BaseModel):
    first: bool = Field(description="No earlier execution claimed this hand-over: nothing can have gone out.")
    refused: bool = Field(False, description="The daily limit is reached: do not send.")
    emails_today: int = 0
    earlier_at: str = ""
    earlier_outcome: str = Field(
        "",
        description="What the earlier execution settled its hand-over as (delivered, partly, not_sent), or any "
        "earlier round of the same Message-ID as (delivered, partly); empty: unknown.",
    )
    earlier_reason: str = Field("", description="Partly: who did not get it, and why.")
    earlier_delivered_to: list[str] = Field(default_factory=list, description="Partly: who got it.")
    taken_over: bool = Field(False, description="First by replacing an earlier execution's claim that was over.")


class SettleRequest(BaseModel):
    message_id: str
    round: int
    execution: str = Field(description="The execution that claimed the hand-over: only it can settle it.")
    outcome: str = Field(pattern=f"^({OUTCOME_DELIVERED}|{OUTCOME_PARTLY}|{OUTCOME_NOT_SENT})$")
    reason: str = Field("", max_length=2000)
    delivered_to: list[str] = Field(default_factory=list, max_length=100)

    @classmethod
    def of(
        cls, intent: DeliveryIntent, execution: str, outcome: str, reason: str, delivered_to: list[str] | None
    ) -> "SettleRequest":
        return cls(
            message_id=intent.message_id,
            round=intent.round,
            execution=execution,
            outcome=outcome,
            reason=reason,
            delivered_to=delivered_to or [],
        )


def ledger_scope(worker_url: str) -> str:
    """Ledgers belong to one deployment: iWF calls a workflow's worker at the URL it was started with, so
    apps that do not share a worker address (say, two test apps on one engine) must not share ledgers."""
    return hashlib.sha256(worker_url.encode()).hexdigest()[:8]


LEDGER_PREFIX = "ledger-"  # a reserved id prefix: no email may take a ledger's id (and so block its claims)


def ledger_id(scope: str, owner: str | None, email_id: str, day: str) -> str:
    if owner:
        who = hashlib.sha256(owner.encode()).hexdigest()[:20]
    else:
        who = f"shared{int(hashlib.sha256(email_id.encode()).hexdigest(), 16) % SHARED_SHARDS}"
    return f"{LEDGER_PREFIX}{scope}-{who}-{day}"


def ledger_day(now: datetime) -> str:
    """The day a ledger counts, in UTC for everyone: counted in each email's own zone, an owner could spread
    emails over three calendar days at one instant (an API token may pick the zone per email) and multiply
    the daily limit by three."""
    return now.astimezone(UTC).strftime("%Y%m%d")


class LedgerOpenState(WorkflowState[str]):
    """Keeps the ledger open (answering claims) until it expires; input: the expiry instant (ISO)."""

    def wait_until(
        self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        expires = datetime.fromisoformat(input)
        return CommandRequest.for_all_command_completed(TimerCommand.by_seconds(seconds_until(expires, utcnow())))

    def execute(
        self,
        ctx: WorkflowContext,
        input: str,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        return StateDecision.graceful_complete_workflow("expired")


class DeliveryLedgerWorkflow(ObjectWorkflow):
    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock  # when claims are stamped and aged (a test's own clock; the real time in the app)

    def get_workflow_states(self) -> StateSchema:
        return StateSchema.with_starting_state(LedgerOpenState())

    def get_persistence_schema(self) -> PersistenceSchema:
        return PersistenceSchema.create(PersistenceField.data_attribute_def(DA_CLAIMS, str))

    @rpc(timeout_seconds=10, data_attribute_loading_policy=_LOCKED_CLAIMS)
    def claim(self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication) -> str:
        """Atomic under the lock: of two executions claiming the same hand-over, exactly one is first."""
        request = ClaimRequest.model_validate_json(input)
        raw = persistence.get_data_attribute(DA_CLAIMS)
        claims: dict[str, dict[str, Any]] = json.loads(raw) if isinstance(raw, str) and raw else {}
        key = f"{request.message_id}#{request.round}"
        emails = {email_of(k.rpartition("#")[0]) for k in claims}
        earlier = claims.get(key)
        went_out = [c for k, c in claims.items() if k.rpartition("#")[0] == request.message_id and _went_out(c)]
        if went_out and (earlier is None or earlier["execution"] != request.execution):
            # This Message-ID went out, as the execution that sent it said (this round, or an earlier one that
            # this execution's round followed while the word was on its way): never again, never taken over.
            return ClaimResult(first=False, emails_today=len(emails), **_word_of(went_out[0])).model_dump_json()
        if earlier is not None and earlier["execution"] != request.execution and request.take_over_after_seconds:
            age = (self._clock() - datetime.fromisoformat(earlier["at"])).total_seconds()
            # Over: old enough that it must have ended, or ended without sending, as its execution recorded.
            if age >= request.take_over_after_seconds or earlier.get("outcome") == OUTCOME_NOT_SENT:
                claims[key] = {"execution": request.execution, "at": self._clock().isoformat()}
                persistence.set_data_attribute(DA_CLAIMS, json.dumps(claims))
                return ClaimResult(first=True, taken_over=True, emails_today=len(emails)).model_dump_json()
        if earlier is not None:
            first = earlier["execution"] == request.execution
            return ClaimResult(first=first, emails_today=len(emails), **_word_of(earlier)).model_dump_json()
        this_email = email_of(request.message_id)
        if request.daily_limit and this_email not in emails and len(emails) >= request.daily_limit:
            return ClaimResult(first=True, refused=True, emails_today=len(emails)).model_dump_json()
        claims[key] = {"execution": request.execution, "at": self._clock().isoformat()}
        persistence.set_data_attribute(DA_CLAIMS, json.dumps(claims))
        emails.add(this_email)
        return ClaimResult(first=True, emails_today=len(emails)).model_dump_json()

    @rpc(timeout_seconds=10, data_attribute_loading_policy=_LOCKED_CLAIMS)
    def settle(self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication) -> str:
        """The claiming execution records how its hand-over ended, for an execution of the same step in another
        process that found its claim and waits to know (see workflows/states/handover.py)."""
        request = SettleRequest.model_validate_json(input)
        raw = persistence.get_data_attribute(DA_CLAIMS)
        claims: dict[str, dict[str, Any]] = json.loads(raw) if isinstance(raw, str) and raw else {}
        claim = claims.get(f"{request.message_id}#{request.round}")
        if claim is None or claim["execution"] != request.execution:
            return "not yours"  # taken over meanwhile: the newer execution's word counts
        claim["outcome"] = request.outcome
        if request.outcome == OUTCOME_PARTLY:
            claim |= {"reason": request.reason, "delivered_to": request.delivered_to}
        persistence.set_data_attribute(DA_CLAIMS, json.dumps(claims))
        return "settled"


def _pause_with_jitter(delay: float) -> float:
    """Another claim holds the ledger's lock (a locked RPC is refused, not queued): pause, return the next delay."""
    time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
    return min(delay * 2, 0.5)


def _went_out(claim: dict[str, Any]) -> bool:
    return claim.get("outcome") in _WENT_OUT


def _word_of(claim: dict[str, Any]) -> dict[str, Any]:
    return {
        "earlier_at": claim["at"],
        "earlier_outcome": claim.get("outcome", ""),
        "earlier_reason": claim.get("reason", ""),
        "earlier_delivered_to": claim.get("delivered_to", []),
    }


class DeliveryLedger(Protocol):
    """The port the delivery step uses; implemented on the iWF client, faked in unit tests."""

    def claim(
        self, intent: DeliveryIntent, execution: str, daily_limit: int, take_over_after: float = 0
    ) -> ClaimResult: ...

    def settle(
        self,
        intent: DeliveryIntent,
        execution: str,
        outcome: str,
        reason: str = "",
        delivered_to: list[str] | None = None,
    ) -> None: ...


class IwfDeliveryLedger:
    """Claims through the iWF server. Runs in a worker thread (the SDK is synchronous)."""

    def __init__(
        self, client: Client, lock_retries: int = 40, local_activities: bool = True, outage_seconds: float = 30.0
    ):
        self._client = client
        self._lock_retries = lock_retries
        self._outage_seconds = outage_seconds
        self._config = WorkflowConfig(
            optimize_activity=local_activities, executing_state_id_mode=ExecutingStateIdMode.DISABLED
        )

    def claim(
        self, intent: DeliveryIntent, execution: str, daily_limit: int, take_over_after: float = 0
    ) -> ClaimResult:
        """Claims are idempotent per execution token, so a claim whose answer was lost (the iWF server died
        with it in flight) is asked again with the same token, by the same living execution: had it been
        recorded, the answer is still "first", and the email is not left "unconfirmed" for nothing."""
        payload = ClaimRequest(
            message_id=intent.message_id,
            round=intent.round,
            execution=execution,
            daily_limit=daily_limit,
            take_over_after_seconds=take_over_after,
        ).model_dump_json()
        delay, lock_failures = 0.02, 0
        outage_until = time.monotonic() + self._outage_seconds
        while True:
            try:
                raw = self._client.invoke_rpc(intent.ledger, DeliveryLedgerWorkflow.claim, payload, str)
                return ClaimResult.model_validate_json(str(raw))
            except WorkflowNotExistsError:
                # Not there (open it), or there but the update was dropped (its task failed; iWF says "not
                # exists" for both): either way no tight loop, and no longer than an outage is waited out.
                if self._opened(intent.ledger):
                    continue
                if time.monotonic() > outage_until:
                    raise
                time.sleep(0.2)
            except WorkflowRPCAcquiringLockFailure:
                lock_failures += 1
                if lock_failures > self._lock_retries:
                    raise
                delay = _pause_with_jitter(delay)
            except (httpx.HTTPError, WorkflowRPCExecutionError, ServerSideError, RuntimeError, ValueError):
                # The engine, not the claim, failed (restarting, unreachable, an update it dropped, a proxy's
                # page that is not iWF's JSON).
                if time.monotonic() > outage_until:
                    raise
                time.sleep(1.0)

    def settle(
        self,
        intent: DeliveryIntent,
        execution: str,
        outcome: str,
        reason: str = "",
        delivered_to: list[str] | None = None,
    ) -> None:
        """Retried only while the ledger is busy with another claim: the caller logs any other failure (a
        waiting execution then does what it did before settlements: asks the Sent folder, or says "delivery
        unknown")."""
        payload = SettleRequest.of(intent, execution, outcome, reason, delivered_to).model_dump_json()
        delay = 0.02
        for attempt in range(self._lock_retries + 1):
            try:
                self._client.invoke_rpc(intent.ledger, DeliveryLedgerWorkflow.settle, payload, str)
                return
            except WorkflowRPCAcquiringLockFailure:
                if attempt == self._lock_retries:
                    raise
                delay = _pause_with_jitter(delay)

    def _opened(self, ledger: str) -> bool:
        """Whether this call started the ledger: not if it was running already, or the engine failed."""
        expires = utcnow() + timedelta(days=LEDGER_DAYS)
        try:
            self._client.start_workflow(
                DeliveryLedgerWorkflow,
                ledger,
                0,
                expires.isoformat(),
                WorkflowOptions(
                    workflow_id_reuse_policy=IDReusePolicy.ALLOW_IF_NO_RUNNING, workflow_config_override=self._config
                ),
            )
        except WorkflowAlreadyStartedError:
            return False  # another execution opened it first, or it is running and dropped the update
        except (httpx.HTTPError, ServerSideError, RuntimeError, ValueError):
            return False  # the engine failed: the caller's outage bound decides
        return True
