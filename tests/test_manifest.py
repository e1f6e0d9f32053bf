"""manifest.yml is what a newcomer pastes into Slack: it must ask for what the app uses, and no more."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bot.slack.assistant import PROMPTS
from settings import REPO_ROOT
from tests.slack_manifest import Manifest


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
    """conversations.info / conversations.list (im:read) are not called anywhere; conversations.open (finding a
    slash command's DM again on a retry) needs only im:write, and conversations.history im:history."""
    code = "\n".join(p.read_text() for p in (REPO_ROOT / "bot").rglob("*.py"))
    assert not re.search(r"conversations_(info|list)", code)


def test_the_manifest_has_the_shape_slack_accepts() -> None:
    m = Manifest.model_validate(manifest())
    assert m.settings is not None and m.settings.event_subscriptions is not None
    events = m.settings.event_subscriptions.bot_events or []
    assert len(events) == len(set(events)), "Slack refuses a repeated event"


def test_http_mode_as_the_readme_describes_it_has_that_shape_too() -> None:
    """README: for HTTP mode, turn Socket Mode off and set the three request URLs to /slack/events."""
    m = manifest()
    url = "https://email-agent.example.com/slack/events"
    m["settings"]["socket_mode_enabled"] = False
    m["settings"]["event_subscriptions"]["request_url"] = url
    m["settings"]["interactivity"]["request_url"] = url
    m["features"]["slash_commands"][0]["url"] = url
    Manifest.model_validate(m)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("display_information", "name"), "An email assistant name too long for Slack"),
        (("features", "slash_commands", 0, "command"), "schedule-email"),
        (("features", "assistant_view", "suggested_prompt"), []),
        (("settings", "interactivity", "request_url"), "slack/events"),
    ],
)
def test_the_shape_check_catches_what_slack_would_refuse(where: tuple[str | int, ...], value: object) -> None:
    m = manifest()
    node: Any = m
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(ValidationError):
        Manifest.model_validate(m)
