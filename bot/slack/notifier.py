"""The workflow's card port, implemented with Slack's Web API (sync: it runs in a worker thread)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from slack_sdk import WebClient

from bot.slack.assistant import follow_thread
from bot.slack.card import EMAIL_CARD_EVENT, EMAIL_THREAD_EVENT, fallback_text, render
from bot.slack.web_errors import ShortRateLimitWaitsInSteps
from workflows.model import CardRef, EmailView

log = logging.getLogger(__name__)

# (owner, email id, view): one of the owner's emails changed (the App Home refresher's `changed_threadsafe`).
OnChange = Callable[[str, str, EmailView], None]


class SlackCardNotifier:
    """Errors (a 429 after one short Retry-After wait, or at once for a longer one; 5xx, network) propagate: the
    iWF server retries the state, which then looks for its card before posting one."""

    def __init__(self, token: str, base_url: str, on_change: OnChange | None = None):
        self._client = WebClient(token=token, base_url=base_url, timeout=10)
        self._client.retry_handlers.append(ShortRateLimitWaitsInSteps(max_retry_count=1))
        self.on_change = on_change
        self._posted = threading.local()  # the card this thread just posted, in this state execution

    def post_root(self, card: CardRef, email_id: str, retry: bool = False) -> tuple[str, str]:
        """Posting to a user id opens (or reuses) the app's DM with them. The email's id travels in the
        message's metadata, so a reply in this thread finds its workflow, and a retry finds the root an
        attempt whose answer was lost posted (a second one would leave an empty thread behind)."""
        if retry and (found := self._root_in_dm(card.channel, email_id)) is not None:
            return found
        response = self._client.chat_postMessage(
            channel=card.channel,
            text=card.root_text or "New email",
            metadata={"event_type": EMAIL_THREAD_EVENT, "event_payload": {"email_id": email_id}},
        )
        return str(response["channel"]), str(response["ts"])

    def post(self, card: CardRef, email_id: str, view: EmailView, retry: bool = False) -> str:
        """On a retry the card may be there already (posted by an attempt whose answer was lost, perhaps in a
        process that died): it is found by its metadata and brought up to date instead of posted twice."""
        if retry and (found := self._card_in_thread(card, email_id)) is not None:
            self.update(card.model_copy(update={"ts": found}), email_id, view)
            return found
        response = self._client.chat_postMessage(
            channel=card.channel,
            thread_ts=card.thread_ts,
            text=fallback_text(view),
            blocks=render(email_id, view),
            metadata={"event_type": EMAIL_CARD_EVENT, "event_payload": {"email_id": email_id}},
        )
        self._posted.email_id = email_id
        return str(response["ts"])

    def _root_in_dm(self, channel: str, email_id: str) -> tuple[str, str] | None:
        if channel.startswith(("U", "W")):  # a user: their DM with the app (im:write), as posting opens it
            channel = str(self._client.conversations_open(users=channel)["channel"]["id"])
        history = self._client.conversations_history(channel=channel, include_all_metadata=True, limit=100)
        for message in history.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == EMAIL_THREAD_EVENT and payload.get("email_id") == email_id:
                return channel, str(message["ts"])
        return None

    def _card_in_thread(self, card: CardRef, email_id: str) -> str | None:
        replies = self._client.conversations_replies(
            channel=card.channel, ts=str(card.thread_ts), include_all_metadata=True, limit=100
        )
        for message in replies.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == EMAIL_CARD_EVENT and payload.get("email_id") == email_id:
                return str(message["ts"])
        return None

    def update(self, card: CardRef, email_id: str, view: EmailView) -> None:
        self._client.chat_update(
            channel=card.channel, ts=card.ts, text=fallback_text(view), blocks=render(email_id, view)
        )

    def settled(self, card: CardRef, email_id: str, view: EmailView) -> None:
        """After the card: an assistant thread's status and title, then the owner's App Home (queued, it
        publishes on the app's loop). A failure right after the card's first post is only logged: raising
        would make iWF run the step again, and the card (whose ts is recorded only by a successful step) would
        be posted twice; the status then clears by itself within two minutes, and the next step sets it."""
        just_posted = getattr(self._posted, "email_id", None) == email_id
        self._posted.email_id = None
        if card.assistant and card.thread_ts:
            try:
                follow_thread(self._client, card, view)
            except Exception:
                if not just_posted:
                    raise
                log.warning("assistant thread of %s not updated after its card was posted", email_id, exc_info=True)
        if view.owner and self.on_change is not None:
            self.on_change(view.owner, email_id, view)
