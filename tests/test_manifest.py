"""manifest.yml is what a newcomer pastes into Slack: it must ask for what the app uses, and no more."""

from __future__ import annotations

import re
from typing import Any

import yaml

from bot.slack.assistant import PROMPTS
from settings import REPO_ROOT


def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO_ROOT / "manifest.yml").read_text()))


def test_scopes_events_and_command() -> None:
    m = manifest()
    assert set(m["oauth_config"]["scopes"]["bot"]) == {
        "assistant:write",
        "chat:write",
        "im:history",
        "im:write",
        "commands",
        "users:read",
        "users:read.email",
    }
    assert set(m["settings"]["event_subscriptions"]["bot_events"]) == {
        "message.im",
        "app_home_opened",
        "assistant_thread_started",
    }
    assert [c["command"] for c in m["features"]["slash_commands"]] == ["/schedule-email"]
    assert m["settings"]["interactivity"]["is_enabled"] is True, "buttons and the edit modal"
    assert m["settings"]["socket_mode_enabled"] is True
    assert m["features"]["app_home"]["messages_tab_enabled"] is True, "users must be able to DM the bot"
    assert m["features"]["app_home"]["home_tab_enabled"] is True, "the live list of emails"


def test_the_assistant_view_suggests_what_the_app_suggests() -> None:
    view = manifest()["features"]["assistant_view"]
    assert view["assistant_description"]
    assert view["suggested_prompts"] == PROMPTS and len(PROMPTS) <= 4


def test_no_scope_for_an_api_the_app_does_not_call() -> None:
    """conversations.open / conversations.info (im:read) are not called anywhere."""
    code = "\n".join(p.read_text() for p in (REPO_ROOT / "bot").rglob("*.py"))
    assert not re.search(r"conversations_(open|info|list)", code)
