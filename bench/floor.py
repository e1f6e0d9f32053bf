"""RPC cost against its floor, measured in one run on one stack.

    python -m bench.floor [--n 300]

- Temporal floor: a query to an idle workflow through the official temporalio client, same dev server.
- iWF floor: an RPC that loads nothing and does nothing, on a minimal one-state iWF workflow, same
  iWF server, its worker served by the same aiohttp worker code as the app's.
- ours: describe and send_request on an email workflow, through the same iWF client the app uses
  (no HTTP API in between), and describe through the HTTP API.
"""

# No `from __future__ import annotations`: the iWF SDK reads RPC annotations at runtime.

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from iwf.client import Client
from iwf.client_options import ClientOptions
from iwf.command_request import CommandRequest, InternalChannelCommand
from iwf.command_results import CommandResults
from iwf.communication import Communication
from iwf.communication_schema import CommunicationMethod, CommunicationSchema
from iwf.object_encoder import ObjectEncoder
from iwf.persistence import Persistence
from iwf.registry import Registry
from iwf.rpc import rpc
from iwf.state_decision import StateDecision
from iwf.state_schema import StateSchema
from iwf.workflow import ObjectWorkflow
from iwf.workflow_context import WorkflowContext
from iwf.workflow_state import WorkflowState
from temporalio import workflow
from temporalio.client import Client as TemporalClient
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.harness import Embedded, embedded
from bench.latency import summary
from bot.engine import EmailEngine
from bot.worker_app import worker_app
from settings import Settings
from tests.harness import Api, free_port
from workflows.model import UserRequest
from workflows.wiring import wire

RESULTS = Path(__file__).with_name("floor-results.json")


class IdleState(WorkflowState[None]):
    def wait_until(
        self, ctx: WorkflowContext, input: None, persistence: Persistence, communication: Communication
    ) -> CommandRequest:
        return CommandRequest.for_any_command_completed(InternalChannelCommand.by_name("never"))

    def execute(
        self,
        ctx: WorkflowContext,
        input: None,
        command_results: CommandResults,
        persistence: Persistence,
        communication: Communication,
    ) -> StateDecision:
        return StateDecision.graceful_complete_workflow()


class FloorWorkflow(ObjectWorkflow):
    def get_workflow_states(self) -> StateSchema:
        return StateSchema.with_starting_state(IdleState())

    def get_communication_schema(self) -> CommunicationSchema:
        return CommunicationSchema.create(CommunicationMethod.internal_channel_def("never", str))

    @rpc(timeout_seconds=10)
    def ping(self, ctx: WorkflowContext, input: str) -> str:
        return input


@workflow.defn(name="FloorIdle")
class TemporalIdle:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def ping(self) -> str:
        return "pong"


async def timed(n: int, call: Any) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def main(n: int) -> dict[str, Any]:
    async with embedded(Path(tempfile.mkdtemp(prefix="email-agent-floor-"))) as e:
        return await measure(e, n)


async def measure(e: Embedded, n: int) -> dict[str, Any]:
    iwf_url, temporal_hp, app = e.iwf_url, e.temporal_host_port, e.app
    floor_registry = Registry()
    floor_registry.add_workflow(FloorWorkflow())
    floor_worker_port = free_port()
    runner = web.AppRunner(worker_app(floor_registry, None))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", floor_worker_port).start()
    results: dict[str, Any] = {}
    try:
        # --- Temporal floor
        temporal = await TemporalClient.connect(temporal_hp)
        # Unsandboxed: the sandbox would re-import this whole module; the workflow is trivially deterministic.
        async with Worker(
            temporal, task_queue="floor", workflows=[TemporalIdle], workflow_runner=UnsandboxedWorkflowRunner()
        ):
            handle = await temporal.start_workflow(
                TemporalIdle.run,
                id=f"floor-{uuid.uuid4()}",
                task_queue="floor",
                execution_timeout=timedelta(minutes=30),
            )
            await timed(20, lambda: handle.query(TemporalIdle.ping))
            temporal_query = await timed(n, lambda: handle.query(TemporalIdle.ping))
            await handle.terminate()
        # --- iWF floor
        floor_client = Client(
            floor_registry,
            ClientOptions(
                server_url=iwf_url,
                worker_url=f"http://127.0.0.1:{floor_worker_port}",
                object_encoder=ObjectEncoder.default,
            ),
        )
        fid = f"floor-{uuid.uuid4()}"
        await asyncio.to_thread(floor_client.start_workflow, FloorWorkflow, fid, 0)

        async def iwf_ping() -> None:
            await asyncio.to_thread(floor_client.invoke_rpc, fid, FloorWorkflow.ping, "x", str)

        await timed(20, iwf_ping)
        iwf_rpc = await timed(n, iwf_ping)
        # --- ours
        registry = wire(Settings(_env_file=None, iwf_server_url=iwf_url)).registry  # describe and RPCs only
        engine = EmailEngine(registry, iwf_url, f"http://127.0.0.1:{app.env['WORKER_PORT']}")
        async with aiohttp.ClientSession() as session:
            api = Api(session, app.base_url)
            wid = f"floor-email-{uuid.uuid4()}"
            await api.start(wid)
            await api.say(wid, "to: f@example.com; subject: Floor; body: Hi")
            await api.wait_for(wid, "waiting")
            await timed(20, lambda: engine.describe(wid))
            describe_rpc = await timed(n, lambda: engine.describe(wid))
            describe_http = await timed(n, lambda: api.describe(wid))
            counter = iter(range(10**9))
            wids = [f"floor-req-{uuid.uuid4()}" for _ in range(n // 20 + 1)]
            for w in wids:
                await api.start(w)

            async def request() -> None:
                i = next(counter)
                result = await engine.request(wids[i // 20], UserRequest(text=f"note {i}", message_id=f"m{i}"))
                assert result.accepted

            send_request_rpc = await timed(n, request)
        engine.close()
        results = {
            "temporal_query": summary(temporal_query),
            "iwf_rpc_floor": summary(iwf_rpc),
            "describe_rpc": summary(describe_rpc),
            "describe_http": summary(describe_http),
            "send_request_rpc_locked": summary(send_request_rpc),
        }
        floor = results["iwf_rpc_floor"]["p50_ms"]
        results["ratios_p50"] = {
            "iwf_rpc_floor / temporal_query": round(floor / results["temporal_query"]["p50_ms"], 1),
            "describe_rpc / iwf_rpc_floor": round(results["describe_rpc"]["p50_ms"] / floor, 2),
            "send_request_rpc / iwf_rpc_floor": round(results["send_request_rpc_locked"]["p50_ms"] / floor, 2),
        }
    finally:
        await runner.cleanup()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    output = asyncio.run(main(parser.parse_args().n))
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2))
