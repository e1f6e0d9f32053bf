"""The shape of a Slack app manifest (v1), as Slack's manifest reference documents it, for the fields this
app's manifest can use: unknown keys are refused (Slack refuses them too), and the documented limits hold
(name up to 35 characters, a command up to 32 and starting with "/", ...). A typo in manifest.yml then fails
a unit test instead of Slack's "Create from manifest" dialog. Written from api.slack.com/reference/manifests;
features this app does not use (functions, workflows, shortcuts, unfurls, ...) are left out, so adding one
means adding it here with its documented shape."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Url = Annotated[str, Field(pattern=r"^https?://", max_length=3500)]
ScopeName = Annotated[str, Field(max_length=50)]
EventName = Annotated[str, Field(max_length=50)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DisplayInformation(Strict):
    name: Annotated[str, Field(min_length=1, max_length=35)]
    description: Annotated[str, Field(min_length=1, max_length=140)] | None = None
    background_color: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$")] | None = None
    long_description: Annotated[str, Field(min_length=175, max_length=4000)] | None = None


class AppHome(Strict):
    home_tab_enabled: bool | None = None
    messages_tab_enabled: bool | None = None
    messages_tab_read_only_enabled: bool | None = None


class BotUser(Strict):
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    always_online: bool | None = None


class SuggestedPrompt(Strict):
    title: Annotated[str, Field(min_length=1)]
    message: Annotated[str, Field(min_length=1)]


class AssistantView(Strict):
    assistant_description: Annotated[str, Field(min_length=1)]
    suggested_prompts: list[SuggestedPrompt] | None = None


class SlashCommand(Strict):
    command: Annotated[str, Field(pattern=r"^/", min_length=2, max_length=32)]
    description: Annotated[str, Field(min_length=1, max_length=2000)]
    url: Url | None = None
    usage_hint: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    should_escape: bool | None = None


class Features(Strict):
    app_home: AppHome | None = None
    bot_user: BotUser | None = None
    assistant_view: AssistantView | None = None
    slash_commands: Annotated[list[SlashCommand], Field(min_length=1, max_length=50)] | None = None


class Scopes(Strict):
    bot: Annotated[list[ScopeName], Field(max_length=255)] | None = None
    user: Annotated[list[ScopeName], Field(max_length=255)] | None = None


class OauthConfig(Strict):
    scopes: Scopes | None = None
    redirect_urls: list[str] | None = None


class EventSubscriptions(Strict):
    request_url: Url | None = None
    bot_events: Annotated[list[EventName], Field(max_length=100)] | None = None
    user_events: Annotated[list[EventName], Field(max_length=100)] | None = None


class Interactivity(Strict):
    is_enabled: bool
    request_url: Url | None = None
    message_menu_options_url: Url | None = None


class Settings(Strict):
    event_subscriptions: EventSubscriptions | None = None
    interactivity: Interactivity | None = None
    org_deploy_enabled: bool | None = None
    socket_mode_enabled: bool | None = None
    token_rotation_enabled: bool | None = None


class Manifest(Strict):
    display_information: DisplayInformation
    features: Features | None = None
    oauth_config: OauthConfig | None = None
    settings: Settings | None = None
