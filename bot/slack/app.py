"""The Slack edge: DM threads become emails, replies become requests, edits become drafts.

Every handler hands the request to the engine (a durable workflow start and RPC) and only then lets
Bolt answer Slack: the model and SMTP run in the workflow, never on Slack's request path. The card
itself is posted and updated by the workflow (NotifyState).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import EmailClosed, EmailEngine, EmailNotFound
from bot.slack.card import APPLY_EDIT_ACTION, CANCEL_ACTION
from bot.slack.markup import escape, mentioned_users, to_plain
from workflows.model import CancelInput, CardRef, DraftInput, RequestResult, StartInput, UserRequest
from workflows.sendtime import is_valid_timezone

log = logging.getLogger(__name__)

USAGE = (
    "Tell me what to write, e.g. `/schedule-email thank Bob (bob@example.com) for the demo, "
    "in Spanish, send tomorrow at 9am`. I will open a thread in our DM for it."
)
_ID_PART = re.compile(r"[^A-Za-z0-9.]")
# A message with a file (file_share) is taken for its words; a thread reply also sent to the
# conversation (thread_broadcast) is a thread reply like any other.
TAKEN_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
MAX_NAME_LOOKUPS = 5  # users.info calls per message for mentions; the rest stay @U123
FILES_ONLY = (
    "I can only read the words of a message: files are not added to emails. "
    "Tell me in words what to write (and to whom)."
)


def files_not_attached(names: list[str]) -> str:
    shown = ", ".join(escape(name) for name in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = f"attached file ({shown}) is" if len(names) == 1 else f"attached files ({shown}) are"
    return f"I used the words of your message. The {what} not added to the email: emails go out without attachments."


def thread_email_id(team: str, channel: str, thread_ts: str) -> str:
    """One workflow per thread, named by where it lives, so any replica finds it without a lookup."""
    return "slack-" + "-".join(_ID_PART.sub("", part) for part in (team, channel, thread_ts))


@dataclass(frozen=True)
class Profile:
    zone: str
    name: str


@dataclass
class UserCache:
    """users.info is rate-limited (tier 4); a user's zone and name rarely change, so one call serves both."""

    client: AsyncWebClient
    ttl_seconds: int
    _entries: dict[str, tuple[Profile, float]] = field(default_factory=dict)

    async def zone_of(self, user: str) -> str:
        profile = await self._profile(user)
        return profile.zone if profile else "UTC"

    async def name_of(self, user: str) -> str:
        profile = await self._profile(user)
        return profile.name if profile else ""

    async def _profile(self, user: str) -> Profile | None:
        cached = self._entries.get(user)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        try:
            info = (await self.client.users_info(user=user))["user"]
        except SlackApiError as error:
            log.warning("users.info failed for %s: %s; using UTC", user, error.response.get("error"))
            return None  # not cached: try again next time
        zone = str(info.get("tz") or "UTC")
        details = info.get("profile") or {}
        name = details.get("display_name") or details.get("real_name") or info.get("real_name") or info.get("name")
        profile = Profile(zone=zone if is_valid_timezone(zone) else "UTC", name=str(name or ""))
        self._entries[user] = (profile, time.monotonic() + self.ttl_seconds)
        return profile


class SlackBot:
    def __init__(self, engine: EmailEngine, client: AsyncWebClient, users: UserCache):
        self._engine = engine
        self._client = client
        self._users = users

    def register(self, app: AsyncApp) -> None:
        app.event("message")(self.on_message)
        app.event("app_home_opened")(self.on_home_opened)
        app.command("/schedule-email")(self.on_schedule_command)
        app.action(CANCEL_ACTION)(self.on_cancel)
        app.action(APPLY_EDIT_ACTION)(self.on_apply_edit)

    # --- messages -----------------------------------------------------------------

    async def on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("channel_type") != "im":
            return
        subtype = event.get("subtype")
        team = str(body.get("team_id") or event.get("team") or "")
        if subtype == "message_changed":
            await self._on_edit(team, event)
            return
        if subtype not in TAKEN_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return  # joins, deletions, our own card, other bots: nothing to do
        channel, ts, user = event["channel"], event["ts"], event["user"]
        thread_ts = event.get("thread_ts") or ts
        text = await self._plain(event.get("text"))
        files = [str(f.get("name") or f.get("title") or "a file") for f in event.get("files") or []]
        if not text:
            if files:
                await self._say(channel, thread_ts, FILES_ONLY)
            return
        email_id = thread_email_id(team, channel, thread_ts)
        if thread_ts == ts:
            zone = await self._users.zone_of(user)
            card = CardRef(channel=channel, thread_ts=ts)
            await self._engine.start(email_id, StartInput(timezone=zone, owner=user, card=card))
        result = await self._request(email_id, channel, thread_ts, user, text, message_id=f"{channel}:{ts}")
        if files and result and result.accepted and not result.duplicate:  # once, not again on Slack's retries
            await self._say(channel, thread_ts, files_not_attached(files))

    async def _plain(self, text: object) -> str:
        """The words as the user typed them, mentions by name (a few users.info calls, cached)."""
        encoded = str(text or "")
        mentioned = mentioned_users(encoded)[:MAX_NAME_LOOKUPS]
        names = {user: await self._users.name_of(user) for user in mentioned}
        return to_plain(encoded, names).strip()

    async def _request(
        self, email_id: str, channel: str, thread_ts: str, user: str, text: str, message_id: str
    ) -> RequestResult | None:
        try:
            result = await self._engine.request(email_id, UserRequest(text=text, message_id=message_id, actor=user))
        except EmailNotFound:
            await self._say(
                channel,
                thread_ts,
                "I don't have an email for this thread. Send me a new message to start one.",
            )
            return None
        except EmailClosed:
            await self._say(channel, thread_ts, "This email is finished. Send me a new message to start another one.")
            return None
        if not result.accepted:
            await self._say(channel, thread_ts, f"I can't take that now: {result.detail}.")
        return result

    async def _on_edit(self, team: str, event: dict[str, Any]) -> None:
        message = event.get("message") or {}
        user = message.get("user")
        if not user or message.get("bot_id") or not message.get("text"):
            return
        previous = event.get("previous_message") or {}
        if str(previous.get("text") or "").strip() == str(message["text"]).strip():
            return  # an unfurl or a reaction, not an edit of the words
        text = await self._plain(message["text"])
        if not text:
            return
        thread_ts = message.get("thread_ts") or message.get("ts")
        email_id = thread_email_id(team, event["channel"], str(thread_ts))
        try:
            await self._engine.save_draft(email_id, DraftInput(text=text, actor=user))
        except (EmailNotFound, EmailClosed):
            return  # an edit in an untracked or finished thread changes nothing

    async def _say(self, channel: str, thread_ts: str, text: str) -> None:
        await self._client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)

    # --- slash command -------------------------------------------------------------

    async def on_schedule_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        # With should_escape false (manifest.yml) Slack still sends &, < and > as entities, and may send
        # tokens typed or pasted as such; the same decoding as for messages applies.
        text = await self._plain(command.get("text"))
        if not text:
            await ack(response_type="ephemeral", text=USAGE)
            return
        await ack()
        user, team = command["user_id"], command["team_id"]
        dm = await self._client.conversations_open(users=user)
        channel = dm["channel"]["id"]
        root = await self._client.chat_postMessage(channel=channel, text=f":email: New email: {escape(text)}")
        thread_ts = str(root["ts"])
        email_id = thread_email_id(team, channel, thread_ts)
        zone = await self._users.zone_of(user)
        await self._engine.start(
            email_id,
            StartInput(timezone=zone, owner=user, card=CardRef(channel=channel, thread_ts=thread_ts)),
        )
        await self._request(email_id, channel, thread_ts, user, text, message_id=f"{channel}:{thread_ts}")
        link = await self._client.chat_getPermalink(channel=channel, message_ts=thread_ts)
        await respond(response_type="ephemeral", text=f"On it: <{link['permalink']}|your email's thread>.")

    # --- buttons --------------------------------------------------------------------

    async def on_cancel(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, email_id = body["user"]["id"], str(action["value"])
        try:
            result = await self._engine.cancel(email_id, CancelInput(actor=user))
        except (EmailClosed, EmailNotFound):
            await self._ephemeral(body, await self._finished_text(email_id))
            return
        if result.already:
            await self._ephemeral(body, "This email is already canceled; nothing changed.")
        elif not result.ok:
            await self._ephemeral(body, f"Not canceled: {result.detail}.")

    async def on_apply_edit(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, email_id = body["user"]["id"], str(action["value"])
        try:
            view = await self._engine.describe(email_id)
        except (EmailClosed, EmailNotFound):
            await self._ephemeral(body, await self._finished_text(email_id))
            return
        if view.owner and view.owner != user:
            await self._ephemeral(body, "Only the person who started this email can change it.")
            return
        if not view.draft:
            await self._ephemeral(body, "There is no edit to use any more.")
            return
        channel = body["channel"]["id"]
        thread_ts = str(body["message"].get("thread_ts") or body["message"]["ts"])
        text = f"I edited my request, use this instead: {view.draft}"
        digest = hashlib.sha256(view.draft.encode()).hexdigest()[:16]
        await self._request(email_id, channel, thread_ts, user, text, message_id=f"edit:{thread_ts}:{digest}")

    async def _finished_text(self, email_id: str) -> str:
        try:
            view = await self._engine.describe(email_id)
        except EmailNotFound:
            return "I can't find this email any more."
        return f"This email is already {view.status.value}; nothing changed."

    async def _ephemeral(self, body: dict[str, Any], text: str) -> None:
        await self._client.chat_postEphemeral(channel=body["channel"]["id"], user=body["user"]["id"], text=text)

    # --- home -----------------------------------------------------------------------

    async def on_home_opened(self, event: dict[str, Any]) -> None:
        if event.get("tab") != "home":
            return
        await self._client.views_publish(
            user_id=event["user"],
            view={
                "type": "home",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "Your email assistant"}},
                    {
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": "Send me a DM: one thread, one email. " + USAGE},
                    },
                ],
            },
        )


def build_slack_app(
    engine: EmailEngine, bot_token: str, signing_secret: str | None, api_url: str, timezone_ttl: int
) -> AsyncApp:
    client = AsyncWebClient(token=bot_token, base_url=api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))  # honours Retry-After
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "socket-mode-only",
        # Ack only once the request is in the workflow (a start and an RPC, ~0.1 s): if this process dies
        # first, Slack gets no 200 and re-delivers, instead of the message being lost after an early ack.
        # The model and SMTP still never run here; they run in the workflow.
        process_before_response=True,
    )
    SlackBot(engine, client, UserCache(client, timezone_ttl)).register(app)
    return app
