"""iWF's worker callbacks: the engine calls these to run states and RPCs.

Served on its own listener (127.0.0.1 by default), never on the public port:
whoever can call them can make the app send mail.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from iwf.iwf_api.models import (
    WorkflowStateExecuteRequest,
    WorkflowStateWaitUntilRequest,
    WorkflowWorkerRpcRequest,
)
from iwf.registry import Registry
from iwf.worker_service import WorkerService

from bot.state_calls import StateCallCache
from settings import WORKER_SECRET_HEADER

log = logging.getLogger(__name__)

POOLS_KEY = web.AppKey("worker_pools", list[ThreadPoolExecutor])


def worker_app(registry: Registry, secret: str | None, max_threads: int = 64) -> web.Application:
    """State calls and RPC calls run in separate thread pools: a state may itself wait on an RPC (the
    delivery step claims in the ledger workflow, whose RPC this same worker serves), so RPCs must always
    find a free thread, however many states are in flight.

    With `secret`, a state call must carry it in WORKER_SECRET_HEADER (the iWF server adds it to every
    state call: its config's defaultheaders): a state call runs the step with the data attributes it
    carries, so a forged one could make the app send whatever it says. RPC calls do not carry iWF's default
    headers, and need not: an RPC's effects (attribute writes, channel messages) are only applied by the
    workflow engine from the answer it receives itself, so a forged RPC call changes nothing anywhere.
    """
    if secret is not None and not secret:
        raise ValueError("an empty worker secret would admit every state call")
    service = WorkerService(registry)
    states = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="iwf-state")
    rpcs = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="iwf-rpc")

    answers = StateCallCache()

    def route(
        parse: Callable[[dict[str, Any]], Any], handle: Callable[[Any], Any], pool: ThreadPoolExecutor, once: bool
    ) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if once and secret is not None:  # a state call
                given = request.headers.get(WORKER_SECRET_HEADER, "")
                if not hmac.compare_digest(given.encode(), secret.encode()):
                    log.warning("refused a state call without the worker secret from %s", request.remote)
                    return web.Response(status=403, text="state calls must come from the iWF server")
            body = await request.json()

            def work() -> dict[str, Any]:
                try:
                    result: dict[str, Any] = handle(parse(body)).to_dict()
                    return result
                except Exception as error:
                    # The text goes back to iWF, which records it in the workflow history and retries.
                    log.exception("worker call %s failed", request.path)
                    raise _WorkerFailure(type(error).__name__, WorkerService.handle_worker_error(error)) from error

            async def compute() -> dict[str, Any]:
                return await asyncio.get_running_loop().run_in_executor(pool, work)

            key = StateCallCache.key(request.path, body) if once else None
            try:
                return web.json_response(await answers.answer(key, compute))
            except _WorkerFailure as failure:
                # iWF's WorkerErrorResponse: with an errorType, iWF tells an RPC's own failure (a bug: the
                # client gets it as such) from a worker it could not reach (the engine is unavailable).
                return web.json_response({"detail": failure.detail, "errorType": failure.error_type}, status=500)

        return handler

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[POOLS_KEY] = [states, rpcs]
    app.router.add_post(
        WorkerService.api_path_workflow_state_wait_until,
        route(WorkflowStateWaitUntilRequest.from_dict, service.handle_workflow_state_wait_until, states, once=True),
    )
    app.router.add_post(
        WorkerService.api_path_workflow_state_execute,
        route(WorkflowStateExecuteRequest.from_dict, service.handle_workflow_state_execute, states, once=True),
    )
    app.router.add_post(
        WorkerService.api_path_workflow_worker_rpc,
        # Not de-duplicated: an RPC carries no execution id, and iWF may run a locked RPC up to three times
        # (a local activity's attempts). Harmless because every RPC's only effects are its data-attribute
        # writes and channel messages, which iWF applies from the one attempt that succeeds; an RPC must never
        # do anything else (no mail, no Slack call).
        route(WorkflowWorkerRpcRequest.from_dict, service.handle_workflow_worker_rpc, rpcs, once=False),
    )

    async def shutdown(app: web.Application) -> None:
        for pool in app[POOLS_KEY]:
            pool.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shutdown)
    return app


class _WorkerFailure(Exception):
    def __init__(self, error_type: str, detail: str) -> None:
        super().__init__(detail)
        self.error_type, self.detail = error_type, detail
