"""The four email operations as coroutines, on top of iWF's synchronous client.

The iWF SDK blocks (httpx, sync), so every call runs in a bounded thread pool
and the event loop that serves Slack and the API never waits on the engine.
"""

from __future__ import annotations

import asyncio
import json
import random
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import iwf
from iwf.client import Client
from iwf.client_options import ClientOptions
from iwf.errors import (
    ClientSideError,
    HttpError,
    WorkflowAlreadyStartedError,
    WorkflowNotExistsError,
    WorkflowRPCAcquiringLockFailure,
    WorkflowRPCExecutionError,
)
from iwf.iwf_api.errors import UnexpectedStatus
from iwf.iwf_api.models import ExecutingStateIdMode, IDReusePolicy, WorkflowConfig, WorkflowStatus
from iwf.iwf_api.models.workflow_search_request import WorkflowSearchRequest
from iwf.object_encoder import ObjectEncoder
from iwf.registry import Registry
from iwf.unregistered_client import UnregisteredClient
from iwf.workflow_options import WorkflowOptions

from workflows.email_workflow import EmailAgentWorkflow as Wf
from workflows.model import (
    ActionResult,
    CancelInput,
    Control,
    DraftInput,
    EmailStatus,
    EmailView,
    RequestResult,
    StartInput,
    UserRequest,
)
from workflows.record import SA_OWNER, Record, build_view, initial_attributes, initial_search_attributes

T = TypeVar("T")


_IWF_PACKAGE = str(Path(iwf.__file__).parent)


def raised_in_the_iwf_client(error: BaseException) -> bool:
    """Whether the error came out of the iWF SDK (a frame of it on the way, and not from this project's code)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = str(Path(__file__).resolve().parent.parent)
    innermost_ours = bool(frames) and frames[-1].filename.startswith(ours) and ".venv" not in frames[-1].filename
    return not innermost_ours and any(frame.filename.startswith(_IWF_PACKAGE) for frame in frames)


class EmailNotFound(LookupError):
    pass


BUSY = object()  # a describe that did not answer in the time it was given


@dataclass(frozen=True)
class Listing:
    """An owner's emails as described just now, and those found whose workflow was too busy to answer."""

    emails: list[tuple[str, EmailView]]
    busy: list[str]


NOT_THE_OWNER = "only the person who started this email can change or cancel it"


def _stranger(record: Record, actor: str | None) -> bool:
    """An ended email answers a stranger as a running one does (403), saying nothing of how it ended."""
    return bool(record.owner) and actor != record.owner


class EmailClosed(RuntimeError):
    """The workflow has ended (sent or canceled): it takes no more requests. The message is for the user."""

    def __init__(self, message: str = "this email is finished (sent or canceled) and takes no more requests"):
        super().__init__(message)


class EngineBusy(RuntimeError):
    """The engine could not take the request now (lock contention, timeout); safe to retry."""


class EngineUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineErrorStatus:
    code: int
    detail: str


def engine_error_status(error: BaseException) -> EngineErrorStatus | None:
    """The status and detail of an iWF answer the SDK only reports as "unknown error code N".

    The generated client keeps the body on the UnexpectedStatus it raised first (the error's context);
    iWF's body is {"detail": ..., "subStatus": ...}. Kept for the log: what the engine said, not a guess.
    """
    cause = error.__context__
    if not isinstance(cause, UnexpectedStatus):
        return None
    try:
        body = json.loads(cause.content or b"{}")
    except ValueError:
        body = {}
    detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
    return EngineErrorStatus(cause.status_code, detail)


class _Attributes:
    """Persistence-like read access to a closed workflow's attributes, so describe shares one builder."""

    def __init__(self, values: dict[str, object]):
        self._values = values

    def get_data_attribute(self, key: str) -> Any:
        return self._values.get(key)

    def set_data_attribute(self, key: str, value: Any) -> None:
        raise TypeError("an ended workflow's attributes are read-only")

    def get_search_attribute_keyword(self, key: str) -> str | None:
        return None

    def set_search_attribute_keyword(self, key: str, value: str | None) -> None:
        raise TypeError("an ended workflow's attributes are read-only")

    def get_search_attribute_datetime(self, key: str) -> str | None:
        return None

    def set_search_attribute_datetime(self, key: str, value: str | None) -> None:
        raise TypeError("an ended workflow's attributes are read-only")


class EmailEngine:
    def __init__(
        self,
        registry: Registry,
        server_url: str,
        worker_url: str,
        max_threads: int = 32,
        lock_retries: int = 20,
        engine_retries: int = 2,
        local_activities: bool = True,
    ):
        # IwfExecutingStateIds (a system search attribute iWF upserts on every state change) is not used here:
        # off, it costs neither history events nor visibility writes.
        self._config = WorkflowConfig(
            optimize_activity=local_activities, executing_state_id_mode=ExecutingStateIdMode.DISABLED
        )
        self._lock_retries = lock_retries
        self._engine_retries = engine_retries
        options = ClientOptions(server_url=server_url, worker_url=worker_url, object_encoder=ObjectEncoder.default)
        self._client = Client(registry, options)
        self._search = UnregisteredClient(options)  # iWF's search API has no wrapper on the registered client
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="iwf-client")

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn)
        except WorkflowNotExistsError as error:
            raise EmailNotFound(str(error)) from error
        except WorkflowRPCAcquiringLockFailure as error:
            raise EngineBusy("the email is busy; try again in a moment") from error
        except WorkflowRPCExecutionError as error:
            if not error.error_resp.original_worker_error_type:
                # No error of the worker's own: it was not reached (refused, timed out, a load balancer's 503).
                raise EngineUnavailable(f"the worker could not be reached: {error}") from error
            raise  # the worker's RPC code failed: a bug of ours
        except ClientSideError:
            raise  # any other 4xx from the engine is a bug of ours: let it surface as one
        except HttpError as error:
            raise EngineUnavailable(f"the workflow engine answered {error.status}") from error
        except httpx.HTTPError as error:
            raise EngineUnavailable(f"the workflow engine could not be reached: {error}") from error
        except UnexpectedStatus as error:
            # A status the SDK has no model for: iWF's 500 (Temporal down) or a load balancer's 502/503.
            raise EngineUnavailable(f"the workflow engine answered {error.status_code}") from error
        except json.JSONDecodeError as error:
            # The SDK reads an error answer as iWF's JSON: a proxy's text or HTML page ("upstream connect error")
            # in front of the iWF server is not, and means the engine was not reached.
            raise EngineUnavailable("the workflow engine answered with something that is not iWF's JSON") from error
        except RuntimeError as error:
            status = engine_error_status(error)  # the SDK's RPC path re-raises UnexpectedStatus untyped
            if status is None:
                raise
            raise EngineUnavailable(f"the workflow engine answered {status.code}: {status.detail[:200]}") from error
        except (ValueError, TypeError, AttributeError, KeyError) as error:
            # The SDK reading an error answer that is JSON but not iWF's (a proxy's "bad gateway", null, a list):
            # the engine was not reached as itself. Our own code's errors of these kinds still surface.
            if not raised_in_the_iwf_client(error):
                raise
            raise EngineUnavailable("the workflow engine answered something that is not iWF's answer") from error

    async def start(self, email_id: str, start: StartInput) -> bool:
        """Start the workflow once; True if this call created it. Ids are never reused, even after the end."""
        options = WorkflowOptions(
            workflow_id_reuse_policy=IDReusePolicy.DISALLOW_REUSE,
            workflow_config_override=self._config,
            # Set with the start itself, so a describe right after a start already sees them.
            initial_data_attributes=initial_attributes(start),
            initial_search_attributes=initial_search_attributes(start),
        )
        try:
            await self._run(lambda: self._client.start_workflow(Wf, email_id, 0, start.model_dump_json(), options))
        except WorkflowAlreadyStartedError:
            return False
        return True

    async def request(self, email_id: str, request: UserRequest) -> RequestResult:
        """Idempotent by message_id even after the end: a retry whose first try was taken says so.

        A request without an id gets one here, so that this call's own retries (an RPC the engine dropped
        may still be applied later) can never make two requests of one."""
        if not request.message_id:
            request = request.model_copy(update={"message_id": f"auto:{uuid.uuid4()}"})
        try:
            raw = await self._rpc(email_id, Wf.send_request, request.model_dump_json())
        except EmailClosed:
            record = await self._closed_record(email_id)
            if _stranger(record, request.actor):  # as a running email answers: whose it is comes first
                return RequestResult(accepted=False, refusal="forbidden", detail=NOT_THE_OWNER)
            if record.has_taken(request.message_id):
                return RequestResult(accepted=True, duplicate=True, detail="already received")
            raise
        return RequestResult.model_validate_json(raw)

    async def control(self, email_id: str, control: Control) -> ActionResult:
        """An owner's decision, queued in order with requests; idempotent by message_id like them."""
        if not control.message_id:
            control = control.model_copy(update={"message_id": f"auto:{uuid.uuid4()}"})
        try:
            raw = await self._rpc(email_id, Wf.control, control.model_dump_json())
        except EmailClosed:
            record = await self._closed_record(email_id)
            if _stranger(record, control.actor):
                return ActionResult(ok=False, refusal="forbidden", detail=NOT_THE_OWNER)
            if record.has_taken(control.message_id):  # a retry whose first try was taken before the end
                return ActionResult(ok=True, already=True, detail="already received")
            raise
        return ActionResult.model_validate_json(raw)

    async def save_draft(self, email_id: str, draft: DraftInput) -> ActionResult:
        try:
            raw = await self._rpc(email_id, Wf.save_draft, draft.model_dump_json())
        except EmailClosed:
            if _stranger(await self._closed_record(email_id), draft.actor):
                return ActionResult(ok=False, refusal="forbidden", detail=NOT_THE_OWNER)
            raise
        return ActionResult.model_validate_json(raw)

    async def cancel(self, email_id: str, cancel: CancelInput) -> ActionResult:
        """Idempotent: a cancel retried after the email ended canceled answers ok (already), not an error."""
        try:
            raw = await self._rpc(email_id, Wf.cancel, cancel.model_dump_json())
        except EmailClosed:
            view = await self.describe(email_id)
            if view.owner and cancel.actor != view.owner:
                return ActionResult(ok=False, refusal="forbidden", detail=NOT_THE_OWNER)
            if view.status != EmailStatus.CANCELED:
                raise EmailClosed(f"this email is already {view.status.value}; it can no longer be canceled") from None
            return ActionResult(ok=True, already=True, detail="already canceled")
        return ActionResult.model_validate_json(raw)

    async def listing(self, owner: str, limit: int = 50, wait_seconds: float | None = None) -> Listing:
        """An owner's emails, in the visibility store's order (open ones first, newest first; then finished
        ones, latest finished first): found by the EmailOwner search attribute (Temporal visibility, a
        moment behind the workflows), each then described for its current state. A describe is a query,
        answered only between workflow tasks; one that has not answered within `wait_seconds` (its task is
        running a step, the model perhaps, for seconds) is listed as busy instead of holding up the rest."""
        quoted = owner.replace("\\", "\\\\").replace("'", "\\'")
        request = WorkflowSearchRequest(query=f"{SA_OWNER}='{quoted}'", page_size=limit)
        answer = await self._run(lambda: self._search.search_workflow(request))
        entries = answer.workflow_executions if isinstance(answer.workflow_executions, list) else []
        ids = list(dict.fromkeys(entry.workflow_id for entry in entries))
        views = await asyncio.gather(*(self._describe_within(email_id, wait_seconds) for email_id in ids))
        return Listing(
            emails=[(i, v) for i, v in zip(ids, views, strict=True) if isinstance(v, EmailView)],
            busy=[i for i, v in zip(ids, views, strict=True) if v is BUSY],
        )

    async def _describe_within(self, email_id: str, wait_seconds: float | None) -> EmailView | object | None:
        """Its view; None if it does not exist; BUSY if it did not answer in time, or failed on its own (one
        email's trouble must not fail the owner's whole listing)."""
        try:
            return await asyncio.wait_for(self.describe(email_id), wait_seconds)
        except EmailNotFound:
            return None
        except (TimeoutError, EngineBusy, EngineUnavailable, WorkflowRPCExecutionError):
            return BUSY

    async def describe(self, email_id: str) -> EmailView:
        try:
            raw = await self._rpc(email_id, Wf.describe, None)
        except EmailClosed:
            return build_view(await self._closed_record(email_id))
        return EmailView.model_validate_json(raw)

    async def _closed_record(self, email_id: str) -> Record:
        """An ended workflow runs no RPCs, but its attributes can still be read."""
        values = await self._run(lambda: self._client.get_all_workflow_data_attributes(Wf, email_id))
        return Record(_Attributes(values))

    async def _rpc(self, email_id: str, method: Callable[..., str], payload: str | None) -> str:
        for attempt in range(self._engine_retries + 1):
            try:
                result = await self._with_lock_retries(lambda: self._client.invoke_rpc(email_id, method, payload, str))
            except EmailNotFound:
                # iWF answers "not exists" for an ended workflow, and also for an RPC that Temporal aborted
                # before accepting it (its workflow task failed): tell the three apart.
                info = await self._run(lambda: self._client.describe_workflow(email_id))
                if info.workflow_status != WorkflowStatus.RUNNING:
                    raise EmailClosed() from None
                if attempt == self._engine_retries:
                    raise EngineUnavailable("the workflow engine dropped the call; try again") from None
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            except EngineUnavailable:
                # An RPC still in flight when the workflow ended fails on the engine's side (Temporal abandons
                # the update), as does one whose worker call timed out: in both cases its effect was not kept,
                # so it is safe to answer from the ended email's record, or to try again once it settles.
                if await self._has_ended(email_id):
                    raise EmailClosed() from None
                if attempt == self._engine_retries:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if not isinstance(result, str):
                raise EngineUnavailable("the workflow returned no answer")
            return result
        raise AssertionError("unreachable")

    async def _has_ended(self, email_id: str) -> bool:
        try:
            info = await self._run(lambda: self._client.describe_workflow(email_id))
        except (EngineUnavailable, EmailNotFound):
            return False
        return bool(info.workflow_status != WorkflowStatus.RUNNING)

    async def _with_lock_retries(self, fn: Callable[[], T]) -> T:
        """iWF refuses, rather than queues, an RPC whose lock is held (by another RPC or a state taking
        up a request); both hold it for milliseconds, so a few jittered retries absorb the contention."""
        delay = 0.02
        for _ in range(self._lock_retries):
            try:
                return await self._run(fn)
            except EngineBusy:
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 0.5)
        return await self._run(fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
