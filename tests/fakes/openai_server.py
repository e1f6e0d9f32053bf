"""A fake OpenAI-compatible chat completions server on loopback, driven by the words of the request.

The real `openai` client (in the app) talks to it over HTTP. Its "model" is a
tiny rule set, enough to play every scenario deterministically with zero
latency; trigger words make it misbehave the ways real providers do, and the
model name picks the server's rules: reasoning models refuse `temperature`,
`json-only*` models refuse Structured Outputs. A json_schema response format is
checked as strict mode checks it, and the reply then conforms to that schema.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jsonschema_rs
from aiohttp import web

# Names that answer like OpenAI's reasoning models: any temperature but 1 is refused.
REASONING_MODEL = re.compile(r"^(gpt-5|o1|o3|o4)")
# Names that play an OpenAI-compatible server without Structured Outputs: json_schema gets a 400.
JSON_ONLY_MODEL_PREFIX = "json-only"
UNSUPPORTED_KEYWORDS = frozenset({"minLength", "maxLength"})  # outside the subset strict mode takes everywhere
# What a fault hook may answer: the misbehaviours the trigger words ask for, chosen by the caller instead.
FAULTS = frozenset({"429", "500", "timeout", "garbage", "schema", "refuse"})
JAPANESE_SUBJECT = "ランチのお誘い"
JAPANESE_BODY = "アナさん、明日一緒にランチに行きませんか？\nよろしくお願いします。"


@dataclass
class FakeOpenAI:
    """`fault`, if set, is asked about every request (its JSON body) and may answer one of FAULTS: the fake
    then misbehaves so without any trigger word in the conversation (the chaos run draws them at random)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    slow_seconds: float = 5.0
    ponder_seconds: float = 1.0
    answered: int = 0  # completions answered in full (a slow one counts once it has answered)
    fault: Callable[[dict[str, Any]], str | None] | None = None
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
        model = str(body.get("model", ""))
        if REASONING_MODEL.match(model) and body.get("temperature", 1) != 1:
            return error_answer(
                f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                "Only the default (1) value is supported.",
                param="temperature",
                code="unsupported_value",
            )
        response_format = body.get("response_format") or {}
        schema: dict[str, Any] | None = None
        if response_format.get("type") == "json_schema":
            if model.startswith(JSON_ONLY_MODEL_PREFIX):
                return error_answer(
                    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                    param="response_format",
                )
            if problem := strict_schema_problem(response_format.get("json_schema")):
                return error_answer(f"Invalid schema for response_format: {problem}", param="response_format")
            schema = response_format["json_schema"]["schema"]
        elif response_format.get("type") != "json_object":
            return error_answer("response_format must be json_schema or json_object here", param="response_format")
        messages = body["messages"]
        context = json.loads(messages[1]["content"])
        user = [m["content"] for m in messages if m["role"] == "user"][-1]
        fault = self.fault(body) if self.fault else None
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        if fault == "500" or "FAIL500" in user:
            return web.json_response({"error": {"message": "upstream broke", "type": "server_error"}}, status=500)
        if fault == "429" or "RATE429" in user:
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
                status=429,
                headers={"Retry-After": "0"},
            )
        if fault == "timeout" or "SLOW" in user:
            await asyncio.sleep(self.slow_seconds)
        elif "PONDER" in user:  # a model that takes its time, well within the app's time-out
            await asyncio.sleep(self.ponder_seconds)
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        refuse = fault == "refuse" or "REFUSE" in user
        if refuse and schema is not None:
            message["refusal"] = "I'm sorry, I can't assist with that request."
        elif refuse:
            message["content"] = "I'm sorry, I can't assist with that request."
        elif fault == "garbage" or "GARBAGE" in user:
            message["content"] = "Sure! Here is your email: Dear Ana, ..."
        elif fault == "schema" or "SCHEMA" in user:
            message["content"] = json.dumps({"reply": "ok", "action": "launch-rockets"})
        else:
            reply = decide(user, context)
            if schema is not None:
                # Structured Outputs: every key of the schema, null where unchanged, or it is this fake's bug.
                reply = {key: reply.get(key) for key in schema["properties"]}
                errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(reply)]
                if errors:
                    return error_answer(f"fake model produced a non-conforming reply: {errors}", status=500)
            message["content"] = json.dumps(reply, ensure_ascii=False)
        self.answered += 1
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model or "fake",
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


def error_answer(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> web.Response:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": code}}, status=status)


def strict_schema_problem(json_schema: Any) -> str:
    """What OpenAI's strict mode would refuse in a response_format's json_schema ("" if nothing)."""
    if not isinstance(json_schema, dict) or not isinstance(json_schema.get("schema"), dict):
        return "json_schema.schema is missing"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(json_schema.get("name", ""))):
        return "json_schema.name must be 1-64 letters, digits, '_' or '-'"
    if json_schema.get("strict") is not True:
        return "this fake only plays strict mode (json_schema.strict: true)"
    return _node_problem(json_schema["schema"], "schema")


def _node_problem(node: dict[str, Any], where: str) -> str:
    for keyword in UNSUPPORTED_KEYWORDS & set(node):
        return f"In context={where}, '{keyword}' is not permitted."
    if node.get("type") == "object":
        properties = node.get("properties", {})
        if node.get("additionalProperties") is not False:
            return f"In context={where}, 'additionalProperties' is required to be supplied and to be false."
        if sorted(node.get("required", [])) != sorted(properties):
            return f"In context={where}, 'required' is required to be supplied and to be an array including every key."
        for name, child in properties.items():
            if problem := _node_problem(child, f"{where}.{name}"):
                return problem
    for child in [*node.get("anyOf", []), *([node["items"]] if isinstance(node.get("items"), dict) else [])]:
        if problem := _node_problem(child, where):
            return problem
    return ""


def decide(user: str, context: dict[str, Any]) -> dict[str, Any]:
    """Reads 'to: a@x; subject: S; body: B; send in N seconds' style requests."""
    text = user.strip()
    lower = text.lower()
    if lower.startswith("cancel"):
        return {"reply": "OK, I canceled it.", "action": "cancel"}
    reply: dict[str, Any] = {"reply": "Done.", "action": "draft"}
    if "to my accountant" in lower:  # an address the user never wrote (pasted context, a model's guess)
        kept = list(context.get("email", {}).get("to") or []) if "also" in lower else []
        reply["to"] = [*kept, "accountant@numbers.example"]
    if "long body" in lower:
        reply["body"] = "Lorem ipsum dolor sit amet. " * 40
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
    if m := re.search(r"send in (\d+) (minute|hour)s?", lower):  # as a model is told to: relative to now
        reply["send_in_minutes"] = int(m.group(1)) * (60 if m.group(2) == "hour" else 1)
        reply["action"] = "schedule"
    elif m := re.search(r"send in (\d+) seconds?", lower):
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
    elif m := re.search(r"redraft repeating (\S+)", lower):  # a model that repeats an earlier time while drafting
        reply["send_at_local"] = m.group(1).upper()
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
