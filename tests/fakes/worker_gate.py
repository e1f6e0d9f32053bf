"""A gate between the iWF server and the app's worker listener, to make races happen on purpose.

The app is started with WORKER_URL pointing here; every state or RPC callback from the iWF server passes
through, forwarded over HTTP to the real worker. A test can hold the next callback that matches (a state's
execute, an RPC by name, for one workflow) until it releases it, so an interleaving that is otherwise a
matter of milliseconds is produced exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

STATE_EXECUTE = "/api/v1/workflowState/decide"
STATE_WAIT_UNTIL = "/api/v1/workflowState/start"
RPC = "/api/v1/workflowWorker/rpc"


@dataclass
class Hold:
    matches: Callable[[str, dict[str, Any]], bool]
    every: bool = False  # every matching callback until released, not only the next one
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    body: dict[str, Any] = field(default_factory=dict)

    async def wait_arrived(self, timeout: float = 30) -> dict[str, Any]:
        await asyncio.wait_for(self.arrived.wait(), timeout)
        return self.body

    def release(self) -> None:
        self.released.set()


def state_call(path: str, workflow_id: str, state_id: str, input_contains: str = "") -> Callable[..., bool]:
    def matches(request_path: str, body: dict[str, Any]) -> bool:
        context = body.get("context") or {}
        state_input = str((body.get("stateInput") or {}).get("data") or "")
        return (
            request_path == path
            and context.get("workflowId") == workflow_id
            and body.get("workflowStateId") == state_id
            and input_contains in state_input
        )

    return matches


def rpc_call(workflow_id: str, rpc_name: str) -> Callable[..., bool]:
    def matches(request_path: str, body: dict[str, Any]) -> bool:
        context = body.get("context") or {}
        return request_path == RPC and context.get("workflowId") == workflow_id and body.get("rpcName") == rpc_name

    return matches


@dataclass
class Reroute:
    """Matching callbacks after the first `after` go to `target` (another replica) instead of the gate's own:
    what a load balancer in front of replicas does to a step iWF runs again."""

    matches: Callable[[str, dict[str, Any]], bool]
    target: str
    after: int = 1
    seen: int = 0
    sent: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Passed:
    """One callback that went through: where to, for which state or RPC, and how much it carried."""

    path: str
    name: str
    body_bytes: int
    data_attribute_bytes: int
    workflow_id: str = ""


@dataclass
class WorkerGate:
    target: str = ""  # the app's real worker, http://127.0.0.1:<WORKER_PORT>
    holds: list[Hold] = field(default_factory=list)
    losses: list[Hold] = field(default_factory=list)
    reroutes: list[Reroute] = field(default_factory=list)
    passed: list[Passed] = field(default_factory=list)
    runner: web.AppRunner | None = None
    session: aiohttp.ClientSession | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lose_answer(self, matches: Callable[[str, dict[str, Any]], bool]) -> Hold:
        """Let the next matching callback reach the worker, then answer iWF 502 instead of the worker's answer
        (as if the connection broke on the way back); `arrived` is set once that happened."""
        lost = Hold(matches)
        lost.released.set()
        self.losses.append(lost)
        return lost

    def reroute(self, matches: Callable[[str, dict[str, Any]], bool], target: str, after: int = 1) -> Reroute:
        """Send the matching callbacks after the first `after` to the worker at `target`."""
        reroute = Reroute(matches, target, after)
        self.reroutes.append(reroute)
        return reroute

    def hold(self, matches: Callable[[str, dict[str, Any]], bool], every: bool = False) -> Hold:
        """Hold the next callback that matches (`every`: each one that comes until then), until the returned
        Hold is released."""
        hold = Hold(matches, every)
        self.holds.append(hold)
        return hold

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for hold in self.holds:
            hold.release()
        if self.runner:
            await self.runner.cleanup()
        if self.session:
            await self.session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = await request.json()
        # iWF spells it dataObjects in a wait_until (start) call and DataObjects in an execute (decide) call.
        attributes = body.get("dataObjects") or body.get("DataObjects") or body.get("dataAttributes") or []
        self.passed.append(
            Passed(
                request.path,
                str(body.get("workflowStateId") or body.get("rpcName") or ""),
                len(raw),
                len(json.dumps(attributes)),
                str((body.get("context") or {}).get("workflowId") or ""),
            )
        )
        for hold in list(self.holds):
            if hold.matches(request.path, body) and not hold.released.is_set():
                if not hold.every:
                    self.holds.remove(hold)
                hold.body = body
                hold.arrived.set()
                await hold.released.wait()
                break
        assert self.session is not None
        # As sent, the worker secret header included (the worker refuses state calls without it).
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        target = self.target
        for reroute in self.reroutes:
            if reroute.matches(request.path, body):
                reroute.seen += 1
                if reroute.seen > reroute.after:
                    target = reroute.target
                    reroute.sent.set()
                break
        async with self.session.post(target + request.path, data=raw, headers=headers) as answer:
            content = await answer.read()
        for lost in list(self.losses):
            if lost.matches(request.path, body):
                self.losses.remove(lost)
                lost.body = body
                lost.arrived.set()
                return web.Response(status=502, text="the answer was lost on the way back")
        return web.Response(status=answer.status, body=content, content_type="application/json")
