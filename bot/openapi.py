"""The OpenAPI document, generated from the same pydantic models that validate requests."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from workflows.model import ActionResult, EmailView, RequestResult

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


ERROR = {
    "type": "object",
    "description": "Every answer that is not a success, whatever its status.",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Machine-readable reason, e.g. unauthorized, not_found, bad_id, bad_json, invalid, "
                    "forbidden (403: not the owner), too_late (409: being sent), finished or closed (409: sent or "
                    "canceled), busy, engine_unavailable.",
                },
                "message": {"type": "string", "description": "Plain words, safe to show a user."},
            },
        }
    },
}

_LINKS = {
    name: {"operationId": op, "parameters": {"email_id": "$request.path.email_id"}}
    for name, op in (
        ("Describe", "describeEmail"),
        ("SendMessage", "sendMessage"),
        ("SaveDraft", "saveDraft"),
        ("Cancel", "cancelEmail"),
        ("ConfirmRecipient", "confirmRecipient"),
        ("RemoveRecipient", "removeRecipient"),
        ("SendNow", "sendNow"),
        ("Undo", "undoSend"),
        ("Edit", "editEmail"),
    )
}


def _errors(*statuses: int) -> dict[str, Any]:
    meanings = {
        400: "Bad JSON or id",
        401: "Missing or wrong bearer token",
        404: "No such email",
        403: "Refused: the actor is not the email's owner",
        405: "Method not allowed on this path",
        409: "Refused: finished or being sent",
        413: "Body too large",
        422: "Body does not match the schema",
        503: "Engine unreachable or busy",
    }
    error = _json({"$ref": "#/components/schemas/Error"})
    # Every other status (500 "internal": an unexpected fault, logged by the app) has the same shape.
    return {str(s): {"description": meanings[s], **error} for s in statuses} | {
        "default": {"description": "Any other error (500: unexpected, logged)", **error}
    }


@dataclass(frozen=True)
class ApiModels:
    """The API's own request and answer models (bot.api), so the document and the validation agree."""

    start: type[BaseModel]
    message: type[BaseModel]
    draft: type[BaseModel]
    cancel: type[BaseModel]
    started: type[BaseModel]
    recipient: type[BaseModel]
    token: type[BaseModel]
    issued: type[BaseModel]
    control: type[BaseModel]
    edit: type[BaseModel]
    listing: type[BaseModel]


@cache
def openapi_document(models: ApiModels) -> dict[str, Any]:
    start, message, draft, cancel, started = models.start, models.message, models.draft, models.cancel, models.started
    _, defs = models_json_schema(
        [
            (m, "validation")
            for m in (start, message, draft, cancel, models.recipient, models.token, models.control, models.edit)
        ]
        + [
            (m, "serialization")
            for m in (EmailView, RequestResult, ActionResult, started, models.issued, models.listing)
        ],
        ref_template=REF,
    )
    schemas = {**defs.get("$defs", {}), "Error": ERROR}
    id_param = {
        "name": "email_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"},
        "description": "The email's id, chosen by the client; ids beginning with 'ledger-' are reserved (400).",
    }
    common = _errors(400, 401, 404, 503)
    return {
        "openapi": "3.1.0",  # pydantic writes JSON Schema 2020-12 (anyOf with "null"): 3.1's dialect, not 3.0's
        "info": {
            "title": "email-agent",
            "version": "1",
            "description": "Compose, schedule and send one email.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/emails/{email_id}": {
                "parameters": [id_param],
                "post": {
                    "operationId": "startEmail",
                    "summary": "Start an email (idempotent), optionally with its first request",
                    "requestBody": {"required": False, **_json(_ref(start))},
                    "responses": {
                        "201": {"description": "Created", **_json(_ref(started)), "links": _LINKS},
                        "200": {"description": "Already existed", **_json(_ref(started)), "links": _LINKS},
                        # 409: only with `text`, on an email that already existed and takes no more requests.
                        **_errors(400, 401, 403, 409, 413, 422, 503),
                    },
                },
                "get": {
                    "operationId": "describeEmail",
                    "summary": "Describe an email (an owned one: its owner's token or the admin token)",
                    "responses": {
                        "200": {"description": "The email", **_json(_ref(EmailView))},
                        **common,
                        **_errors(403),
                    },
                },
            },
            "/api/emails/{email_id}/messages": {
                "parameters": [id_param],
                "post": {
                    "operationId": "sendMessage",
                    "summary": "Send a request to the assistant",
                    "requestBody": {"required": True, **_json(_ref(message))},
                    "responses": {
                        "202": {"description": "Accepted", **_json(_ref(RequestResult))},
                        **_errors(400, 401, 403, 404, 409, 413, 422, 503),
                    },
                },
            },
            "/api/emails/{email_id}/draft": {
                "parameters": [id_param],
                "put": {
                    "operationId": "saveDraft",
                    "summary": "Save the user's unsent draft text",
                    "requestBody": {"required": True, **_json(_ref(draft))},
                    "responses": {
                        "200": {"description": "Saved", **_json(_ref(ActionResult))},
                        **_errors(400, 401, 403, 404, 409, 413, 422, 503),
                    },
                },
            },
            "/api/emails/{email_id}/cancel": {
                "parameters": [id_param],
                "post": {
                    "operationId": "cancelEmail",
                    "summary": "Cancel the email",
                    "requestBody": {"required": False, **_json(_ref(cancel))},
                    "responses": {
                        "200": {"description": "Canceled", **_json(_ref(ActionResult))},
                        **_errors(400, 401, 403, 404, 409, 413, 422, 503),
                    },
                },
            },
            **{
                f"/api/emails/{{email_id}}/recipients/{verb}": {
                    "parameters": [id_param],
                    "post": {
                        "operationId": f"{verb}Recipient",
                        "summary": f"{verb.capitalize()} a recipient the model proposed and the owner never wrote",
                        "requestBody": {"required": True, **_json(_ref(models.recipient))},
                        "responses": {
                            "202": {"description": "Queued, answered in order", **_json(_ref(ActionResult))},
                            **_errors(400, 401, 403, 404, 409, 413, 422, 503),
                        },
                    },
                }
                for verb in ("confirm", "remove")
            },
            **{
                f"/api/emails/{{email_id}}/{verb}": {
                    "parameters": [id_param],
                    "post": {
                        "operationId": operation,
                        "summary": summary,
                        "requestBody": {"required": verb == "edit", **_json(_ref(body))},
                        "responses": {
                            "202": {"description": "Queued, answered in order", **_json(_ref(ActionResult))},
                            **_errors(400, 401, 403, 404, 409, 413, 422, 503),
                        },
                    },
                }
                for verb, operation, body, summary in (
                    ("send-now", "sendNow", models.control, "Send it now (after the undo window)"),
                    ("undo", "undoSend", models.control, "Put a scheduled email on hold"),
                    ("edit", "editEmail", models.edit, "Apply the owner's own version, without the model"),
                )
            },
            "/api/emails": {
                "get": {
                    "operationId": "listEmails",
                    "summary": "An owner's emails (a user token: only its own user's)",
                    "parameters": [
                        {
                            "name": "owner",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        }
                    ],
                    "responses": {
                        "200": {"description": "Newest first", **_json(_ref(models.listing))},
                        **_errors(401, 403, 422, 503),
                    },
                }
            },
            "/api/tokens": {
                "post": {
                    "operationId": "issueToken",
                    "summary": "Issue a token that acts only as one user (admin token only)",
                    "requestBody": {"required": True, **_json(_ref(models.token))},
                    "responses": {
                        "201": {"description": "Issued", **_json(_ref(models.issued))},
                        **_errors(400, 401, 403, 413, 422),
                    },
                }
            },
            "/healthz": {
                "get": {"operationId": "health", "security": [], "responses": {"200": {"description": "Alive"}}}
            },
        },
    }
