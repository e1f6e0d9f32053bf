"""The AI-app surface: Slack's assistant threads, beside the plain DM path.

Each assistant thread is one email, named like any DM thread (`thread_email_id`). Slack creates the thread's
root (subtype `assistant_app_thread`) when the user opens a chat; on `assistant_thread_started` the app
greets and suggests prompts. The user's first message is a reply to that root: it starts the email with
`CardRef(assistant=True)`. From then on the workflow's card step keeps the thread in step with the email
(`follow_thread`, called from the notifier's `settled`): the status says "is writing your email..." while
the assistant works on a request, is cleared once the card shows the result, and the thread's title is the
subject. Set and cleared by the workflow (retried by iWF), never by the event handler, so no crash or race
between the two can leave it spinning (Slack also drops a status after two minutes without a message).

Bolt's AsyncAssistant middleware is not used: it takes every threaded DM message as an assistant message
and acks edits of threaded messages without passing them on, which would break the plain DM path (a reply
to a DM thread, an edit saved as a draft). The plain listeners get Bolt's assistant utilities all the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import AsyncSetSuggestedPrompts
from slack_sdk import WebClient

from bot.slack.markup import escape
from workflows.model import CardRef, EmailStatus, EmailView

ASSISTANT_ROOT = "assistant_app_thread"  # the subtype of an assistant thread's root message
STATUS_WRITING = "is writing your email..."
TITLE_LIMIT = 255
LISTING_QUESTION = "What have I scheduled?"
GREETING = (
    "Hi! Each chat with me is one email. Tell me what to write, to whom and when: I show you the draft on a "
    "card here, and nothing is sent before the time you give (you can still edit, send now or cancel)."
)
PROMPTS = [
    {
        "title": "Thank-you note, send tomorrow 9am",
        "message": "Write a short thank-you note and send it tomorrow at 9am. Ask me who it is for.",
    },
    {"title": "Translate my draft to Japanese", "message": "Translate my draft to Japanese."},
    {"title": LISTING_QUESTION, "message": LISTING_QUESTION},
]


async def greet(post_greeting: Callable[[], Awaitable[None]], set_suggested_prompts: AsyncSetSuggestedPrompts) -> None:
    """assistant_thread_started: the suggested prompts, then a short greeting in the thread. In that order: a
    failure leaves the event unanswered and Slack delivers it again, which sets the prompts again (they replace
    the old) and greets; `post_greeting` looks for its earlier greeting on a re-delivery (the first one may
    have been posted and its ack lost), so the greeting is posted once."""
    await set_suggested_prompts(prompts=PROMPTS, title="Try one of these")
    await post_greeting()


def is_listing_question(text: str) -> bool:
    return " ".join(text.split()).rstrip("?").lower() == LISTING_QUESTION.rstrip("?").lower()


def scheduled_summary(emails: Sequence[tuple[str, EmailView]], busy: int = 0) -> str:
    """The answer to 'What have I scheduled?': the emails going out, soonest first, in the user's zone, and how
    many were too busy to say (in the middle of a step, the model writing perhaps)."""
    going = sorted(
        (v for _, v in emails if v.will_send and not v.over),
        key=lambda v: v.send_at.timestamp() if v.send_at else 0.0,
    )
    emails_word = "email that" if busy == 1 else "emails that"
    if not going:
        working = f", but I am working on {busy} {emails_word} may be" if busy else ""
        return f"Nothing is scheduled right now{working}. Your App Home tab lists all your emails."
    working = f"\nI am also working on {busy} more {emails_word} may be scheduled in a moment." if busy else ""
    lines = [
        f"• *{escape(v.subject) or 'New email'}* to {escape(', '.join(v.to))}: {escape(v.send_at_local or '')}"
        for v in going[:20]
    ]
    more = f"\n…and {len(going) - 20} more." if len(going) > 20 else ""
    return "Scheduled:\n" + "\n".join(lines) + more + working + "\nYour App Home tab lists them all, with buttons."


def follow_thread(client: WebClient, card: CardRef, view: EmailView) -> None:
    """The assistant thread as the card now shows the email: writing, or not, and titled by the subject."""
    writing = view.status == EmailStatus.PROCESSING
    client.assistant_threads_setStatus(
        channel_id=card.channel, thread_ts=card.thread_ts, status=STATUS_WRITING if writing else ""
    )
    if view.subject and not writing:
        client.assistant_threads_setTitle(
            channel_id=card.channel, thread_ts=card.thread_ts, title=view.subject[:TITLE_LIMIT]
        )


def is_assistant_thread(event: dict[str, Any], root: dict[str, Any] | None) -> bool:
    """A reply in a thread whose root Slack made for an assistant chat (or that says it is in one)."""
    return event.get("assistant_thread") is not None or (root or {}).get("subtype") == ASSISTANT_ROOT
