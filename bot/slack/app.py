"""The Slack edge: DM threads become emails, replies become requests, edits become drafts.

Every handler hands the request to the engine (a durable workflow start and RPC) and only then lets
Bolt answer Slack: the model and SMTP run in the workflow, never on Slack's request path. The card
itself is posted and updated by the workflow (NotifyState). `/schedule-email` is bot/slack/command.py;
the card's owner buttons and the edit modal are bot/slack/controls.py; App Home is bot/slack/home.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltRequest
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import AsyncSetSuggestedPrompts
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import EmailClosed, EmailEngine, EmailNotFound, EngineBusy, EngineUnavailable
from bot.slack.ack_budget import AckBudget
from bot.slack.assistant import (
    GREETING,
    greet,
    is_assistant_thread,
    is_listing_question,
    scheduled_summary,
)
from bot.slack.card import (
    APPLY_EDIT_ACTION,
    CANCEL_ACTION,
    CONFIRM_RECIPIENT_ACTION,
    REMOVE_RECIPIENT_ACTION,
)
from bot.slack.command import ScheduleCommand
from bot.slack.controls import NOT_YOURS, UNREACHABLE, OwnerControls, Replies
from bot.slack.home import DESCRIBE_SECONDS, HomeRefresher
from bot.slack.markup import escape
from bot.slack.notes import NO_PROFILE, ThreadNotes, Where, too_long
from bot.slack.threads import RootUnavailable, ThreadDirectory, thread_email_id
from bot.slack.users import ProfileUnavailable, UserCache
from bot.slack.web_errors import ShortRateLimitWaits
from workflows.decisions import Policy
from workflows.model import MAX_REQUEST_CHARS, CancelInput, CardRef, Control, DraftInput, RequestResult, UserRequest

# A message with a file (file_share) is taken for its words; a thread reply also sent to the
# conversation (thread_broadcast) is a thread reply like any other.
TAKEN_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
NO_WORDS = (
    "I can only read the words you type here, and this message has none I can use (a shared or forwarded "
    "message keeps its words out of my reach). Paste the words into a message of your own."
)
FILES_ONLY = (
    "I can only read the words of a message: files are not added to emails. "
    "Tell me in words what to write (and to whom)."
)


NO_EMAIL_HERE = "I don't have an email for this thread. Send me a new message to start one."
NO_ROOT = (
    "I could not look this thread up in Slack just now, so I did not take this message. "
    "Please send it again in a minute."
)
NOT_TAKEN = (
    "I could not reach the email service for several minutes, so this message may not have been taken. "
    "If the card does not show it, please send it again."
)
EDIT_NOT_SAVED = (
    "I could not reach the email service for several minutes, so your edit may not have been saved as the "
    "draft. If the card does not show it, edit the message again or send the words as a new reply."
)
LAST_SLACK_RETRY = 3  # Slack delivers an unanswered event at most three more times


def slack_retry_num(request: AsyncBoltRequest) -> int:
    """Which re-delivery this is (0: the first delivery); Socket Mode's envelopes carry it as the same header."""
    values = request.headers.get("x-slack-retry-num") or []
    return int(values[0]) if values and values[0].isdigit() else 0


def _not_taken_note(error: BaseException) -> str:
    if isinstance(error, ProfileUnavailable):
        return NO_PROFILE
    return NO_ROOT if isinstance(error, RootUnavailable) else NOT_TAKEN


def files_not_attached(names: list[str]) -> str:
    shown = ", ".join(escape(name) for name in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = f"attached file ({shown}) is" if len(names) == 1 else f"attached files ({shown}) are"
    return f"I used the words of your message. The {what} not added to the email: emails go out without attachments."


SHARED_NOT_READ = (
    "I used the words you wrote. The message you shared or forwarded with them is out of my reach: paste the "
    "part I should use into a message of your own."
)


def _own_plain_message(root: dict[str, Any] | None, user: str | None) -> bool:
    """A thread's root that is the user's own message (not the bot's, not a thread the bot opened for an email)."""
    return (
        root is not None
        and user is not None
        and root.get("user") == user
        and not root.get("bot_id")
        and root.get("subtype") in (None, "file_share")
        and not root.get("metadata")
    )


class SlackBot:
    def __init__(
        self, engine: EmailEngine, client: AsyncWebClient, users: UserCache, replies: Replies, budget: AckBudget
    ):
        self._budget = budget
        self._engine = engine
        self._client = client
        self._users = users
        self._replies = replies
        self._notes = ThreadNotes(client)
        self._threads = ThreadDirectory(client)
        # One draft save at a time per message: two saves' unlocked RPCs in flight together could land in either
        # order. Which edit wins is decided by edited_ts (an older edit arriving later is refused, whichever
        # replica and whatever order Slack delivered them in); the lock keeps two from crossing unseen.
        self._saving: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    def register(self, app: AsyncApp) -> None:
        app.event("message")(self.on_message)
        app.event("assistant_thread_started")(self.on_assistant_thread_started)
        app.action(CANCEL_ACTION)(self.on_cancel)
        app.action(APPLY_EDIT_ACTION)(self.on_apply_edit)
        app.action(CONFIRM_RECIPIENT_ACTION)(self.on_recipient)
        app.action(REMOVE_RECIPIENT_ACTION)(self.on_recipient)

    # --- messages -----------------------------------------------------------------

    async def on_message(self, event: dict[str, Any], body: dict[str, Any], request: AsyncBoltRequest) -> None:
        if event.get("channel_type") != "im":
            return
        subtype = event.get("subtype")
        team = str(body.get("team_id") or event.get("team") or "")
        if subtype == "message_changed":
            await self._on_edit(team, event, slack_retry_num(request))
            return
        if subtype not in TAKEN_SUBTYPES or event.get("bot_id") or not event.get("user"):
            return  # joins, deletions, our own card, other bots: nothing to do
        channel, ts, user = event["channel"], event["ts"], event["user"]
        retry = slack_retry_num(request)
        where = Where(channel, str(event.get("thread_ts") or ts), answering=str(ts), retry=retry)
        text = await self._users.plain(event.get("text"))
        files = [str(f.get("name") or f.get("title") or "a file") for f in event.get("files") or []]
        shared = any(a.get("is_share") for a in event.get("attachments") or [] if isinstance(a, dict))
        if not text:  # a file alone, or a shared or forwarded message (its content in attachments)
            await self._notes.say(where, FILES_ONLY if files else NO_WORDS)
            return
        if len(text) > MAX_REQUEST_CHARS:
            await self._notes.say(where, too_long(len(text)))
            return
        user_request = UserRequest(text=text, message_id=f"{channel}:{ts}", actor=user)

        async def hand_off() -> None:
            if where.thread_ts == ts:
                result = await self._start(team, where, user_request, assistant=False)
            else:  # a reply, in a DM thread, a thread the bot opened, or an assistant chat
                result = await self._reply(team, where, user_request, event)
            if result and result.accepted and not result.duplicate:  # once, not on Slack's retries
                if files:
                    await self._notes.say(where, files_not_attached(files))
                if shared:  # "reply to this for me" with a forwarded message: only the comment was read
                    await self._notes.say(where, SHARED_NOT_READ)

        # No early answer here (unlike clicks, bot.slack.ack_budget): an update in flight is dropped if this
        # process dies before the engine took it (tests/engine/test_slack_ack.py), and only a Slack that got
        # no 200 delivers the message again. A reply may so be answered after Slack's 3 s, while the workflow
        # task runs the model: Slack re-delivers it, and the re-delivery is recognised by its message id.
        try:
            await hand_off()
        except (ProfileUnavailable, RootUnavailable, EngineBusy, EngineUnavailable) as error:
            if retry < LAST_SLACK_RETRY:
                raise  # no answer: Slack delivers the message again (in a minute, then five)
            # Slack's last try: say so, never guess, never drop it without a word.
            await self._notes.say(where, _not_taken_note(error))

    async def _start(self, team: str, where: Where, request: UserRequest, assistant: bool) -> RequestResult | None:
        """A new thread: one email, named by the thread, the request carried by its start. 'What have I
        scheduled?' as a thread's first words is answered from the listing instead."""
        user = str(request.actor)
        if is_listing_question(request.text):
            listing = await self._engine.listing(user, wait_seconds=DESCRIBE_SECONDS)
            await self._notes.say(where, scheduled_summary(listing.emails, busy=len(listing.busy)))
            return None
        card = CardRef(channel=where.channel, thread_ts=where.thread_ts, assistant=assistant)
        start = await self._users.start_of(user, card=card, first_request=request)
        if await self._engine.start(thread_email_id(team, where.channel, where.thread_ts), start):
            return RequestResult(accepted=True, detail="received with the start")
        # A re-delivery of a thread's first message: de-duplicated by the request's id.
        return await self._request(team, where, request)

    async def _reply(
        self, team: str, where: Where, request: UserRequest, event: dict[str, Any]
    ) -> RequestResult | None:
        try:
            return await self._request(team, where, request, untracked=False)
        except EmailNotFound:
            pass
        root = await self._threads.root_of(where.channel, where.thread_ts)
        if is_assistant_thread(event, root):
            return await self._start(team, where, request, assistant=True)
        if _own_plain_message(root, request.actor):
            # The thread under one of the user's own messages that started nothing (too long, a file alone, a
            # note that asked them to send it again, "What have I scheduled?"): the reply they were asked for
            # starts the email right here, rather than "I don't have an email for this thread".
            return await self._start(team, where, request, assistant=False)
        await self._notes.say(where, NO_EMAIL_HERE)
        return None

    async def _request(
        self, team: str, where: Where, request: UserRequest, untracked: bool = True
    ) -> RequestResult | None:
        """`untracked`: a thread with no email is answered so; else EmailNotFound is the caller's."""
        try:
            result = await self._threads.run(
                team, where.channel, where.thread_ts, lambda e: self._engine.request(e, request)
            )
        except EmailNotFound:
            if not untracked:
                raise
            await self._notes.say(where, NO_EMAIL_HERE)
            return None
        except EmailClosed:
            await self._notes.say(where, "This email is finished. Send me a new message to start another one.")
            return None
        if not result.accepted:
            await self._notes.say(where, f"I can't take that now: {result.detail}.")
        return result

    async def _on_edit(self, team: str, event: dict[str, Any], retry: int) -> None:
        message = event.get("message") or {}
        if message.get("subtype") not in TAKEN_SUBTYPES:
            # Not the user's new words: Slack retitled an assistant chat (its root, ASSISTANT_ROOT), or the user
            # deleted a message that has replies and Slack left a "tombstone" in its place ("This message was
            # deleted.", from USLACKBOT). An email under it goes on as it was.
            return
        user = message.get("user")
        if not user or message.get("bot_id") or not message.get("text"):
            return
        previous = event.get("previous_message") or {}
        if previous.get("user") not in (None, user):
            return  # someone else's words in place of the user's: never theirs to take
        if str(previous.get("text") or "").strip() == str(message["text"]).strip():
            return  # an unfurl or a reaction, not an edit of the words
        text = await self._users.plain(message["text"])
        if not text:
            return
        thread_ts = str(message.get("thread_ts") or message.get("ts"))
        if len(text) > MAX_REQUEST_CHARS:  # not kept as the draft: the earlier draft stays
            await self._notes.say(Where(event["channel"], thread_ts), too_long(len(text), "edited message"))
            return
        edited_ts = str((message.get("edited") or {}).get("ts") or event.get("event_ts") or event.get("ts") or "")
        draft = DraftInput(text=text, actor=user, edited_ts=edited_ts)
        where = Where(event["channel"], thread_ts, retry=retry)
        key = (str(where.channel), str(message.get("ts")))
        saving = self._saving.setdefault(key, asyncio.Lock())

        try:  # answered once taken, as a message is (see on_message)
            async with saving:
                await self._threads.run(team, where.channel, thread_ts, lambda e: self._engine.save_draft(e, draft))
        except EmailClosed:
            return  # a finished email: an edit of its words changes nothing
        except EmailNotFound:
            if thread_ts == str(message.get("ts")):
                # A message of theirs that started nothing (too long, a file alone, Slack out of reach), now
                # corrected: taken as the message it is now, with that message's id, as if sent so.
                await self._edited_into_a_message(team, where, message, text, user)
            return  # an edit of a reply in a thread without an email changes nothing
        except (EngineBusy, EngineUnavailable, RootUnavailable):
            if retry < LAST_SLACK_RETRY:
                raise  # Slack delivers the edit again
            await self._notes.say(where, EDIT_NOT_SAVED)

    async def _edited_into_a_message(
        self, team: str, where: Where, message: dict[str, Any], text: str, user: str
    ) -> None:
        request = UserRequest(text=text, message_id=f"{where.channel}:{message['ts']}", actor=user)
        started = Where(where.channel, where.thread_ts, answering=str(message["ts"]), retry=where.retry)
        try:
            await self._start(team, started, request, assistant=False)
        except (ProfileUnavailable, RootUnavailable, EngineBusy, EngineUnavailable) as error:
            if where.retry < LAST_SLACK_RETRY:
                raise
            await self._notes.say(started, _not_taken_note(error))

    # --- buttons --------------------------------------------------------------------

    async def on_cancel(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await self._budget.run(self._cancel(body, action), "cancel")

    async def _cancel(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        user, email_id = body["user"]["id"], str(action["value"])
        try:
            result = await self._engine.cancel(email_id, CancelInput(actor=user))
        except (EmailClosed, EmailNotFound):
            await self._replies.tell(body, await self._replies.finished(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self._replies.tell(body, UNREACHABLE)
            return
        if result.already:
            await self._replies.tell(body, "This email is already canceled; nothing changed.")
        elif not result.ok:
            await self._replies.tell(body, f"Not canceled: {result.detail}.")

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
        await self._replies.control(body, email_id, control)

    async def on_apply_edit(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await self._budget.run(self._apply_edit(body, action), "edit request")

    async def _apply_edit(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        user, email_id = body["user"]["id"], str(action["value"])
        try:
            view = await self._engine.describe(email_id)  # an ended email is described from its record
        except EmailNotFound:
            await self._replies.tell(body, await self._replies.finished(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self._replies.tell(body, UNREACHABLE)
            return
        if view.owner and view.owner != user:
            await self._replies.tell(body, NOT_YOURS)
            return
        if not view.draft:
            await self._replies.tell(body, "There is no edit to use any more.")
            return
        thread_ts = str(body["message"].get("thread_ts") or body["message"]["ts"])
        text = f"I edited my request, use this instead: {view.draft}"
        if len(text) > MAX_REQUEST_CHARS:  # a draft at the limit: its own words, without the preamble
            text = view.draft
        # The email's version too: the same words used again after a later change are a new request.
        digest = hashlib.sha256(f"{view.version}:{view.draft}".encode()).hexdigest()[:16]
        request = UserRequest(text=text, message_id=f"edit:{thread_ts}:{digest}", actor=user)
        try:  # to the email the button names (a thread's id would need the right team: Grid, Slack Connect)
            result = await self._engine.request(email_id, request)
        except (EmailClosed, EmailNotFound):
            await self._replies.tell(body, await self._replies.finished(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self._replies.tell(body, UNREACHABLE)
            return
        if not result.accepted:  # a click's answer, like every other button's: to the clicker alone
            await self._replies.tell(body, f"I can't take that now: {result.detail}.")

    # --- assistant threads (AI app surface) --------------------------------------------

    async def on_assistant_thread_started(
        self, event: dict[str, Any], request: AsyncBoltRequest, set_suggested_prompts: AsyncSetSuggestedPrompts
    ) -> None:
        """The user opened a chat with the app: suggested prompts and a greeting. Its email starts with
        their first message (`_reply`), so opening and closing the panel costs no workflow."""
        thread = event["assistant_thread"]
        # A note answering the thread's root: on Slack's re-delivery it is looked for before it is posted again.
        root = str(thread["thread_ts"])
        where = Where(str(thread["channel_id"]), root, answering=root, retry=slack_retry_num(request))
        await greet(lambda: self._notes.say(where, GREETING), set_suggested_prompts)


@dataclass(frozen=True)
class SlackEdge:
    app: AsyncApp
    home: HomeRefresher
    budget: AckBudget


def build_slack_app(
    engine: EmailEngine,
    bot_token: str,
    signing_secret: str | None,
    api_url: str,
    timezone_ttl: int,
    policy: Policy | None = None,
    home_interval: float = 1.0,
    ack_seconds: float = 2.0,
) -> SlackEdge:
    """The Bolt app and its App Home refresher. `policy`: the recipient and size rules the edit modal checks
    (the workflow checks them again)."""
    client = AsyncWebClient(token=bot_token, base_url=api_url)
    client.retry_handlers.append(ShortRateLimitWaits())  # short Retry-Afters only, waited once: 3 s to answer
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "socket-mode-only",
        # A message is acked only once the request is in the workflow (a start, or an RPC that may wait on the
        # workflow task): if this process dies first, Slack gets no 200 and re-delivers, instead of the message
        # being lost after an early ack. Clicks, modal submits and app_home_opened are answered within
        # `ack_seconds` whatever the engine is doing (bot.slack.ack_budget).
        process_before_response=True,
    )
    budget = AckBudget(ack_seconds)
    home = HomeRefresher(engine, client, interval=home_interval)
    replies = Replies(engine, client, home, budget)
    users = UserCache(client, timezone_ttl)
    SlackBot(engine, client, users, replies, budget).register(app)
    ScheduleCommand(engine, users).register(app)
    OwnerControls(engine, client, replies, policy or Policy(), budget).register(app)

    async def on_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab") == "home":
            # Answered within the budget even while an email's task holds its describe (a query) for seconds:
            # the publish goes on, and a lost one costs only a reopened tab.
            await budget.run(home.opened(str(event["user"])), "Home tab")

    app.event("app_home_opened")(on_home_opened)
    return SlackEdge(app, home, budget)
