"""A fake Slack Web API on loopback that records every call with its arguments.

The app's official slack_sdk clients talk to it through SLACK_API_URL. It answers the methods the app
uses, can answer 429 with Retry-After for the next calls of a method, and also receives `response_url`
posts. Tests read `calls` to see exactly what the app asked Slack to do. Blocks past Slack's documented
limits are answered `invalid_blocks`, as Slack does, and kept in `refused`. Given a `socket_mode`, it also
answers apps.connections.open and serves that fake's websocket (tests/fakes/socket_mode.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.block_kit_limits import MESSAGE_BLOCKS, block_problems, view_problems
from tests.fakes.socket_mode import FakeSocketMode

BOT_USER = "UBOT"
TEAM = "T0TEAM"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    token: str = ""  # the bearer token it was called with
    answer: str = ""  # "ok", or Slack's error code ("ratelimited", "invalid_blocks", ...), or "dropped"

    @property
    def ok(self) -> bool:
        return self.answer == "ok"


@dataclass
class FakeSlack:
    timezones: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # user id -> profile display name
    calls: list[Call] = field(default_factory=list)
    answered_ts: dict[int, str] = field(default_factory=dict)  # call index -> ts it answered with
    rate_limit_next: dict[str, int] = field(default_factory=dict)  # method (or "method:ts") -> calls answered 429
    retry_after: int = 1  # the Retry-After those 429s carry, in seconds
    drop_next: dict[str, int] = field(default_factory=dict)  # method -> calls answered by closing the connection
    hold: dict[str, threading.Event] = field(default_factory=dict)  # method -> calls wait until the event is set
    held: threading.Event = field(default_factory=threading.Event)  # set when a call is being held
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (channel, ts) -> message
    emails: dict[str, dict[str, str]] = field(default_factory=dict)  # user -> {"email": ...}
    socket_mode: FakeSocketMode | None = None
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # view id -> the view as opened or published
    homes: dict[str, dict[str, Any]] = field(default_factory=dict)  # user -> their Home tab, as last published
    refused: list[tuple[Call, list[str]]] = field(default_factory=list)  # calls answered invalid_blocks, and why
    runner: web.AppRunner | None = None
    port: int = 0
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _used_triggers: set[str] = field(default_factory=set)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/response/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response_url)
        if self.socket_mode is not None:
            app.router.add_get("/link/", self.socket_mode.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self.socket_mode is not None:
            self.socket_mode.base_url = f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    @contextlib.contextmanager
    def nothing_refused(self) -> Iterator[None]:
        """Fails the test if Slack would have refused blocks the app sent meanwhile (a test's fixture wraps it)."""
        before = len(self.refused)
        yield
        refused = [(call.method, problems) for call, problems in self.refused[before:]]
        assert not refused, f"Slack would have refused these blocks: {refused}"

    def of(self, method: str, **match: Any) -> list[Call]:
        return [c for c in self.calls if c.method == method and all(c.args.get(k) == v for k, v in match.items())]

    def new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def keep(self, channel: str, event: dict[str, Any]) -> None:
        """A user's message, kept as Slack keeps it: conversations.replies shows it (as a thread's root too)."""
        kept = {k: event.get(k) for k in ("type", "user", "text", "ts", "thread_ts", "subtype")}
        self.messages[(channel, str(event["ts"]))] = kept

    async def _response_url(self, request: web.Request) -> web.Response:
        self.calls.append(Call("response_url", {"name": request.match_info["name"], **(await request.json())}))
        return web.Response(text="ok")

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        for key in ("blocks", "view", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        authorization = request.headers.get("Authorization", "")
        call = Call(method, args, token=authorization.removeprefix("Bearer "))
        self.calls.append(call)
        if method == "apps.connections.open":
            if self.socket_mode is None:
                return web.json_response({"ok": False, "error": "not_allowed"})
            return web.json_response(self.socket_mode.open_url(authorization))
        if self.drop_next.get(method):  # Slack out of reach: no answer at all
            self.drop_next[method] -= 1
            call.answer = "dropped"
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=503)  # never reaches the client: the connection is gone
        if (release := self.hold.get(method)) is not None:
            self.held.set()
            while not release.is_set():
                await asyncio.sleep(0.02)
        # "chat.update" limits the next calls of the method; "chat.update:<ts>" only those on that message.
        limited = next((k for k in (f"{method}:{args.get('ts')}", method) if self.rate_limit_next.get(k)), None)
        if limited is not None:
            self.rate_limit_next[limited] -= 1
            call.answer = "ratelimited"
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(self.retry_after)}
            )
        if problems := self._block_kit_problems(method, args):
            call.answer = "invalid_blocks"
            self.refused.append((call, problems))
            return web.json_response({"ok": False, "error": "invalid_blocks", "errors": problems})
        answered = self._answer(method, args)
        call.answer = "ok" if answered.get("ok") else str(answered.get("error") or "error")
        return web.json_response(answered)

    @staticmethod
    def _block_kit_problems(method: str, args: dict[str, Any]) -> list[str]:
        """What Slack would refuse in a message's or view's blocks (its limits: tests/fakes/block_kit_limits.py)."""
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral") and "blocks" in args:
            return block_problems(args["blocks"], MESSAGE_BLOCKS)
        if method in ("views.open", "views.publish", "views.update") and "view" in args:
            return view_problems(args["view"])
        return []

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "user_id": BOT_USER, "bot_id": "B0BOT", "team_id": TEAM, "user": "emailbot"}
        if method == "users.info":
            user = args["user"]
            name = self.names.get(user, "")
            return {
                "ok": True,
                "user": {
                    "id": user,
                    "team_id": TEAM,
                    "name": user.lower(),
                    "real_name": name,
                    "tz": self.timezones.get(user, "UTC"),
                    # profile.email is only there with the users:read.email scope, as in Slack.
                    "profile": {"display_name": name, "real_name": name, **self.emails.get(user, {})},
                },
            }
        if method == "chat.postMessage":
            ts = self.new_ts()
            self.answered_ts[len(self.calls) - 1] = ts
            # Posting to a user id posts in the app's DM with them, as Slack does.
            channel = "D" + args["channel"] if str(args["channel"]).startswith("U") else args["channel"]
            self.messages[(channel, ts)] = {
                "ts": ts,
                "text": args.get("text", ""),
                "metadata": args.get("metadata"),
                "thread_ts": args.get("thread_ts"),
            }
            return {"ok": True, "channel": channel, "ts": ts}
        if method == "conversations.replies":
            # The thread's root, then its replies oldest first, as Slack answers (metadata only when asked).
            channel, root_ts = args["channel"], str(args["ts"])
            thread = [
                message
                for (where, ts), message in sorted(self.messages.items(), key=lambda item: float(item[0][1]))
                if where == channel and (ts == root_ts or message.get("thread_ts") == root_ts)
            ]
            if args.get("oldest"):  # only messages after it (at it too with `inclusive`), as documented
                oldest, inclusive = float(args["oldest"]), args.get("inclusive") in ("true", "1", True)
                thread = [m for m in thread if float(m["ts"]) > oldest or (inclusive and float(m["ts"]) == oldest)]
            shown = []
            for message in thread[: int(args.get("limit") or 1000)]:
                copy = {k: v for k, v in message.items() if v is not None}
                if args.get("include_all_metadata") not in ("true", "1", True):
                    copy.pop("metadata", None)
                shown.append(copy)
            return {"ok": True, "messages": shown, "has_more": False}
        if method == "chat.update":
            return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.new_ts()}
        if method == "conversations.history":
            # The conversation's own messages (not thread replies), newest first, as Slack answers.
            channel = args["channel"]
            top = [
                {k: v for k, v in message.items() if v is not None}
                for (where, ts), message in sorted(self.messages.items(), key=lambda item: -float(item[0][1]))
                if where == channel and message.get("thread_ts") in (None, ts)
            ]
            if args.get("include_all_metadata") not in ("true", "1", True):
                top = [{k: v for k, v in m.items() if k != "metadata"} for m in top]
            return {"ok": True, "messages": top[: int(args.get("limit") or 100)], "has_more": False}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(args["users"])}}
        if method == "chat.getPermalink":
            channel, ts = args["channel"], str(args["message_ts"])
            return {
                "ok": True,
                "channel": channel,
                "permalink": f"https://example.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            }
        if method in ("views.publish", "views.open"):
            return self._view(method, args)
        if method.startswith("assistant.threads."):
            return self._assistant(method.removeprefix("assistant.threads."), args)
        return {"ok": False, "error": "unknown_method"}

    def _view(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """views.open (needs the click's trigger_id) and views.publish (a user's Home tab): the view comes back
        with its id, hash and an empty state, as Slack answers."""
        view = args.get("view")
        needed = "trigger_id" if method == "views.open" else "user_id"
        if not isinstance(view, dict) or not args.get(needed):
            return {"ok": False, "error": "invalid_arguments"}
        if method == "views.open" and (refusal := self._trigger_refusal(str(args["trigger_id"]))):
            return {"ok": False, "error": refusal}
        view_id = f"V{next(self._ts):09d}"
        answered = {
            "id": view_id,
            "team_id": TEAM,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "private_metadata": "",
            "callback_id": "",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": "A0APP",
            "bot_id": "B0BOT",
            **view,
        }
        self.views[view_id] = answered
        if method == "views.publish":
            self.homes[str(args["user_id"])] = answered
        return {"ok": True, "view": answered}

    def _trigger_refusal(self, trigger_id: str) -> str:
        """A trigger_id opens one view, within 3 s of the click that carried it, as Slack documents. The test
        payloads' triggers are `trig-<time_ns of the click>`."""
        if trigger_id in self._used_triggers:
            return "exchanged_trigger_id"
        self._used_triggers.add(trigger_id)
        clicked = trigger_id.removeprefix("trig-")
        if clicked.isdigit() and time.time_ns() - int(clicked) > 3_000_000_000:
            return "expired_trigger_id"
        return ""

    def _assistant(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """assistant.threads.setStatus / setSuggestedPrompts / setTitle, with the arguments Slack documents."""
        if not args.get("channel_id"):
            return {"ok": False, "error": "channel_not_found"}
        if name != "setSuggestedPrompts" and not args.get("thread_ts"):
            return {"ok": False, "error": "invalid_thread_ts"}
        if name == "setStatus" and "status" not in args:
            return {"ok": False, "error": "invalid_arguments"}
        if name == "setTitle" and not args.get("title"):
            return {"ok": False, "error": "invalid_arguments"}
        if name == "setSuggestedPrompts":
            prompts = args.get("prompts")
            if isinstance(prompts, str):
                prompts = json.loads(prompts)
            if not isinstance(prompts, list) or not 0 < len(prompts) <= 4:
                return {"ok": False, "error": "invalid_arguments"}
            if not all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts):
                return {"ok": False, "error": "invalid_arguments"}
        if name not in ("setStatus", "setSuggestedPrompts", "setTitle"):
            return {"ok": False, "error": "unknown_method"}
        return {"ok": True}


# --- Slack's encoding of what people type (api.slack.com/reference/surfaces/formatting) ---------------

_AUTOLINK = re.compile(r"(https?://[^\s<>|]+)|([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})")
_TOKEN = re.compile(r"<([^<>]*)>")


def slack_encode(typed: str) -> str:
    """The `text` Slack sends for what a user typed: &, < and > as entities, and the links and
    addresses its client detects as `<https://…>` and `<mailto:a@b|a@b>` tokens."""
    escaped = typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def link(match: re.Match[str]) -> str:
        url, address = match.groups()
        return f"<{url}>" if url else f"<mailto:{address}|{address}>"

    return _AUTOLINK.sub(link, escaped)


def _plain(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def rich_text(encoded: str) -> list[dict[str, Any]]:
    """The rich_text block Slack's client sends beside `text`, with the same content as elements."""
    elements: list[dict[str, Any]] = []
    end = 0
    for token in _TOKEN.finditer(encoded):
        if token.start() > end:
            elements.append({"type": "text", "text": _plain(encoded[end : token.start()])})
        target, _, label = token.group(1).partition("|")
        if target.startswith("@"):
            elements.append({"type": "user", "user_id": target[1:]})
        elif target.startswith("#"):
            elements.append({"type": "channel", "channel_id": target[1:]})
        elif target.startswith("!"):
            elements.append({"type": "broadcast", "range": target[1:]})
        else:
            elements.append({"type": "link", "url": _plain(target), **({"text": _plain(label)} if label else {})})
        end = token.end()
    if end < len(encoded):
        elements.append({"type": "text", "text": _plain(encoded[end:])})
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": f"b{len(encoded) % 997}", "elements": [section]}]


def file_object(name: str, user: str, mimetype: str = "application/pdf") -> dict[str, Any]:
    """A file as a file_share message event lists it (the fields of Slack's documented example)."""
    file_id = f"F{abs(hash((name, user))) % 10**9:09d}"
    now = int(time.time())
    return {
        "id": file_id,
        "created": now,
        "timestamp": now,
        "name": name,
        "title": name,
        "mimetype": mimetype,
        "filetype": name.rpartition(".")[2],
        "pretty_type": name.rpartition(".")[2].upper(),
        "user": user,
        "editable": False,
        "size": 196920,
        "mode": "hosted",
        "is_external": False,
        "external_type": "",
        "is_public": False,
        "public_url_shared": False,
        "display_as_bot": False,
        "username": "",
        "url_private": f"https://files.slack.com/files-pri/{TEAM}-{file_id}/{name}",
        "url_private_download": f"https://files.slack.com/files-pri/{TEAM}-{file_id}/download/{name}",
        "permalink": f"https://example.slack.com/files/{user}/{file_id}/{name}",
        "permalink_public": f"https://slack-files.com/{TEAM}-{file_id}-0123456789",
        "has_rich_preview": False,
    }


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends: v0 HMAC-SHA256 of 'v0:{timestamp}:{body}'."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_body(event: dict[str, Any], event_id: str) -> str:
    return json.dumps(
        {
            "token": "legacy-unused",
            "team_id": TEAM,
            "api_app_id": "A0APP",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM,
                    "user_id": BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    )


def edited_event(user: str, channel: str, ts: str, text: str, previous: str, event_ts: str) -> dict[str, Any]:
    """The user edited their DM `ts` from `previous` to `text`: Slack's message_changed event (both texts encoded
    as Slack sends them); `event_ts` is the event's own ts."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "channel_type": "im",
        "channel": channel,
        "hidden": True,
        "ts": event_ts,
        "message": {
            "type": "message",
            "user": user,
            "text": slack_encode(text),
            "ts": ts,
            "edited": {"user": user, "ts": event_ts},
        },
        "previous_message": {"type": "message", "user": user, "text": slack_encode(previous), "ts": ts},
    }


def parent_deleted_event(user: str, channel: str, ts: str, previous: str, event_ts: str) -> dict[str, Any]:
    """The user deleted their DM `ts`, which has replies: Slack sends no message_deleted but a message_changed
    whose message is a "tombstone" from USLACKBOT (seen in Slack's events; e.g. hackclub/toriel#238)."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "channel_type": "im",
        "channel": channel,
        "hidden": True,
        "ts": event_ts,
        "event_ts": event_ts,
        "message": {
            "type": "message",
            "subtype": "tombstone",
            "text": "This message was deleted.",
            "user": "USLACKBOT",
            "hidden": True,
            "ts": ts,
            "thread_ts": ts,
            "parent_user_id": "USLACKBOT",
            "reply_count": 1,
            "reply_users_count": 1,
            "reply_users": [BOT_USER],
            "is_locked": False,
            "subscribed": False,
        },
        "previous_message": {"type": "message", "user": user, "text": slack_encode(previous), "ts": ts},
    }


def message_event(
    user: str,
    ts: str,
    text: str,
    *,
    thread_ts: str | None = None,
    encoded: bool = False,
    subtype: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A user's DM to the bot as a message.im event: `text` is what they typed, encoded as Slack does
    (entities, autolinked addresses and links) unless `encoded`."""
    wire = text if encoded else slack_encode(text)
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "message",
        "text": wire,
        "user": user,
        "ts": ts,
        "team": TEAM,
        **({"blocks": rich_text(wire)} if wire else {}),
        "channel": f"D{user}",
        "event_ts": ts,
        "channel_type": "im",
    }
    if subtype:
        event["subtype"] = subtype
    if files is not None:
        event |= {"files": files, "upload": True, "display_as_bot": False}
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    if subtype == "thread_broadcast" and thread_ts:
        event["root"] = {"type": "message", "user": user, "ts": thread_ts, "thread_ts": thread_ts, "team": TEAM}
    return event


def command_fields(text: str, user: str, response_url: str) -> dict[str, str]:
    """A /schedule-email invocation's fields: form-encoded in HTTP mode, a JSON payload in Socket Mode."""
    return {
        "token": "legacy-unused",
        "team_id": TEAM,
        "team_domain": "example",
        "channel_id": "C0GENERAL",
        "channel_name": "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/schedule-email",
        "text": text,
        "api_app_id": "A0APP",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"trig-{time.time_ns()}",
    }


def command_body(text: str, user: str, response_url: str) -> str:
    return urlencode(command_fields(text, user, response_url))


def action_body(action_id: str, value: str, user: str, channel: str, message_ts: str, thread_ts: str) -> str:
    return urlencode({"payload": json.dumps(action_payload(action_id, value, user, channel, message_ts, thread_ts))})


def action_payload(
    action_id: str, value: str, user: str, channel: str, message_ts: str, thread_ts: str
) -> dict[str, Any]:
    """A button click's block_actions payload (in HTTP mode it is form-encoded as `payload`)."""
    return {
        "type": "block_actions",
        "api_app_id": "A0APP",
        "team": {"id": TEAM},
        "user": {"id": user},
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"ts": message_ts, "thread_ts": thread_ts},
        "trigger_id": f"trig-{time.time_ns()}",
        "response_url": "http://127.0.0.1:9/unused",
        "actions": [_clicked(action_id, value)],
    }


def _clicked(action_id: str, value: str) -> dict[str, Any]:
    """One button in a block_actions payload; `action_ts` is the click's own time, as in Slack."""
    return {
        "action_id": action_id,
        "block_id": "email_actions",
        "value": value,
        "type": "button",
        "text": {"type": "plain_text", "text": action_id, "emoji": True},
        "action_ts": f"{time.time():.6f}",
    }


def home_action_payload(action_id: str, value: str, user: str, home: dict[str, Any]) -> dict[str, Any]:
    """A click on a button of the user's Home tab: the container is the view, and there is no channel."""
    return {
        "type": "block_actions",
        "api_app_id": "A0APP",
        "token": "legacy-unused",
        "team": {"id": TEAM, "domain": "example"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "container": {"type": "view", "view_id": home.get("id", "V0")},
        "trigger_id": f"trig-{time.time_ns()}",
        "view": home,
        "enterprise": None,
        "is_enterprise_install": False,
        "actions": [_clicked(action_id, value)],
    }


def view_submission_payload(user: str, opened: dict[str, Any], values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The user pressed the modal's submit button: the view as opened, with the inputs' state."""
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "example"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "api_app_id": "A0APP",
        "token": "legacy-unused",
        "trigger_id": f"trig-{time.time_ns()}",
        "view": {**opened, "state": {"values": values}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def assistant_thread_started(user: str, channel: str, thread_ts: str, viewing: str = "C0GENERAL") -> dict[str, Any]:
    """The assistant_thread_started event (docs.slack.dev/reference/events/assistant_thread_started)."""
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "context": {"channel_id": viewing, "team_id": TEAM, "enterprise_id": None},
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": f"{time.time():.6f}",
    }


def assistant_root(user: str, thread_ts: str) -> dict[str, Any]:
    """The root message Slack creates for an assistant thread (subtype assistant_app_thread)."""
    return {
        "type": "message",
        "subtype": "assistant_app_thread",
        "user": user,
        "text": "New chat",
        "team": TEAM,
        "ts": thread_ts,
        "thread_ts": thread_ts,
        "assistant_app_thread": {"title": "New chat", "title_blocks": [], "artifacts": []},
    }
