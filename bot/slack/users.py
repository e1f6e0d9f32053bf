"""Who a Slack user is, for their emails: time zone, name and address from users.info, cached."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.markup import mentioned_users, to_plain
from bot.slack.web_errors import SLACK_CALL_FAILED, reason
from workflows.model import StartInput
from workflows.recipients import RecipientError, normalize
from workflows.sendtime import is_valid_timezone

log = logging.getLogger(__name__)

MAX_NAME_LOOKUPS = 5  # users.info calls per message for mentions; the rest stay @U123


def _reply_address(text: str) -> str:
    """The profile's address as the mail server takes it (IDNA: "anna@müller.de" is "anna@xn--mller-kva.de"),
    or "" when it cannot be sent to: a Reply-To refused only at the send time would fail every email."""
    try:
        return normalize([text], special_use=True)[0]
    except RecipientError:
        return ""


@dataclass(frozen=True)
class Profile:
    zone: str
    name: str
    real_name: str = ""  # for From: "Alice Example (via email-agent)"
    email: str = ""  # profile.email (scope users:read.email): replies to the emails they ask for go there


class ProfileUnavailable(Exception):
    """users.info failed for a user never seen before: starting their email in a guessed zone (UTC) would send
    "tomorrow at 9am" at the wrong hour for good, so the start waits for Slack to deliver the message again."""


@dataclass
class UserCache:
    """users.info is rate-limited (tier 4); a user's zone and name rarely change, so one call serves both."""

    client: AsyncWebClient
    ttl_seconds: int
    _entries: dict[str, tuple[Profile, float]] = field(default_factory=dict)

    async def plain(self, text: object) -> str:
        """Slack's text as the user typed it, mentions by name (a few users.info calls, cached)."""
        encoded = str(text or "")
        mentioned = mentioned_users(encoded)[:MAX_NAME_LOOKUPS]
        names = {user: await self.name_of(user) for user in mentioned}
        return to_plain(encoded, names).strip()

    async def name_of(self, user: str) -> str:
        profile = await self._profile(user)
        return profile.name if profile else ""

    async def start_of(self, user: str, **fields: Any) -> StartInput:
        """What a new email of this user starts with: their zone, their name and address for the sender.

        Raises ProfileUnavailable when Slack cannot say (the zone is fixed for the email's life)."""
        profile = await self._profile(user)
        if profile is None:
            raise ProfileUnavailable(f"users.info failed for {user}, who is not cached")
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
        except SLACK_CALL_FAILED as error:  # Slack's error answer, or none at all
            if cached:  # expired, but a zone and a name a day old beat none
                log.warning("users.info failed for %s: %s; using what it said before", user, reason(error))
                return cached[0]
            log.warning("users.info failed for %s: %s", user, reason(error))
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
            email=_reply_address(email) if email else "",
        )
        self._entries[user] = (profile, time.monotonic() + self.ttl_seconds)
        return profile
