"""Which email a Slack thread is. A DM or assistant thread is named by where it lives, so any replica finds
its workflow without a lookup; a thread the bot opened for a slash command names its email in its root
message's metadata, looked up once."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import EmailNotFound
from bot.slack.card import EMAIL_THREAD_EVENT
from bot.slack.web_errors import SLACK_CALL_FAILED, reason

log = logging.getLogger(__name__)
T = TypeVar("T")

_ID_PART = re.compile(r"[^A-Za-z0-9.]")
REMEMBERED = 10_000  # threads and roots kept per process (oldest forgotten first)


def thread_email_id(team: str, channel: str, thread_ts: str) -> str:
    """One workflow per thread, named by where it lives, so any replica finds it without a lookup."""
    return "slack-" + "-".join(_ID_PART.sub("", part) for part in (team, channel, thread_ts))


def command_key(team: str, user: str, text: str, window: int) -> str:
    """A slash command's key: the same words from the same user in one ten-minute window (see the caller)."""
    return hashlib.sha256(f"{team}\0{user}\0{text}\0{window}".encode()).hexdigest()[:20]


def command_email_id(team: str, key: str) -> str:
    """A slash command's email, named by its team and a key of the command (its thread comes later)."""
    return f"slack-{_ID_PART.sub('', team)}-cmd-{key}"


class RootUnavailable(Exception):
    """conversations.replies failed: whose thread this is cannot be told, so the message waits for Slack to
    deliver it again instead of being answered "no email here" and dropped."""


class ThreadDirectory:
    def __init__(self, client: AsyncWebClient):
        self._client = client
        self._threads: dict[tuple[str, str], str] = {}  # (channel, thread ts) -> email id, bot-opened threads
        self._roots: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, thread ts) -> its root message

    async def run(self, team: str, channel: str, thread_ts: str, call: Callable[[str], Awaitable[T]]) -> T:
        """Runs `call` on the email of a thread: the one named by the thread, or, for a thread the bot
        opened (a slash command), the one named in its root message's metadata (looked up once)."""
        email_id = self._threads.get((channel, thread_ts)) or thread_email_id(team, channel, thread_ts)
        try:
            return await call(email_id)
        except EmailNotFound:
            named = await self._email_named_by_root(channel, thread_ts)
            if named is None or named == email_id:
                raise
        self._threads[(channel, thread_ts)] = named
        while len(self._threads) > REMEMBERED:
            self._threads.pop(next(iter(self._threads)))
        return await call(named)

    async def root_of(self, channel: str, thread_ts: str) -> dict[str, Any] | None:
        """A thread's root message (with its metadata), looked up once: it says whose thread it is."""
        if (channel, thread_ts) in self._roots:
            return self._roots[(channel, thread_ts)]
        try:
            replies = await self._client.conversations_replies(
                channel=channel, ts=thread_ts, limit=1, include_all_metadata=True
            )
        except SLACK_CALL_FAILED as error:
            log.warning("conversations.replies failed for %s: %s", thread_ts, reason(error))
            raise RootUnavailable(thread_ts) from error
        found = [m for m in replies.get("messages") or [] if str(m.get("ts")) == thread_ts]
        if not found:
            return None  # not visible (yet): asked again next time, never remembered as "nobody's"
        root = dict(found[0])
        self._roots[(channel, thread_ts)] = root
        while len(self._roots) > REMEMBERED:
            self._roots.pop(next(iter(self._roots)))
        return root

    async def _email_named_by_root(self, channel: str, thread_ts: str) -> str | None:
        metadata = ((await self.root_of(channel, thread_ts)) or {}).get("metadata") or {}
        if metadata.get("event_type") != EMAIL_THREAD_EVENT:
            return None
        named = metadata.get("event_payload", {}).get("email_id")
        return str(named) if named else None
