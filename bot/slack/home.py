"""App Home: the user's emails, kept up to date.

Published when the user opens the tab, and again whenever one of their emails changes while they may be
looking (they opened the tab in the last `watch_hours`, as seen by this process): the workflow's card step
calls the notifier's `settled`, which hands the change to `HomeRefresher.changed` here. A user who never
opens the tab costs nothing (a refresh is a search and a describe per listed email); opening it always
publishes it fresh. The listing
comes from the engine's search by owner (Temporal visibility, a moment behind the workflows), each email
described for its current state (an email whose workflow task is busy, the model writing, is shown as last
seen under "Being worked on" after DESCRIBE_SECONDS rather than holding up the tab); the email that just
changed is merged in, so a new one shows at once.
Publishes are coalesced per user, at most one per `interval` seconds, so a busy email cannot flood
views.publish (Slack allows about 10 per user per minute before answering 429s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import EmailEngine, EngineBusy, EngineUnavailable
from bot.slack.card import LABELS, UNDO_ACTION, button, can_send_now, cancel_button, send_now_label, undo_text
from bot.slack.card import SEND_NOW_ACTION as SEND_NOW
from bot.slack.markup import escape, fit, listed
from bot.slack.web_errors import SLACK_CALL_FAILED, reason
from workflows.model import EmailStatus, EmailView, utcnow

log = logging.getLogger(__name__)

MAX_LINKS = 10_000  # thread permalinks remembered (they never change); about 1.5 MB at most
OPEN_THREAD_ACTION = "open_thread"  # a link button: Slack still sends the click, which is only acked
GOING_MAX, WAITING_MAX, RECENT_MAX, BUSY_MAX = 15, 15, 5, 5  # 2 blocks each: under a view's 100 in all
# How long a listing waits for each email's describe (a query, answered only between its workflow tasks): one
# that is running the model is shown as being worked on instead of holding up the tab for seconds.
DESCRIBE_SECONDS = 1.0
START_HINT = (
    "Send me a DM (one thread, one email), open a chat with me from the assistant icon, or use "
    "`/schedule-email` anywhere."
)

Listed = tuple[str, EmailView]
Busy = tuple[str, EmailView | None]  # an email too busy to describe, and how it looked when last seen


def _line(view: EmailView, now: datetime) -> str:
    subject = fit(escape(view.subject), 300) or "_New email_"  # a section holds 3,000 characters
    to = listed(view.to, 600) or "_no recipient yet_"
    if view.status == EmailStatus.SENT:
        return f"*{subject}*  to {to}\n{LABELS[view.status]}" + (
            f" · {view.send_at_local}" if view.send_at_local else ""
        )
    if view.status == EmailStatus.CANCELED:
        return f"*{subject}*  to {to}\n{LABELS[view.status]}"
    plan = undo_text(view, now) if view.undo_until is not None else escape(view.plan)
    return f"*{subject}*  to {to}\n{LABELS[view.status]} · {plan}"


def _email_blocks(email_id: str, view: EmailView, link: str | None, now: datetime) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": _line(view, now)}}]
    elements: list[dict[str, Any]] = []
    if not view.over and view.status != EmailStatus.SENDING:
        if view.undo_until is not None:
            elements.append(button(UNDO_ACTION, "Undo", email_id, "primary"))
        if can_send_now(view):
            elements.append(button(SEND_NOW, send_now_label(view), email_id, "primary"))
        elements.append(cancel_button(email_id))
    if link:
        elements.append({**button(OPEN_THREAD_ACTION, "Open thread", email_id), "url": link})
    if elements:
        blocks.append({"type": "actions", "block_id": f"home-{email_id}"[:255], "elements": elements})
    return blocks


def _busy_blocks(email_id: str, seen: EmailView | None, link: str | None) -> list[dict[str, Any]]:
    """An email whose workflow is in the middle of a step: what it was when last seen, and Cancel (a click is
    answered whatever the email is doing). The tab is published again when the step ends."""
    what = "*An email*"
    if seen is not None:
        subject = fit(escape(seen.subject), 300) or "_New email_"
        what = f"*{subject}*  to {listed(seen.to, 600) or '_no recipient yet_'}"
    text = f"{what}\n{LABELS[EmailStatus.PROCESSING]}: it shows here again as soon as I am done."
    elements = [cancel_button(email_id)]
    if link:
        elements.append({**button(OPEN_THREAD_ACTION, "Open thread", email_id), "url": link})
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": f"home-{email_id}"[:255], "elements": elements},
    ]


def _section(
    title: str, emails: Sequence[Listed], limit: int, links: dict[str, str], now: datetime
) -> list[dict[str, Any]]:
    if not emails:
        return []
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    for email_id, view in emails[:limit]:
        blocks.extend(_email_blocks(email_id, view, links.get(email_id), now))
    if len(emails) > limit:
        more = len(emails) - limit
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {more} more."}]})
    return blocks


def home_view(
    emails: Sequence[Listed],
    links: dict[str, str] | None = None,
    notice: str = "",
    now: datetime | None = None,
    busy: Sequence[Busy] = (),
) -> dict[str, Any]:
    """The Home tab: what goes out (soonest first), what waits for the user, what is being worked on, the last
    few finished. `now` counts the seconds left of an undo window."""
    links, now = links or {}, now or utcnow()
    going = sorted(
        ((i, v) for i, v in emails if v.will_send and not v.over),
        key=lambda item: item[1].send_at or now,
    )
    waiting = [(i, v) for i, v in emails if not v.will_send and not v.over]
    recent = [(i, v) for i, v in emails if v.over]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": "Your emails"}}]
    if notice:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f":warning: {escape(notice)}"}]})
    zone = next((v.timezone for _, v in emails), "")
    intro = START_HINT + (f" Times are in your time zone ({escape(zone)})." if zone else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": intro}]})
    if not emails and not busy:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "No emails yet. Tell me what to write, e.g. "
                    "_thank Bob (bob@example.com) for the demo, in Spanish, send tomorrow at 9am_.",
                },
            }
        )
    blocks += _section("Going out", going, GOING_MAX, links, now)
    blocks += _section("Waiting for you", waiting, WAITING_MAX, links, now)
    if busy:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Being worked on"}})
        for email_id, seen in busy[:BUSY_MAX]:
            blocks.extend(_busy_blocks(email_id, seen, links.get(email_id)))
        if len(busy) > BUSY_MAX:
            more = f"…and {len(busy) - BUSY_MAX} more."
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    blocks += _section("Recently sent or canceled", recent, RECENT_MAX, links, now)
    return {"type": "home", "blocks": blocks}


def unlisted_view(notice: str) -> dict[str, Any]:
    """The Home tab when the emails cannot be listed (the engine out of reach) but a click must be answered."""
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Your emails"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f":warning: {escape(notice)}"}]},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Your emails could not be listed just now: the email service is out of reach. Nothing "
                    "about them changed; open this tab again in a moment.",
                },
            },
        ],
    }


def merged(listed: Sequence[Listed], fresh: dict[str, EmailView]) -> list[Listed]:
    """The search's results (each described just now) plus the emails that just changed and that the search
    does not find yet (visibility lags) or found too busy to describe, newest first."""
    found = {email_id for email_id, _ in listed}
    return [*((i, v) for i, v in fresh.items() if i not in found), *listed]


class HomeRefresher:
    """Publishes users' Home tabs, on open and on change, coalescing changes per user (one publish per
    `interval` at most). Runs on the app's event loop; `changed_threadsafe` is for the card step's thread."""

    def __init__(
        self,
        engine: EmailEngine,
        client: AsyncWebClient,
        interval: float = 1.0,
        limit: int = 30,
        watch_hours: float = 24.0,
    ):
        self._engine = engine
        self._watch_s = watch_hours * 3600
        self._opened: dict[str, float] = {}  # user -> when they last opened the tab (monotonic)
        self._client = client
        self._interval = interval
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._pending: dict[str, dict[str, EmailView]] = {}
        self._last: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._links: dict[tuple[str, str], str] = {}  # (channel, thread ts) -> permalink; they never change
        self._seen: dict[str, EmailView] = {}  # email id -> its last view listed, shown while it is busy

    def changed_threadsafe(self, owner: str, email_id: str, view: EmailView) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: the app is stopping
            self._loop.call_soon_threadsafe(self.changed, owner, email_id, view)

    def changed(self, owner: str, email_id: str, view: EmailView) -> None:
        if time.monotonic() - self._opened.get(owner, float("-inf")) > self._watch_s:
            return  # not looking: the next opening lists it
        self._pending.setdefault(owner, {})[email_id] = view
        if owner not in self._tasks:
            self._tasks[owner] = asyncio.create_task(self._drain(owner))

    async def opened(self, user: str) -> None:
        """The user opened the tab: publish it now, and keep it live on changes for a while."""
        now = time.monotonic()
        self._opened[user] = now
        if len(self._opened) > 10_000:
            self._opened = {u: t for u, t in self._opened.items() if now - t <= self._watch_s}
        await self.publish(user)

    async def publish(self, user: str, notice: str = "") -> None:
        """Now, whatever the throttle says (the user opened the tab, or must be told something)."""
        await self._publish(user, self._pending.pop(user, {}), notice)

    async def _drain(self, user: str) -> None:
        try:
            while self._pending.get(user):
                wait = self._last.get(user, float("-inf")) + self._interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # changes meanwhile join this publish
                try:
                    await self._publish(user, self._pending.pop(user, {}))
                except Exception:  # e.g. Slack out of reach: the next change or opening the tab publishes again
                    log.exception("App Home of %s not refreshed", user)
        finally:
            self._tasks.pop(user, None)

    async def _publish(self, user: str, fresh: dict[str, EmailView], notice: str = "") -> None:
        lock = self._locks.setdefault(user, asyncio.Lock())
        async with lock:  # one at a time per user, so an older listing never lands after a newer one
            self._last[user] = time.monotonic()
            try:
                listing = await self._engine.listing(user, self._limit, DESCRIBE_SECONDS)
            except (EngineBusy, EngineUnavailable) as error:
                log.warning("App Home of %s not refreshed: %s", user, error)
                if not notice:
                    return  # the tab keeps its last listing
                view = unlisted_view(notice)  # the answer to a click on the tab: said, even without a listing
            else:
                emails = merged(listing.emails, fresh)
                shown = {email_id for email_id, _ in emails}
                busy = [(i, self._seen.get(i)) for i in listing.busy if i not in shown]
                self._remember(emails)
                seen = [(i, v) for i, v in busy if v is not None]
                view = home_view(emails, await self._permalinks([*emails, *seen]), notice, busy=busy)
            try:
                await self._client.views_publish(user_id=user, view=view)
            except SLACK_CALL_FAILED as error:
                log.warning("views.publish failed for %s: %s", user, reason(error))
        if len(self._last) > 10_000:  # forget users idle for longer than the throttle cares about
            horizon = time.monotonic() - self._interval
            self._last = {u: t for u, t in self._last.items() if t > horizon}
            self._locks = {u: lk for u, lk in self._locks.items() if lk.locked() or u in self._last}

    def _remember(self, emails: Sequence[Listed]) -> None:
        for email_id, view in emails:
            self._seen.pop(email_id, None)
            self._seen[email_id] = view  # newest last, so the oldest go first
        while len(self._seen) > MAX_LINKS:
            self._seen.pop(next(iter(self._seen)))

    async def _permalinks(self, emails: Sequence[Listed]) -> dict[str, str]:
        threads = {
            email_id: (view.card.channel, view.card.thread_ts)
            for email_id, view in emails
            if view.card is not None and view.card.thread_ts
        }
        missing = list(dict.fromkeys(thread for thread in threads.values() if thread not in self._links))
        found = await asyncio.gather(*(self._permalink(*thread) for thread in missing))
        for thread, link in zip(missing, found, strict=True):
            if link:
                self._links[thread] = link
        links = {email_id: self._links[thread] for email_id, thread in threads.items() if thread in self._links}
        while len(self._links) > MAX_LINKS:  # oldest first; a link dropped is looked up again when listed
            self._links.pop(next(iter(self._links)))
        return links

    async def _permalink(self, channel: str, thread_ts: str) -> str:
        try:
            answer = await self._client.chat_getPermalink(channel=channel, message_ts=thread_ts)
        except SLACK_CALL_FAILED as error:
            log.warning("chat.getPermalink failed for %s: %s", thread_ts, reason(error))
            return ""
        return str(answer.get("permalink") or "")
