"""manifest.yml is what a newcomer pastes into Slack: it must ask for what the app uses, and no more."""

from __future__ import annotations

from typing import Any

import yaml

from settings import REPO_ROOT


def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO_ROOT / "manifest.yml").read_text()))


def test_scopes_events_and_command() -> None:
    m = manifest()
    assert set(m["oauth_config"]["scopes"]["bot"]) == {
        "chat:write",
        "im:history",
        "im:read",
        "im:write",
        "commands",
        "users:read",
        "users:read.email",
    }
    assert set(m["settings"]["event_subscriptions"]["bot_events"]) == {"message.im", "app_home_opened"}
    assert [c["command"] for c in m["features"]["slash_commands"]] == ["/schedule-email"]
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert m["settings"]["socket_mode_enabled"] is True
    assert m["features"]["app_home"]["messages_tab_enabled"] is True, "users must be able to DM the bot"
