"""Short answers the bot posts in a thread in reply to a user's message ("I can't take that now", the
listing of what is scheduled, ...), each posted once per message even when Slack delivers it again.

Slack re-delivers an event whose answer was slow or lost (`x-slack-retry-num`); the message itself is
de-duplicated by the workflow, but a note already posted would be posted again. Each note carries the
ts of the message it answers in its metadata, and on a re-delivery the thread is looked at first. A
re-delivery that arrives while the first delivery is still working (Slack retries after 3 s) may not
find the note yet: then both answer, the rarer and lesser harm than a message never answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from workflows.model import MAX_REQUEST_CHARS

log = logging.getLogger(__name__)

EMAIL_NOTE_EVENT = "email_agent_note"

NO_PROFILE = (
    "I could not read your time zone from Slack just now, so I did not start this email (a guessed zone "
    "would send it at the wrong hour). Please send it again in a minute."
)


def too_long(chars: int, what: str = "message") -> str:
    return (
        f"Your {what} is {chars:,} characters long; I can read up to {MAX_REQUEST_CHARS:,} at a time, so I did "
        "not take it. Please send a shorter one (for a long text to answer, the part that matters)."
    )


@dataclass(frozen=True)
class Where:
    """Where a note goes, and what it answers: `answering` is the user's message ts ("" for a button,
    which Slack never re-delivers), `retry` the delivery's x-slack-retry-num (0: the first)."""

    channel: str
    thread_ts: str
    answering: str = ""
    retry: int = 0


class ThreadNotes:
    def __init__(self, client: AsyncWebClient):
        self._client = client

    async def say(self, where: Where, text: str) -> None:
        if where.answering and where.retry and await self._already_answered(where):
            log.info("a note for %s is there already: re-delivery %d not answered again", where.answering, where.retry)
            return
        metadata: dict[str, Any] | None = None
        if where.answering:
            metadata = {"event_type": EMAIL_NOTE_EVENT, "event_payload": {"answering": where.answering}}
        await self._client.chat_postMessage(
            channel=where.channel, thread_ts=where.thread_ts, text=text, metadata=metadata
        )

    async def _already_answered(self, where: Where) -> bool:
        try:
            replies = await self._client.conversations_replies(
                channel=where.channel,
                ts=where.thread_ts,
                oldest=where.answering,  # the note comes after the message it answers
                inclusive=True,
                include_all_metadata=True,
                limit=200,
            )
        except Exception as error:  # an API error, a time-out, a dropped connection
            log.warning("cannot look for an earlier note in %s (%s)", where.thread_ts, type(error).__name__)
            return False  # cannot tell: answering twice beats not answering
        for message in replies.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == EMAIL_NOTE_EVENT and payload.get("answering") == where.answering:
                return True
        return False
