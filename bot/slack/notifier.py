"""The workflow's card port, implemented with Slack's Web API (sync: it runs in a worker thread)."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.slack.card import EMAIL_THREAD_EVENT, fallback_text, render
from workflows.model import CardRef, EmailView


class SlackCardNotifier:
    """Errors (429 after one Retry-After wait, 5xx, network) propagate: the iWF server retries the state."""

    def __init__(self, token: str, base_url: str):
        self._client = WebClient(token=token, base_url=base_url, timeout=10)
        self._client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))

    def post_root(self, card: CardRef, email_id: str) -> tuple[str, str]:
        """Posting to a user id opens (or reuses) the app's DM with them. The email's id travels in the
        message's metadata, so a reply in this thread finds its workflow."""
        response = self._client.chat_postMessage(
            channel=card.channel,
            text=card.root_text or "New email",
            metadata={"event_type": EMAIL_THREAD_EVENT, "event_payload": {"email_id": email_id}},
        )
        return str(response["channel"]), str(response["ts"])

    def post(self, card: CardRef, email_id: str, view: EmailView) -> str:
        response = self._client.chat_postMessage(
            channel=card.channel,
            thread_ts=card.thread_ts,
            text=fallback_text(view),
            blocks=render(email_id, view),
        )
        return str(response["ts"])

    def settled(self, card: CardRef, email_id: str, view: EmailView) -> None:
        """Nothing follows the card yet."""

    def update(self, card: CardRef, email_id: str, view: EmailView) -> None:
        self._client.chat_update(
            channel=card.channel, ts=card.ts, text=fallback_text(view), blocks=render(email_id, view)
        )
