"""A fake OpenAI-compatible chat completions server on loopback, driven by the words of the request.

The real `openai` client (in the app) talks to it over HTTP. Its "model" is a
tiny rule set, enough to play every scenario deterministically with zero
latency; trigger words make it misbehave the ways real providers do.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

JAPANESE_SUBJECT = "ランチのお誘い"
JAPANESE_BODY = "アナさん、明日一緒にランチに行きませんか？\nよろしくお願いします。"


@dataclass
class FakeOpenAI:
    requests: list[dict[str, Any]] = field(default_factory=list)
    slow_seconds: float = 5.0
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        await self.start_on(0)

    async def start_on(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    def requests_for(self, marker: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if any(marker in m["content"] for m in r["messages"])]

    async def _completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        messages = body["messages"]
        context = json.loads(messages[1]["content"])
        user = [m["content"] for m in messages if m["role"] == "user"][-1]
        if "FAIL500" in user:
            return web.json_response({"error": {"message": "upstream broke", "type": "server_error"}}, status=500)
        if "RATE429" in user:
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
                status=429,
                headers={"Retry-After": "0"},
            )
        if "SLOW" in user:
            await asyncio.sleep(self.slow_seconds)
        if "GARBAGE" in user:
            content = "Sure! Here is your email: Dear Ana, ..."
        elif "SCHEMA" in user:
            content = json.dumps({"reply": "ok", "action": "launch-rockets"})
        else:
            content = json.dumps(decide(user, context), ensure_ascii=False)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


def decide(user: str, context: dict[str, Any]) -> dict[str, Any]:
    """Reads 'to: a@x; subject: S; body: B; send in N seconds' style requests."""
    text = user.strip()
    lower = text.lower()
    if lower.startswith("cancel"):
        return {"reply": "OK, I canceled it.", "action": "cancel"}
    reply: dict[str, Any] = {"reply": "Done.", "action": "draft"}
    if "translate to japanese" in lower:
        reply.update(subject=JAPANESE_SUBJECT, body=JAPANESE_BODY, reply="翻訳しました。")
    for part in text.split(";"):
        key, sep, value = part.partition(":")
        key = key.strip().lower()
        if not sep or key not in ("to", "subject", "body"):
            continue
        if key == "to":
            reply["to"] = [a.strip() for a in value.split(",") if a.strip()]
        else:
            reply[key] = value.strip()
    now = datetime.fromisoformat(context["now_local"])
    if m := re.search(r"send in (\d+) seconds?", lower):
        reply["send_at_local"] = (now + timedelta(seconds=int(m.group(1)))).isoformat(timespec="seconds")
        reply["action"] = "schedule"
    elif m := re.search(r"tomorrow at (\d{1,2})\s*(am|pm)?", lower):
        hour = int(m.group(1)) % 12 + (12 if m.group(2) == "pm" else 0)
        day = (now + timedelta(days=1)).replace(hour=hour, minute=0, second=0, microsecond=0)
        reply["send_at_local"] = day.isoformat(timespec="seconds")
        reply["action"] = "schedule"
    elif m := re.search(r"send at (\S+)", lower):
        reply["send_at_local"] = m.group(1).upper()
        reply["action"] = "schedule"
    elif "hold" in lower:
        reply["action"] = "hold"
    elif reply["action"] == "draft" and not any(k in reply for k in ("to", "subject", "body")):
        reply.update(action="none", reply=f"Noted: {text[:60]}")
    return reply


async def _serve_forever(port: int) -> None:
    fake = FakeOpenAI()
    await fake.start_on(port)
    print(f"fake OpenAI-compatible server on {fake.base_url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    # A model-free way to try the app: OPENAI_BASE_URL=http://127.0.0.1:8999/v1 make run
    import sys

    asyncio.run(_serve_forever(int(sys.argv[1]) if len(sys.argv) > 1 else 8999))
