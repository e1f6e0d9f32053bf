"""The HTTP API's bodies and answers: pydantic models that check input at the edge and that the OpenAPI
document is generated from, so what is documented is exactly what is checked."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_validator

from bot.tokens import MAX_USER_LENGTH
from workflows.model import EmailEdit, EmailView, RequestResult
from workflows.recipients import RecipientError, normalize
from workflows.sendtime import is_valid_timezone

_ZONES: list[JsonValue] = list(sorted(available_timezones()))
# Declared in the document exactly as checked, so a client (and schemathesis) can tell valid from refused.
OWNER_EMAIL = (
    r"^[A-Za-z0-9_%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?){0,3}\.[A-Za-z]{2,24}$"
)


def _one_address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize([value], special_use=True)[0]
    except RecipientError as error:
        raise ValueError(str(error)) from None


# The owner's name and address as an email shows them: From's display name, and Reply-To.
OwnerName = Annotated[
    str | None,
    Field(max_length=100, description="Shown in From: '<name> (via email-agent)'; the address stays the account's."),
]
OwnerEmail = Annotated[
    str | None,
    Field(max_length=254, pattern=OWNER_EMAIL, description="Replies go here (Reply-To). A plain address."),
    AfterValidator(_one_address),
]


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The document lists the zones this machine knows, so a client (and schemathesis) can tell a valid
    # request from one the API will refuse with 422.
    timezone: str = Field("UTC", json_schema_extra={"enum": _ZONES})
    owner: str | None = Field(
        None, max_length=200, description="If set, only requests naming this actor may change or cancel it."
    )
    owner_name: OwnerName = Field(
        None,
        description="Shown in From: '<name> (via email-agent)'; the address stays the account's. Admin token "
        "only: a user token's emails carry the name it was issued with (403 for another).",
    )
    owner_email: OwnerEmail = Field(
        None,
        description="Replies go here (Reply-To). A plain address. Admin token only: a user token's emails carry "
        "the address it was issued with (403 for another).",
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=8000,
        description="The first request, carried by the start itself: one call (and fewer engine steps) instead of "
        "a start then a message. If the email already exists, it is sent to it as a message.",
    )
    message_id: str | None = Field(
        None, max_length=200, description="The first request's id; give one so that a retried call is taken once."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_valid_timezone(value):
            raise ValueError(f"'{value}' is not an IANA time zone such as Europe/Paris")
        return value


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=8000)
    message_id: str | None = Field(None, max_length=200)
    actor: str | None = Field(None, max_length=200, description="Who asks; must be the owner of an owned email.")


class DraftBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=8000)
    actor: str | None = Field(None, max_length=200)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str | None = Field(None, max_length=200)


class RecipientBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str = Field(min_length=3, max_length=320, description="A recipient waiting for confirmation.")
    actor: str | None = Field(None, max_length=200)
    message_id: str | None = Field(None, max_length=200, description="Idempotency key for this decision.")


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str | None = Field(None, max_length=200)
    message_id: str | None = Field(None, max_length=200, description="Idempotency key for this decision.")


class EditBody(EmailEdit):
    """The owner's own version of the email, applied as one new revision without the model."""

    model_config = ConfigDict(extra="forbid")
    # Within the request size limit (MAX_BODY_BYTES) however the text is encoded, like a message's text.
    body: str = Field("", max_length=8000)
    actor: str | None = Field(None, max_length=200)
    message_id: str | None = Field(None, max_length=200)


class EmailListing(BaseModel):
    id: str
    email: EmailView


class EmailList(BaseModel):
    owner: str
    emails: list[EmailListing]
    unanswered: list[str] = Field(
        default_factory=list,
        description="Ids of the owner's emails that could not be described in time (busy with a long step, or "
        "the engine failing for that one email): ask for them again, or one by one.",
    )


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=MAX_USER_LENGTH, description="The one actor the token acts as.")
    ttl_days: int = Field(30, ge=1, le=365)
    name: OwnerName = Field(None, description="The user's name, shown in From on every email the token starts.")
    email: OwnerEmail = Field(None, description="The user's address: Reply-To of every email the token starts.")


class TokenResult(BaseModel):
    token: str = Field(description="Bearer token that acts only as `user`; shown once, never stored.")
    user: str
    name: str | None = None
    email: str | None = None
    expires_at: datetime


class StartResult(BaseModel):
    id: str
    created: bool = Field(description="False: it already existed (ids are never reused).")
    request: RequestResult | None = Field(None, description="What became of `text`, when one was given.")
