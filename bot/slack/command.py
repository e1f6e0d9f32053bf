"""`/schedule-email`: a new email from anywhere in Slack, in its own DM thread.

Slack never retries a slash command, so the answer comes after one durable step (the workflow's start,
which carries the request) and the workflow opens the thread and posts the card itself. A user whose
command timed out on Slack's side types it again: the same words within ten minutes make one email.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.engine import EmailEngine, EmailNotFound, EngineBusy, EngineUnavailable
from bot.slack.markup import escape
from bot.slack.notes import NO_PROFILE, too_long
from bot.slack.threads import command_email_id, command_key
from bot.slack.users import ProfileUnavailable, UserCache
from workflows.model import MAX_REQUEST_CHARS, CardRef, UserRequest

USAGE = (
    "Tell me what to write, e.g. `/schedule-email thank Bob (bob@example.com) for the demo, "
    "in Spanish, send tomorrow at 9am`. I will open a thread in our DM for it."
)
COMMAND_REPEAT_SECONDS = 600
COMMAND_DESCRIBE_SECONDS = 1.0
COMMAND_UNREACHABLE = (
    "I could not reach the email service just now, so I did not start this email. "
    "Please run the command again in a moment."
)
COMMAND_REPEATED = (
    "You sent me these same words a moment ago: that email is already under way in its thread in our DM. "
    "Reply there to change it."
)


class ScheduleCommand:
    def __init__(self, engine: EmailEngine, users: UserCache):
        self._engine = engine
        self._users = users

    def register(self, app: AsyncApp) -> None:
        app.command("/schedule-email")(self.on_schedule_command)

    async def on_schedule_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        """Acks after one durable step (the workflow's start, which carries the request), well under Slack's
        3 s: Slack never retries a slash command, so nothing may be lost after the ack. The workflow then
        opens the DM thread and posts the card itself."""
        # With should_escape false (manifest.yml) Slack still sends &, < and > as entities, and may send
        # tokens typed or pasted as such; the same decoding as for messages applies.
        text = await self._users.plain(command.get("text"))
        if not text:
            await ack(response_type="ephemeral", text=USAGE)
            return
        if len(text) > MAX_REQUEST_CHARS:
            await ack(response_type="ephemeral", text=too_long(len(text), "command"))
            return
        user, team = command["user_id"], command["team_id"]
        # Slack never retries a command, but a user whose command timed out on Slack's side types it again:
        # the same words from the same user within ten minutes name the same email, so that makes one. Ids
        # are per ten-minute window; the previous window's email counts too while it is younger than that.
        now = time.time()
        window = int(now // COMMAND_REPEAT_SECONDS)

        key = command_key(team, user, text, window)
        email_id = command_email_id(team, key)
        earlier = command_email_id(team, command_key(team, user, text, window - 1))
        try:
            if await self._started_since(earlier, now - COMMAND_REPEAT_SECONDS):
                await ack(response_type="ephemeral", text=await self._repeated(earlier))
                return
        except (EngineBusy, EngineUnavailable):
            await ack(response_type="ephemeral", text=COMMAND_UNREACHABLE)
            return
        request = UserRequest(text=text, message_id=f"cmd:{key}", actor=user)
        card = CardRef(channel=user, root_text=f":email: New email: {escape(text)}")
        try:
            start = await self._users.start_of(user, card=card, first_request=request)
        except ProfileUnavailable:
            await ack(response_type="ephemeral", text=NO_PROFILE)  # nothing started: the user runs it again
            return
        try:
            started = await self._engine.start(email_id, start)
        except (EngineBusy, EngineUnavailable):
            await ack(response_type="ephemeral", text=COMMAND_UNREACHABLE)
            return
        if not started:
            await ack(response_type="ephemeral", text=await self._repeated(email_id))
            return
        await ack(response_type="ephemeral", text="On it: I am opening a thread for this email in our DM.")

    async def _started_since(self, email_id: str, since: float) -> bool:
        """Whether this command's email exists and was asked for after `since` (a Unix time)."""
        try:
            # A describe is a Temporal query, held while the email's workflow task runs (the model, for
            # seconds): not waited for past a second, as the command's answer must reach Slack within 3 s.
            view = await asyncio.wait_for(self._engine.describe(email_id), COMMAND_DESCRIBE_SECONDS)
        except EmailNotFound:
            return False
        except TimeoutError:
            # Not known: the engine is out of reach (the start will say so) or that email is busy. Going on
            # with this window's start loses nothing; at worst a repeat across a ten-minute mark, typed while
            # the first email's model call runs, makes a second email.
            return False
        return bool(view.conversation) and view.conversation[0].at.timestamp() > since

    async def _repeated(self, email_id: str) -> str:
        """The truthful answer to the same words again: under way, or already sent or canceled."""
        try:
            view = await asyncio.wait_for(self._engine.describe(email_id), COMMAND_DESCRIBE_SECONDS)
        except (EmailNotFound, EngineBusy, EngineUnavailable, TimeoutError):
            return COMMAND_REPEATED
        if view.over:
            # Its thread takes nothing more (the email is finished): only new words make a new email.
            return (
                f"You sent me these same words a few minutes ago, and that email is already {view.status.value}, "
                "so I did not start another (the same words within ten minutes are taken as the same command). "
                "To send it again, change the words a little, or send them to me as a new message in our DM."
            )
        return COMMAND_REPEATED
