"""The language model behind the assistant: one call in, one validated reply out.

Stateless on purpose: the conversation lives in the workflow and is sent in
full (trimmed to the newest turns) on every call, so it outlives any
provider-side storage and works with any OpenAI-compatible server.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Literal

import openai
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field, ValidationError

from workflows.model import EmailDraft, Turn

SYSTEM_PROMPT = """\
You are an email assistant inside a chat. The user asks you to write, revise, translate, schedule or cancel ONE email.
Answer with a single JSON object and nothing else, with these keys:
  "reply": a short message to the user (one or two sentences, in the user's language): what you did or what you need.
  "action": one of "none" (just answering), "draft" (wrote or changed the email), "schedule" (the user gave a send
            time), "hold" (the user wants it not to be sent for now), "cancel" (the user wants to drop the email).
  "to": list of recipient email addresses, or null to keep the current ones.
  "subject": the full subject, or null to keep it.
  "body": the full body text (plain text, no signature placeholders), or null to keep it.
  "send_at_local": the send time as the user's wall clock shows it, ISO format "YYYY-MM-DDTHH:MM:SS" with no time zone,
            or null to keep the current one. Work it out from "now_local" in the context ("in 2 hours", "tomorrow at 9").
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
    def __init__(self, client: openai.OpenAI, model: str, max_turns: int = 40):
        self._client = client
        self._model = model
        self._max_turns = max_turns

    def respond(self, conversation: list[Turn], email: EmailDraft, now_local: datetime, timezone: str) -> AgentReply:
        context = {
            "now_local": now_local.replace(tzinfo=None).isoformat(timespec="seconds"),
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
        try:
            completion = self._client.chat.completions.create(
                model=self._model,
                messages=messages,
                response_format={"type": "json_object"},
                temperature=0.2,
            )
        except openai.APITimeoutError as error:
            raise AgentUnavailableError("the assistant took too long to answer") from error
        except openai.RateLimitError as error:
            raise AgentUnavailableError("the assistant is rate-limited right now") from error
        except openai.APIStatusError as error:
            raise AgentUnavailableError(
                f"the assistant's service answered with an error ({error.status_code})"
            ) from error
        except openai.APIConnectionError as error:
            raise AgentUnavailableError("the assistant's service could not be reached") from error
        if not completion.choices:
            raise AgentOutputError("the assistant returned no answer")
        content = completion.choices[0].message.content or ""
        return parse_reply(content)


def parse_reply(content: str) -> AgentReply:
    text = _FENCE.sub("", content.strip())
    try:
        return AgentReply.model_validate_json(text)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "reply"
        raise AgentOutputError(
            f"the assistant's answer was not usable ({where}: {problem['msg']}); your message is kept, "
            "send it again or rephrase"
        ) from error
