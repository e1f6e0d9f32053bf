"""The HTTP API: start, describe, request, save draft and cancel, JSON in and out."""

from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.api_bodies import (
    CancelBody,
    ControlBody,
    DraftBody,
    EditBody,
    EmailList,
    EmailListing,
    MessageBody,
    RecipientBody,
    StartBody,
    StartResult,
    TokenBody,
    TokenResult,
)
from bot.engine import EmailClosed, EmailEngine, EmailNotFound, EngineBusy, EngineUnavailable
from bot.openapi import ApiModels, openapi_document
from bot.tokens import MAX_USER_LENGTH, TokenSigner
from workflows.ledger import LEDGER_PREFIX
from workflows.model import (
    CancelInput,
    Control,
    ControlKind,
    DraftInput,
    EmailEdit,
    RequestResult,
    StartInput,
    UserRequest,
)

log = logging.getLogger(__name__)

ENGINE_KEY = web.AppKey("engine", EmailEngine)
TOKEN_KEY = web.AppKey("api_token", str)
SIGNER_KEY = web.AppKey("token_signer", TokenSigner)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
# Slack's interactive payloads carry the whole view or message they came from (a full App Home, a modal with
# a long body): far more than an API body. The app reads up to this; API bodies are held to their own limit.
SLACK_MAX_BODY_BYTES = 1024 * 1024
EMAIL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")  # fullmatch: no trailing newline

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Answered as JSON by the middleware: {"error": {"code": ..., "message": ...}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure is JSON with a plain message; stack traces stay in the log."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message, error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        kept = {name: error.headers[name] for name in ("Allow", "Retry-After") if name in error.headers}
        return error_response(error.status, error.reason.lower().replace(" ", "_"), error.reason, kept)
    except EmailNotFound:
        return error_response(404, "not_found", "no email with this id")
    except EmailClosed as error:
        return error_response(409, "closed", str(error))
    except EngineBusy as error:
        return error_response(503, "busy", str(error), {"Retry-After": "1"})
    except EngineUnavailable as error:
        log.warning("engine unavailable: %s", error)
        return error_response(
            503, "engine_unavailable", "the workflow engine is not reachable; try again later", {"Retry-After": "2"}
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; it has been logged")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the admin token (acts as any actor it names) or a user token (acts as its user only)."""

    user: str | None = None  # None: the admin
    name: str | None = None  # a user token's: vouched for by the admin who issued it
    email: str | None = None

    @property
    def admin(self) -> bool:
        return self.user is None

    def actor(self, named: str | None) -> str | None:
        """The actor a request acts as: a user token cannot name anyone else."""
        if self.user is None:
            return named
        if named is not None and named != self.user:
            raise ApiError(403, "forbidden", "this token acts only as its own user")
        return self.user

    def identity(self, name: str | None, email: str | None) -> tuple[str | None, str | None]:
        """The name and address an email started by this caller shows (From, Reply-To). The admin names
        anyone; a user token's are the ones it was issued with, so it cannot send as someone else."""
        if self.user is None:
            return name, email
        if (name is not None and name != self.name) or (email is not None and email != self.email):
            raise ApiError(
                403, "forbidden", "this token's emails carry the name and address it was issued with; leave them out"
            )
        return self.name, self.email


def require_token(request: web.Request) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <API_TOKEN>)")
    if not token.isascii():  # every token this app issues is ASCII (aiohttp hands other bytes on as escapes)
        raise ApiError(401, "unauthorized", "invalid or expired bearer token")
    if hmac.compare_digest(token.encode(), request.app[TOKEN_KEY].encode()):
        return Caller()
    user_token = request.app[SIGNER_KEY].verify(token)
    if user_token is None:
        raise ApiError(401, "unauthorized", "invalid or expired bearer token")
    return Caller(user=user_token.user, name=user_token.name, email=user_token.email)


def require_admin(request: web.Request) -> None:
    if not require_token(request).admin:
        raise ApiError(403, "forbidden", "only the admin token (API_TOKEN) may do this")


def email_id(request: web.Request) -> str:
    value = request.match_info["email_id"]
    if not EMAIL_ID.fullmatch(value):
        raise ApiError(400, "bad_id", "ids are 1-200 characters of letters, digits, '.', '_', ':' and '-'")
    if value.startswith(LEDGER_PREFIX):  # predictable: an email there would block its owner's sends
        raise ApiError(400, "bad_id", f"ids beginning with '{LEDGER_PREFIX}' are reserved for delivery ledgers")
    return value


async def body_of(request: web.Request, model: type[M], optional: bool = False) -> M:
    raw = await request.read()
    limit = request.app.get(MAX_BODY_KEY)
    if limit is not None and len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    if not raw.strip() and optional:
        return model()
    try:
        data = json.loads(raw)
    except RecursionError as error:
        raise ApiError(400, "bad_json", "the body is not valid JSON here: it is nested too deeply") from error
    except ValueError as error:  # not JSON, not UTF-8, or a number too long to read (over 4,300 digits)
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {error}") from error
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors())
        raise ApiError(422, "invalid", problems) from error


def refused(refusal: str, detail: str) -> ApiError:
    """A refusal is an error like any other: its code says why (forbidden, too_late, finished)."""
    return ApiError(403 if refusal == "forbidden" else 409, refusal or "refused", detail)


def ok(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


async def start_email(request: web.Request) -> web.Response:
    caller = require_token(request)
    wid = email_id(request)
    body = await body_of(request, StartBody, optional=True)
    owner = caller.actor(body.owner)  # a user token's emails are always its user's
    owner_name, owner_email = caller.identity(body.owner_name, body.owner_email)
    first = None
    if body.text is not None:
        # The id is fixed before the start, so the start and a fall-back message can never make two requests.
        first = UserRequest(text=body.text, message_id=body.message_id or f"auto:{uuid.uuid4()}", actor=owner)
    start = StartInput(
        timezone=body.timezone,
        owner=owner,
        owner_name=owner_name,
        owner_email=owner_email,
        first_request=first,
    )
    engine = request.app[ENGINE_KEY]
    created = await engine.start(wid, start)
    result = None
    if first is not None:
        if created:
            result = RequestResult(accepted=True, detail="received with the start")
        else:  # it existed (a retried call, or an email started before): the text goes to it as a message
            result = await engine.request(wid, first)
            if not result.accepted:
                raise refused(result.refusal, result.detail)
    return ok(StartResult(id=wid, created=created, request=result), status=201 if created else 200)


async def describe_email(request: web.Request) -> web.Response:
    caller = require_token(request)
    view = await request.app[ENGINE_KEY].describe(email_id(request))
    if view.owner and not caller.admin and caller.user != view.owner:
        raise ApiError(403, "forbidden", "only the owner of this email (or the admin token) may read it")
    return ok(view)


async def post_message(request: web.Request) -> web.Response:
    caller = require_token(request)
    wid = email_id(request)
    body = await body_of(request, MessageBody)
    result = await request.app[ENGINE_KEY].request(
        wid, UserRequest(text=body.text, message_id=body.message_id, actor=caller.actor(body.actor))
    )
    if not result.accepted:
        raise refused(result.refusal, result.detail)
    return ok(result, status=202)


async def save_draft(request: web.Request) -> web.Response:
    caller = require_token(request)
    wid = email_id(request)
    body = await body_of(request, DraftBody)
    result = await request.app[ENGINE_KEY].save_draft(wid, DraftInput(text=body.text, actor=caller.actor(body.actor)))
    if not result.ok:
        raise refused(result.refusal, result.detail)
    return ok(result)


async def cancel_email(request: web.Request) -> web.Response:
    caller = require_token(request)
    wid = email_id(request)
    body = await body_of(request, CancelBody, optional=True)
    result = await request.app[ENGINE_KEY].cancel(wid, CancelInput(actor=caller.actor(body.actor)))
    if not result.ok:
        raise refused(result.refusal, result.detail)
    return ok(result)


def owner_control(kind: ControlKind) -> Handler:
    """An owner's decision (confirm or remove a recipient, send now, undo, edit), queued in order like a request."""
    model: type[RecipientBody | EditBody | ControlBody] = (
        RecipientBody if kind.endswith("_recipient") else EditBody if kind == "edit" else ControlBody
    )

    async def handler(request: web.Request) -> web.Response:
        caller = require_token(request)
        wid = email_id(request)
        body = await body_of(request, model, optional=model is ControlBody)
        control = Control(kind=kind, actor=caller.actor(body.actor), message_id=body.message_id)
        if isinstance(body, RecipientBody):
            control.address = body.address
        if isinstance(body, EditBody):
            control.edit = EmailEdit.model_validate(body.model_dump(include=set(EmailEdit.model_fields)))
        result = await request.app[ENGINE_KEY].control(wid, control)
        if not result.ok:
            raise refused(result.refusal, result.detail)
        return ok(result, status=202)

    return handler


# Each listed email's describe may wait for its workflow task (the model writing, seconds): one slow or failing
# email is named in `unanswered` rather than holding up, or failing, the whole list.
LIST_DESCRIBE_SECONDS = 10.0


async def list_emails(request: web.Request) -> web.Response:
    """An owner's emails (?owner=): a user token may list only its own user's."""
    caller = require_token(request)
    owner = request.query.get("owner", "")
    if not owner or len(owner) > MAX_USER_LENGTH:
        raise ApiError(422, "invalid", "owner: name the owner whose emails to list (?owner=...)")
    if caller.user is not None and owner != caller.user:
        raise ApiError(403, "forbidden", "this token lists only its own user's emails")
    found = await request.app[ENGINE_KEY].listing(owner, wait_seconds=LIST_DESCRIBE_SECONDS)
    emails = [EmailListing(id=i, email=v) for i, v in found.emails]
    return ok(EmailList(owner=owner, emails=emails, unanswered=found.busy))


async def issue_token(request: web.Request) -> web.Response:
    require_admin(request)
    body = await body_of(request, TokenBody)
    token, issued = request.app[SIGNER_KEY].issue(body.user, body.ttl_days * 86400, name=body.name, email=body.email)
    expires_at = datetime.fromtimestamp(issued.expires_at, UTC)
    return ok(
        TokenResult(token=token, user=issued.user, name=issued.name, email=issued.email, expires_at=expires_at), 201
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def api_document() -> dict[str, Any]:
    """The OpenAPI document of this API (served at /openapi.json)."""
    return openapi_document(
        ApiModels(
            StartBody,
            MessageBody,
            DraftBody,
            CancelBody,
            StartResult,
            RecipientBody,
            TokenBody,
            TokenResult,
            ControlBody,
            EditBody,
            EmailList,
        )
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(api_document())


def add_api_routes(app: web.Application, engine: EmailEngine, api_token: str) -> None:
    app[ENGINE_KEY] = engine
    app[TOKEN_KEY] = api_token
    app[SIGNER_KEY] = TokenSigner(api_token)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_post("/api/emails/{email_id}", start_email)
    app.router.add_get("/api/emails/{email_id}", describe_email)
    app.router.add_post("/api/emails/{email_id}/messages", post_message)
    app.router.add_put("/api/emails/{email_id}/draft", save_draft)
    app.router.add_post("/api/emails/{email_id}/cancel", cancel_email)
    app.router.add_get("/api/emails", list_emails)
    app.router.add_post("/api/emails/{email_id}/recipients/confirm", owner_control("confirm_recipient"))
    app.router.add_post("/api/emails/{email_id}/recipients/remove", owner_control("remove_recipient"))
    app.router.add_post("/api/emails/{email_id}/send-now", owner_control("send_now"))
    app.router.add_post("/api/emails/{email_id}/undo", owner_control("undo"))
    app.router.add_post("/api/emails/{email_id}/edit", owner_control("edit"))
    app.router.add_post("/api/tokens", issue_token)


def public_app(engine: EmailEngine, api_token: str, max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[errors_as_json], client_max_size=max(max_body_bytes, SLACK_MAX_BODY_BYTES))
    app[MAX_BODY_KEY] = max_body_bytes
    add_api_routes(app, engine, api_token)
    return app
