"""The language model behind the assistant: one call in, one validated reply out.

Stateless on purpose: the conversation lives in the workflow and is sent in
full (trimmed to the newest turns) on every call, so it outlives any
provider-side storage and works with any OpenAI-compatible server.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any, Literal

import openai
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field, ValidationError

from workflows.model import EmailDraft, Turn
from workflows.sendtime import MAX_AHEAD

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """\
You are an email assistant inside a chat. The user asks you to write, revise, translate, schedule or cancel ONE email.
Answer with a single JSON object and nothing else, with these keys:
  "reply": a short message to the user (one or two sentences, in the user's language): what you did or what you need.
  "action": one of "none" (just answering), "draft" (wrote or changed the email), "schedule" (the user gave a send
            time), "hold" (the user wants it not to be sent for now), "cancel" (the user wants to drop the email).
  "to": list of recipient email addresses, or null to keep the current ones.
  "subject": the full subject, or null to keep it.
  "body": the full body text (plain text, no signature placeholders), or null to keep it.
  "send_at_local": a send time the user named by the clock or calendar ("tomorrow at 9", "Friday 14:30"), as their
            wall clock shows it, ISO format "YYYY-MM-DDTHH:MM:SS" with no time zone, worked out from "now_local" in
            the context; or null.
  "send_in_minutes": a send time the user gave relative to now ("in 10 minutes", "in 2 hours": 10, 120; "now": 0);
            or null. Give at most one of send_at_local and send_in_minutes; both null keep the current time.
Never invent a recipient address: if you do not know it, ask. Translating means rewriting subject and body in that
language. The next system message is the current context as JSON.
"""


class AgentReply(BaseModel):
    """The contract with the model; anything else it says is rejected, not guessed at."""

    reply: str = Field(max_length=4000)
    action: Literal["none", "draft", "schedule", "hold", "cancel"] = "none"
    to: list[str] | None = None
    subject: str | None = Field(None, max_length=998)
    body: str | None = Field(None, max_length=100_000)
    send_at_local: str | None = None
    send_in_minutes: float | None = Field(None, ge=0, le=MAX_AHEAD.total_seconds() / 60)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# AgentReply as the schema sent for Structured Outputs: strict mode wants every key required and nullable
# rather than optional, and refuses length limits, so those stay in AgentReply, which this is validated
# into. The defaults (left out of the schema) only keep a lax server's answer that omits a key usable.
# Its name and docstring are sent to the model with the schema.
class EmailAgentReply(BaseModel):
    """Your reply to the user and the email's fields; null keeps a field as it is."""

    reply: str
    action: Literal["none", "draft", "schedule", "hold", "cancel"] = Field("none", json_schema_extra=_no_default)
    to: list[str] | None = None
    subject: str | None = None
    body: str | None = None
    send_at_local: str | None = None
    send_in_minutes: float | None = None


StructuredOutputs = Literal["auto", "on", "off"]


class AgentError(Exception):
    """`reason` is safe to show the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AgentOutputError(AgentError):
    """The model answered, but not with a reply we can use."""


class AgentUnavailableError(AgentError):
    """The model could not be reached (timeouts, rate limits, 5xx) even after the client's retries."""


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


class Agent:
    """One model call per turn.

    Structured Outputs (the reply's JSON schema, enforced by the server) where the server has them; with
    `structured="auto"` a server that answers 400 to a json_schema response format (many OpenAI-compatible
    ones) is remembered and asked for `json_object` from then on. Sampling parameters are sent only when
    set: reasoning models (gpt-5, o-series) refuse any temperature but the default.
    """

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        max_turns: int = 40,
        *,
        temperature: float | None = None,
        structured: StructuredOutputs = "auto",
    ):
        self._client = client
        self._model = model
        self._max_turns = max_turns
        self._temperature = temperature
        self._structured = structured
        self._schema_refused = False  # learned once (auto): this server does not take json_schema

    @property
    def uses_structured_outputs(self) -> bool:
        return self._structured == "on" or (self._structured == "auto" and not self._schema_refused)

    def respond(self, conversation: list[Turn], email: EmailDraft, now_local: datetime, timezone: str) -> AgentReply:
        messages = self._messages(conversation, email, now_local, timezone)
        if self.uses_structured_outputs:
            try:
                return self._structured_reply(messages)
            except openai.BadRequestError as error:
                if self._structured == "on" or not _refuses_json_schema(error):
                    raise _unavailable(error) from error
                log.warning(
                    "%s refused a json_schema response format (%s); using json_object from now on",
                    self._model,
                    _said(error),
                )
                self._schema_refused = True
        return self._json_object_reply(messages)

    def _messages(
        self, conversation: list[Turn], email: EmailDraft, now_local: datetime, timezone: str
    ) -> list[ChatCompletionMessageParam]:
        context = {
            "now_local": now_local.replace(tzinfo=None).isoformat(timespec="seconds"),
            "utc_offset": now_local.isoformat(timespec="seconds")[19:] or "+00:00",
            "weekday": now_local.strftime("%A"),
            "timezone": timezone,
            "email": {
                "to": email.to,
                "subject": email.subject,
                "body": email.body,
                "send_at_local": (
                    email.send_at.astimezone(now_local.tzinfo).replace(tzinfo=None).isoformat(timespec="seconds")
                    if email.send_at
                    else None
                ),
            },
        }
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "system", "content": json.dumps(context, ensure_ascii=False)},
        ]
        for turn in conversation[-self._max_turns :]:
            if turn.role == "user":
                messages.append({"role": "user", "content": turn.text})
            else:
                messages.append({"role": "assistant", "content": turn.text})
        return messages

    def _structured_reply(self, messages: list[ChatCompletionMessageParam]) -> AgentReply:
        try:
            completion = self._client.chat.completions.parse(
                model=self._model,
                messages=messages,
                response_format=EmailAgentReply,
                temperature=self._temperature if self._temperature is not None else openai.omit,
            )
        except openai.BadRequestError:
            raise  # respond() decides: fall back, or report it
        except openai.LengthFinishReasonError as error:
            raise AgentOutputError("the assistant's answer was cut off; your message is kept, send it again") from error
        except openai.ContentFilterFinishReasonError as error:
            raise AgentOutputError("the assistant's answer was withheld by its content filter") from error
        except openai.OpenAIError as error:
            raise _unavailable(error) from error
        except ValidationError as error:
            raise _unusable(error) from error
        if not completion.choices:
            raise AgentOutputError("the assistant returned no answer")
        message = completion.choices[0].message
        if message.refusal:
            raise AgentOutputError(f"the assistant declined to answer ({_clip(message.refusal)})")
        if message.parsed is None:
            raise AgentOutputError("the assistant returned no answer")
        try:
            return AgentReply.model_validate(message.parsed.model_dump())
        except ValidationError as error:
            raise _unusable(error) from error

    def _json_object_reply(self, messages: list[ChatCompletionMessageParam]) -> AgentReply:
        try:
            completion = self._client.chat.completions.create(
                model=self._model,
                messages=messages,
                response_format={"type": "json_object"},
                temperature=self._temperature if self._temperature is not None else openai.omit,
            )
        except openai.OpenAIError as error:
            raise _unavailable(error) from error
        if not completion.choices:
            raise AgentOutputError("the assistant returned no answer")
        content = completion.choices[0].message.content or ""
        return parse_reply(content)


def _error_body(error: openai.APIStatusError) -> dict[str, Any]:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    return body if isinstance(body, dict) else {}


def _clip(text: str, limit: int = 200) -> str:
    """One line, bounded, without a final period: it is shown inside parentheses within a sentence."""
    return " ".join(text.split())[:limit].rstrip(".")


def _said(error: openai.APIStatusError) -> str:
    return _clip(str(_error_body(error).get("message") or ""))


def _refuses_json_schema(error: openai.BadRequestError) -> bool:
    """A 400 about the response format itself, as OpenAI-compatible servers without Structured Outputs
    answer ("'response_format' of type 'json_schema' is not supported", "This response_format type is
    unavailable"); a 400 about anything else is not a reason to change modes."""
    body = _error_body(error)
    said = f"{body.get('param') or ''} {body.get('message') or error.message}".lower()
    return "response_format" in said or "json_schema" in said


def _unavailable(error: openai.OpenAIError) -> AgentUnavailableError:
    if isinstance(error, openai.APITimeoutError):
        return AgentUnavailableError("the assistant took too long to answer")
    if isinstance(error, openai.RateLimitError):
        return AgentUnavailableError("the assistant is rate-limited right now")
    if isinstance(error, openai.APIStatusError):
        said = _said(error)
        detail = f": {said}" if said and error.status_code < 500 else ""
        return AgentUnavailableError(f"the assistant's service answered with an error ({error.status_code}{detail})")
    if isinstance(error, openai.APIConnectionError):
        return AgentUnavailableError("the assistant's service could not be reached")
    return AgentUnavailableError(f"the assistant's service failed ({type(error).__name__})")


def _unusable(error: ValidationError) -> AgentOutputError:
    problem = error.errors()[0]
    where = ".".join(str(p) for p in problem["loc"]) or "reply"
    return AgentOutputError(
        f"the assistant's answer was not usable ({where}: {problem['msg']}); your message is kept, "
        "send it again or rephrase"
    )


def parse_reply(content: str) -> AgentReply:
    """The json_object fallback: the model was only asked for JSON, so fences are tolerated."""
    text = _FENCE.sub("", content.strip())
    try:
        return AgentReply.model_validate_json(text)
    except ValidationError as error:
        raise _unusable(error) from error
