"""A bare iWF workflow of an email's shape that does no work, and a driver for it: the floor that
bench/workflow_floor.py measures the app's emails against.

A state waiting on an internal channel, a locked RPC that publishes to it (what `send_request` does), a
no-op state (the model's turn), a timer state that marks itself `scheduled` as it starts waiting (the
schedule), a no-op state that completes the workflow (the delivery). Same WorkflowConfig as the app's
(local activities on, iWF's executing-state search attribute off).
"""

# No `from __future__ import annotations`: the iWF SDK reads RPC and state annotations at runtime.

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from iwf.client import Client
from iwf.client_options import ClientOptions
from iwf.command_request import CommandRequest, InternalChannelCommand, TimerCommand
from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.communication_schema import CommunicationMethod, CommunicationSchema
from iwf.errors import WorkflowRPCAcquiringLockFailure
from iwf.iwf_api.models import (
    ExecutingStateIdMode,
    PersistenceLoadingPolicy,
    PersistenceLoadingType,
    WorkflowConfig,
)
from iwf.object_encoder import ObjectEncoder
from iwf.persistence import Persistence
from iwf.persistence_schema import PersistenceField, PersistenceSchema
from iwf.registry import Registry
from iwf.rpc import rpc
from iwf.state_decision import StateDecision
from iwf.state_schema import StateSchema
from iwf.workflow import ObjectWorkflow
from iwf.workflow_context import WorkflowContext
from iwf.workflow_options import WorkflowOptions
from iwf.workflow_state import WorkflowState

T = TypeVar("T")

CH_IN = "in"
DA_STATUS, DA_INBOX = "status", "inbox"


class WaitState(WorkflowState[int]):
    """The user's turn: waits for a request on the internal channel. Input: seconds until the send."""

    def wait_until(
        self, ctx: WorkflowContext, input: int, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        return CommandRequest.for_any_command_completed(InternalChannelCommand.by_name(CH_IN))

    def execute(
        self,
        ctx: WorkflowContext,
        input: int,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        return StateDecision.single_next_state(ComposeNoop, input)


class ComposeNoop(WorkflowState[int]):
    """The model's turn, doing nothing."""

    def execute(
        self,
        ctx: WorkflowContext,
        input: int,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        return StateDecision.single_next_state(TimerState, input)


class TimerState(WorkflowState[int]):
    """The schedule: `scheduled` as it starts waiting, then a durable timer."""

    def wait_until(
        self, ctx: WorkflowContext, input: int, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        persistence.set_data_attribute(DA_STATUS, "scheduled")
        return CommandRequest.for_all_command_completed(TimerCommand.by_seconds(input))

    def execute(
        self,
        ctx: WorkflowContext,
        input: int,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        return StateDecision.single_next_state(DeliverNoop)


class DeliverNoop(WorkflowState[None]):
    """The delivery, doing nothing: records `sent` and completes the workflow."""

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        persistence.set_data_attribute(DA_STATUS, "sent")
        return StateDecision.graceful_complete_workflow("sent")


LOCKED_INBOX = PersistenceLoadingPolicy(
    persistence_loading_type=PersistenceLoadingType.LOAD_PARTIAL_WITH_EXCLUSIVE_LOCK,
    partial_loading_keys=[DA_INBOX],
    locking_keys=[DA_INBOX],
)
STATUS_ONLY = PersistenceLoadingPolicy(
    persistence_loading_type=PersistenceLoadingType.LOAD_PARTIAL_WITHOUT_LOCKING, partial_loading_keys=[DA_STATUS]
)


class ShapeWorkflow(ObjectWorkflow):
    def get_workflow_states(self) -> StateSchema:
        return StateSchema.with_starting_state(WaitState(), ComposeNoop(), TimerState(), DeliverNoop())

    def get_persistence_schema(self) -> PersistenceSchema:
        return PersistenceSchema.create(
            PersistenceField.data_attribute_def(DA_STATUS, str), PersistenceField.data_attribute_def(DA_INBOX, str)
        )

    def get_communication_schema(self) -> CommunicationSchema:
        return CommunicationSchema.create(CommunicationMethod.internal_channel_def(CH_IN, str))

    @rpc(timeout_seconds=10, data_attribute_loading_policy=LOCKED_INBOX)
    def request(self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication) -> str:
        communication.publish_to_internal_channel(CH_IN, input)
        persistence.set_data_attribute(DA_INBOX, input)
        return "received"

    @rpc(timeout_seconds=10, data_attribute_loading_policy=STATUS_ONLY)
    def status(self, ctx: WorkflowContext, input: str, persistence: Persistence, communication: Communication) -> str:
        return str(persistence.get_data_attribute(DA_STATUS) or "waiting")


@dataclass
class Kind:
    """How a benchmark drives one kind of workflow: start it (due in `seconds` once asked), ask, read its status."""

    name: str
    start: Callable[[str, int], Awaitable[None]]
    ask: Callable[[str, int], Awaitable[None]]
    status: Callable[[str], Awaitable[str]]


def bare(iwf_url: str, worker_url: str) -> tuple[Kind, Callable[[], None]]:
    registry = Registry()
    registry.add_workflow(ShapeWorkflow())
    client = Client(
        registry, ClientOptions(server_url=iwf_url, worker_url=worker_url, object_encoder=ObjectEncoder.default)
    )
    pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="floor-client")
    config = WorkflowConfig(optimize_activity=True, executing_state_id_mode=ExecutingStateIdMode.DISABLED)

    async def run(fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    async def start(wid: str, seconds: int) -> None:
        options = WorkflowOptions(workflow_config_override=config)
        await run(lambda: client.start_workflow(ShapeWorkflow, wid, 0, seconds, options))

    async def ask(wid: str, seconds: int) -> None:
        for _ in range(50):
            try:
                await run(lambda: client.invoke_rpc(wid, ShapeWorkflow.request, "m1", str))
                return
            except WorkflowRPCAcquiringLockFailure:
                await asyncio.sleep(0.02)
        raise RuntimeError(f"{wid}: the request never got the lock")

    async def status(wid: str) -> str:
        try:
            return str(await run(lambda: client.invoke_rpc(wid, ShapeWorkflow.status, "", str)))
        except RuntimeError:  # the SDK raises its HTTP errors and unknown codes as RuntimeError
            return ""  # e.g. a 500 while a query meets the workflow's last task: asked again by the next sweep

    return Kind("floor", start, ask, status), lambda: pool.shutdown(wait=False)
