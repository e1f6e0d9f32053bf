"""The owner's buttons that need no model: Send now, Undo, Edit (the modal and its submission), on the card
and on the App Home tab.

Each becomes one `Control` for the workflow, which checks that the clicking user owns the email and is the
authority on what happens; its message_id comes from the click (`action_ts`), so Slack delivering a click
again changes nothing twice. An unreachable engine is said to the user and changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import EmailClosed, EmailEngine, EmailNotFound, EngineBusy, EngineUnavailable
from bot.slack.ack_budget import AckBudget
from bot.slack.card import EDIT_ACTION, SEND_NOW_ACTION, UNDO_ACTION
from bot.slack.home import OPEN_THREAD_ACTION, HomeRefresher
from bot.slack.modal import EDIT_CALLBACK, Opened, edit_modal, field_errors, first_field, read_edit
from bot.slack.web_errors import SLACK_CALL_FAILED, reason
from workflows.decisions import Policy, edit_errors
from workflows.model import Control, ControlKind, EmailStatus, utcnow

log = logging.getLogger(__name__)

UNREACHABLE = "I could not reach the email service just now, so nothing changed. Please try again in a moment."
GONE = "I can't find this email any more."
NOT_YOURS = "Only the person who started this email can change it."
BUSY_EDITING = "I am working on this email right now (answering your last message). Click Edit again in a few seconds."
# The modal has no "as soon as the undo window ends" time to offer: saved with its picker empty, the edit would
# quietly put on hold an email the user had just told to go.
SENDING_SOON = "It is about to go out. Press Undo on the card first (it stays unsent), then Edit."
BUSY_SAVING = "I am working on this email right now (answering your last message). Press Save again in a few seconds."
# How long opening the editor waits for the email's describe: views.open must then still use the click's
# trigger_id within its 3 s, whatever SLACK_ACK_SECONDS is set to.
EDIT_DESCRIBE_SECONDS = 1.5


class Replies:
    """Answers the user who clicked: ephemerally beside the card, or on their Home tab (which has no channel)."""

    def __init__(self, engine: EmailEngine, client: AsyncWebClient, home: HomeRefresher, budget: AckBudget):
        self._engine = engine
        self._client = client
        self._home = home
        self.budget = budget

    async def tell(self, body: dict[str, Any], text: str) -> None:
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id")
        if not channel:
            await self._home.publish(user, notice=text)
            return
        # In the card's thread (an assistant chat shows nothing else), not in the DM's main timeline.
        message = body.get("message") or {}
        thread_ts = (body.get("container") or {}).get("thread_ts") or message.get("thread_ts") or message.get("ts")
        try:
            await self._client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
        except SLACK_CALL_FAILED as error:  # the last word of a handler: logged, never a failed listener
            log.warning("could not tell %s %r: %s", user, text[:80], reason(error))

    async def finished(self, email_id: str) -> str:
        """What to say about an email the engine called finished or unknown (describe says which state)."""
        try:
            view = await self._engine.describe(email_id)
        except EmailNotFound:
            return GONE
        except (EngineBusy, EngineUnavailable):
            return UNREACHABLE
        if view.closed and not view.status.is_final:
            return "This email is closed (whether it went out is unknown); nothing changed. Start a new one to send it."
        return f"This email is already {view.status.value}; nothing changed."

    async def control(self, body: dict[str, Any], email_id: str, control: Control) -> None:
        """An owner's control from a click, with the clicker told when nothing changed and why."""
        await self.budget.run(self._control(body, email_id, control), control.kind)

    async def _control(self, body: dict[str, Any], email_id: str, control: Control) -> None:
        try:
            result = await self._engine.control(email_id, control)
        except (EmailClosed, EmailNotFound):
            await self.tell(body, await self.finished(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self.tell(body, UNREACHABLE)
            return
        if not result.ok:
            await self.tell(body, f"Nothing changed: {result.detail}.")


class OwnerControls:
    def __init__(
        self, engine: EmailEngine, client: AsyncWebClient, replies: Replies, policy: Policy, budget: AckBudget
    ):
        self._budget = budget
        self._engine = engine
        self._client = client
        self._replies = replies
        self._policy = policy

    def register(self, app: AsyncApp) -> None:
        app.action(SEND_NOW_ACTION)(self.on_send_now)
        app.action(UNDO_ACTION)(self.on_undo)
        app.action(EDIT_ACTION)(self.on_edit)
        app.action(OPEN_THREAD_ACTION)(self.on_link)
        app.view(EDIT_CALLBACK)(self.on_edit_submitted)

    async def on_link(self, ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the link and still sends the click

    async def on_send_now(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await self._control(body, action, "send_now")

    async def on_undo(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await self._control(body, action, "undo")

    async def _control(self, body: dict[str, Any], action: dict[str, Any], kind: ControlKind) -> None:
        user, email_id = body["user"]["id"], str(action["value"])
        control = Control(kind=kind, actor=user, message_id=f"{kind}:{action.get('action_ts')}")
        await self._replies.control(body, email_id, control)

    # --- the edit modal -----------------------------------------------------------------

    async def on_edit(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Opens the modal with the email as it stands: views.open must use the click's trigger_id within 3 s,
        so this is one describe and one Web API call."""
        await ack()
        user, email_id = body["user"]["id"], str(action["value"])
        try:
            # A describe is a Temporal query, held while the email's workflow task runs (the model, for
            # seconds); the trigger_id is good for 3 s from the click, so this waits for it no longer than that.
            view = await asyncio.wait_for(
                self._engine.describe(email_id), min(self._budget.seconds, EDIT_DESCRIBE_SECONDS)
            )
        except EmailNotFound:
            await self._replies.tell(body, await self._replies.finished(email_id))
            return
        except (EngineBusy, EngineUnavailable):
            await self._replies.tell(body, UNREACHABLE)
            return
        except TimeoutError:
            await self._replies.tell(body, BUSY_EDITING)
            return
        if view.owner and view.owner != user:
            await self._replies.tell(body, NOT_YOURS)
            return
        if view.over or view.status == EmailStatus.SENDING:
            await self._replies.tell(body, f"This email is already {view.status.value}; it can't be edited.")
            return
        if view.undo_until is not None:  # a card from before Send now (the current one shows no Edit then)
            await self._replies.tell(body, SENDING_SOON)
            return
        try:
            await self._client.views_open(trigger_id=body["trigger_id"], view=edit_modal(email_id, view))
        except SLACK_CALL_FAILED as error:  # e.g. expired_trigger_id: the click is older than 3 s
            log.warning("views.open failed for %s: %s", email_id, reason(error))
            await self._replies.tell(body, "The editor could not open in time. Please click Edit again.")

    async def on_edit_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Field errors are answered in the modal (response_action errors, within Slack's 3 s); a valid edit
        goes to the workflow as one control, and the modal closes once the workflow has taken it."""
        user, began = body["user"]["id"], time.monotonic()
        try:
            opened = Opened.load(str(view.get("private_metadata") or ""))
        except (ValueError, KeyError):
            await ack()
            return  # not a modal this app opened
        kept_body: str | None = None
        kept_to: list[str] | None = None
        if opened.keep_body or opened.keep_to:  # fields the modal could not hold: as they are (base_version
            try:  # refuses the edit if they changed since; a describe waits on a busy email, Slack does not)
                current = await asyncio.wait_for(self._engine.describe(opened.email_id), EDIT_DESCRIBE_SECONDS)
            except EmailNotFound:
                await ack(response_action="errors", errors={first_field(opened): GONE})
                return
            except (EngineBusy, EngineUnavailable):
                await ack(response_action="errors", errors={first_field(opened): UNREACHABLE})
                return
            except TimeoutError:
                await ack(response_action="errors", errors={first_field(opened): BUSY_SAVING})
                return
            kept_body = current.body if opened.keep_body else None
            kept_to = current.to if opened.keep_to else None
        edit, errors = read_edit((view.get("state") or {}).get("values") or {}, opened, kept_body, kept_to)
        if edit is not None and not errors:
            errors = edit_errors(edit, timezone=opened.timezone, now=utcnow(), policy=self._policy)
        if edit is None or errors:
            await ack(response_action="errors", errors=field_errors(errors, opened))
            return
        # One modal, one content: a double submit is one edit; a corrected one after a refusal is another.
        digest = hashlib.sha256(f"{view.get('id')}:{edit.model_dump_json()}".encode()).hexdigest()[:24]
        control = Control(kind="edit", edit=edit, actor=user, message_id=f"edit:{digest}")
        closed = False  # the modal was closed before the workflow answered: a problem is told, not shown in it

        async def apply() -> str:
            problem = ""
            try:
                result = await self._engine.control(opened.email_id, control)
                if not result.ok:
                    problem = f"Nothing changed: {result.detail}."
            except (EmailClosed, EmailNotFound):
                problem = await self._replies.finished(opened.email_id)
            except (EngineBusy, EngineUnavailable):
                problem = UNREACHABLE
            if problem and closed:  # said beside the card (a view_submission has no channel of its own)
                where = {"channel": {"id": opened.channel}, "container": {"thread_ts": opened.thread_ts}}
                await self._replies.tell({**body, **where} if opened.channel else body, problem)
            return problem

        applying = asyncio.ensure_future(apply())
        if not await self._budget.within(applying, "edit", spent=time.monotonic() - began):
            closed = True
            await ack()  # Slack's 3 s: the modal closes; the card shows the edit once the workflow takes it
            return
        if problem := applying.result():
            await ack(response_action="errors", errors={first_field(opened): problem})
            return
        await ack()  # closes the modal; the card shows the new revision
