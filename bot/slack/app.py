"""The Slack edge: DM threads become emails, replies become requests, edits become drafts.

Every handler hands the request to the engine (a durable workflow start and RPC) and only then lets
Bolt answer Slack: the model and SMTP run in the workflow, never on Slack's request path. The card
itself is posted and updated by the workflow (NotifyState).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import EmailClosed, EmailEngine, EmailNotFound, EngineBusy, EngineUnavailable
from bot.slack.card import (
    APPLY_EDIT_ACTION,
    CANCEL_ACTION,
    CONFIRM_RECIPIENT_ACTION,
    EMAIL_THREAD_EVENT,
    REMOVE_RECIPIENT_ACTION,
)
from bot.slack.markup import escape, mentioned_users, to_plain
from workflows.model import CancelInput, CardRef, Control, DraftInput, RequestResult, StartInput, UserRequest
from workflows.recipients import RecipientError, normalize
from workflows.sendtime import is_valid_timezone

log = logging.getLogger(__name__)
T = TypeVar("T")

USAGE = (
    "Tell me what to write, e.g. `/schedule-email thank Bob (bob@example.com) for the demo, "
    "in Spanish, send tomorrow at 9am`. I will open a thread in our DM for it."
)
UNREACHABLE = "I could not reach the email service just now, so nothing changed. Please try again in a moment."
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


def _one_address(text: str) -> bool:
    try:
        normalize([text])
    except RecipientError:
        return False
    return True


def thread_email_id(team: str, channel: str, thread_ts: str) -> str:
    """One workflow per thread, named by where it lives, so any replica finds it without a lookup."""
    return "slack-" + "-".join(_ID_PART.sub("", part) for part in (team, channel, thread_ts))


@dataclass(frozen=True)
class Profile:
    zone: str
    name: str
    real_name: str = ""  # for From: "Alice Example (via email-agent)"
    email: str = ""  # profile.email (scope users:read.email): replies to the emails they ask for go there


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

    async def start_of(self, user: str, **fields: Any) -> StartInput:
        """What a new email of this user starts with: their zone, their name and address for the sender."""
        profile = await self._profile(user)
        if profile is None:
            return StartInput(timezone="UTC", owner=user, **fields)
        return StartInput(
            timezone=profile.zone,
            owner=user,
            owner_name=profile.real_name or profile.name or None,
            owner_email=profile.email or None,
            **fields,
        )

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
        real_name = details.get("real_name") or info.get("real_name") or ""
        email = str(details.get("email") or "")
        profile = Profile(
            zone=zone if is_valid_timezone(zone) else "UTC",
            name=str(name or ""),
            real_name=str(real_name),
            email=email if _one_address(email) else "",
        )
        self._entries[user] = (profile, time.monotonic() + self.ttl_seconds)
        return profile


class SlackBot:
    def __init__(self, engine: EmailEngine, client: AsyncWebClient, users: UserCache):
        self._engine = engine
        self._client = client
        self._users = users
        self._threads: dict[tuple[str, str], str] = {}  # (channel, thread ts) -> email id, bot-opened threads

    def register(self, app: AsyncApp) -> None:
        app.event("message")(self.on_message)
        app.event("app_home_opened")(self.on_home_opened)
        app.command("/schedule-email")(self.on_schedule_command)
        app.action(CANCEL_ACTION)(self.on_cancel)
        app.action(APPLY_EDIT_ACTION)(self.on_apply_edit)
        app.action(CONFIRM_RECIPIENT_ACTION)(self.on_recipient)
        app.action(REMOVE_RECIPIENT_ACTION)(self.on_recipient)

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
        thread_ts = str(event.get("thread_ts") or ts)
        text = await self._plain(event.get("text"))
        files = [str(f.get("name") or f.get("title") or "a file") for f in event.get("files") or []]
        if not text:
            if files:
                await self._say(channel, thread_ts, FILES_ONLY)
            return
        request = UserRequest(text=text, message_id=f"{channel}:{ts}", actor=user)
        result: RequestResult | None = None
        if thread_ts == ts:
            card = CardRef(channel=channel, thread_ts=ts)
            start = await self._users.start_of(user, card=card, first_request=request)
            if await self._engine.start(thread_email_id(team, channel, ts), start):
                result = RequestResult(accepted=True, detail="received with the start")
        if result is None:  # a reply, or a re-delivery of a thread's first message (de-duplicated)
            result = await self._request(team, channel, thread_ts, request)
        if files and result and result.accepted and not result.duplicate:  # once, not again on Slack's retries
            await self._say(channel, thread_ts, files_not_attached(files))

    async def _plain(self, text: object) -> str:
        """The words as the user typed them, mentions by name (a few users.info calls, cached)."""
        encoded = str(text or "")
        mentioned = mentioned_users(encoded)[:MAX_NAME_LOOKUPS]
        names = {user: await self._users.name_of(user) for user in mentioned}
        return to_plain(encoded, names).strip()

    async def _request(self, team: str, channel: str, thread_ts: str, request: UserRequest) -> RequestResult | None:
        try:
            result = await self._in_thread(team, channel, thread_ts, lambda e: self._engine.request(e, request))
        except EmailNotFound:
            await self._say(
                channel, thread_ts, "I don't have an email for this thread. Send me a new message to start one."
            )
            return None
        except EmailClosed:
            await self._say(channel, thread_ts, "This email is finished. Send me a new message to start another one.")
            return None
        if not result.accepted:
            await self._say(channel, thread_ts, f"I can't take that now: {result.detail}.")
        return result

    async def _in_thread(self, team: str, channel: str, thread_ts: str, call: Callable[[str], Awaitable[T]]) -> T:
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
        while len(self._threads) > 10_000:
            self._threads.pop(next(iter(self._threads)))
        return await call(named)

    async def _email_named_by_root(self, channel: str, thread_ts: str) -> str | None:
        try:
            replies = await self._client.conversations_replies(
                channel=channel, ts=thread_ts, limit=1, include_all_metadata=True
            )
        except SlackApiError as error:
            log.warning("conversations.replies failed for %s: %s", thread_ts, error.response.get("error"))
            return None
        messages = replies.get("messages") or []
        metadata = (messages[0].get("metadata") or {}) if messages else {}
        if metadata.get("event_type") != EMAIL_THREAD_EVENT:
            return None
        named = metadata.get("event_payload", {}).get("email_id")
        return str(named) if named else None

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
        thread_ts = str(message.get("thread_ts") or message.get("ts"))
        draft = DraftInput(text=text, actor=user)
        try:
            await self._in_thread(team, event["channel"], thread_ts, lambda e: self._engine.save_draft(e, draft))
        except (EmailNotFound, EmailClosed):
            return  # an edit in an untracked or finished thread changes nothing

    async def _say(self, channel: str, thread_ts: str, text: str) -> None:
        await self._client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)

    # --- slash command -------------------------------------------------------------

    async def on_schedule_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        """Acks after one durable step (the workflow's start, which carries the request), well under Slack's
        3 s: Slack never retries a slash command, so nothing may be lost after the ack. The workflow then
        opens the DM thread and posts the card itself."""
        # With should_escape false (manifest.yml) Slack still sends &, < and > as entities, and may send
        # tokens typed or pasted as such; the same decoding as for messages applies.
        text = await self._plain(command.get("text"))
        if not text:
            await ack(response_type="ephemeral", text=USAGE)
            return
        user, team = command["user_id"], command["team_id"]
        trigger = hashlib.sha256(str(command.get("trigger_id") or time.time_ns()).encode()).hexdigest()[:20]
        email_id = f"slack-{_ID_PART.sub('', team)}-cmd-{trigger}"
        request = UserRequest(text=text, message_id=f"cmd:{trigger}", actor=user)
        card = CardRef(channel=user, root_text=f":email: New email: {escape(text)}")
        await self._engine.start(email_id, await self._users.start_of(user, card=card, first_request=request))
        await ack(response_type="ephemeral", text="On it: I am opening a thread for this email in our DM.")

    # --- buttons --------------------------------------------------------------------

    async def on_cancel(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, email_id = body["user"]["id"], str(action["value"])
        try:
            result = await self._engine.cancel(email_id, CancelInput(actor=user))
        except (EmailClosed, EmailNotFound):
            await self._ephemeral(body, await self._finished_text(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self._ephemeral(body, UNREACHABLE)
            return
        if result.already:
            await self._ephemeral(body, "This email is already canceled; nothing changed.")
        elif not result.ok:
            await self._ephemeral(body, f"Not canceled: {result.detail}.")

    async def on_recipient(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Confirm or Remove on a recipient the model proposed: the owner's decision, queued like a request."""
        await ack()
        user = body["user"]["id"]
        try:
            choice = json.loads(str(action["value"]))
            email_id, address = str(choice["email_id"]), str(choice["address"])
        except (ValueError, KeyError, TypeError):
            return  # not a value this app made
        kind = "confirm_recipient" if action["action_id"] == CONFIRM_RECIPIENT_ACTION else "remove_recipient"
        control = Control(kind=kind, address=address, actor=user, message_id=f"{kind}:{action.get('action_ts')}")
        try:
            result = await self._engine.control(email_id, control)
        except (EmailClosed, EmailNotFound):
            await self._ephemeral(body, await self._finished_text(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self._ephemeral(body, UNREACHABLE)
            return
        if not result.ok:
            await self._ephemeral(body, f"Nothing changed: {result.detail}.")

    async def on_apply_edit(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, email_id = body["user"]["id"], str(action["value"])
        try:
            view = await self._engine.describe(email_id)
        except (EmailClosed, EmailNotFound):
            await self._ephemeral(body, await self._finished_text(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self._ephemeral(body, UNREACHABLE)
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
        request = UserRequest(text=text, message_id=f"edit:{thread_ts}:{digest}", actor=user)
        try:
            await self._request(str(body.get("team", {}).get("id") or ""), channel, thread_ts, request)
        except (EngineBusy, EngineUnavailable):
            await self._ephemeral(body, UNREACHABLE)

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
