"""The HTTP API's edges: auth, bad input, unknown ids, the OpenAPI document, the private worker port."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from bot.slack.app import EDIT_NOT_SAVED, NOT_TAKEN
from bot.slack.command import COMMAND_UNREACHABLE
from bot.slack.controls import UNREACHABLE
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import (
    FakeSlack,
    command_body,
    edited_event,
    event_body,
    home_action_payload,
    message_event,
)
from tests.harness import (
    API_TOKEN,
    Api,
    AppProcess,
    Engine,
    Slack,
    SmtpSink,
    app_env,
    free_port,
    unique,
)

pytestmark = pytest.mark.engine


async def test_missing_and_wrong_tokens_are_refused(api: Api) -> None:
    status, body = await api.call("GET", "/api/emails/anything", token=None)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await api.call("GET", "/api/emails/anything", token="wrong")
    assert status == 401 and "invalid" in body["error"]["message"]


async def test_unknown_ids_are_404_for_every_operation(api: Api) -> None:
    wid = unique("never-started")
    for method, path, payload in (
        ("GET", "", None),
        ("POST", "/messages", {"text": "hi"}),
        ("PUT", "/draft", {"text": "hi"}),
        ("POST", "/cancel", None),
    ):
        status, body = await api.call(method, f"/api/emails/{wid}{path}", payload)
        assert status == 404, (method, path, body)
        assert body["error"]["code"] == "not_found"


async def test_bad_input_gets_a_clear_4xx(api: Api) -> None:
    wid = unique("bad-input")
    status, body = await api.call("POST", f"/api/emails/{wid}", {"timezone": "Mars/Olympus"})
    assert status == 422 and "IANA" in body["error"]["message"]
    status, body = await api.call("POST", "/api/emails/bad id!")
    assert status in (400, 404)
    # Delivery ledgers' ids are predictable: no email may take one (it would block its owner's sends).
    for method in ("POST", "GET"):
        status, body = await api.call(method, "/api/emails/ledger-0a1b2c3d-owner-20261126")
        assert (status, body["error"]["code"]) == (400, "bad_id") and "reserved" in body["error"]["message"]
    await api.start(wid)
    status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": ""})
    assert status == 422 and "text" in body["error"]["message"]
    status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "hi", "extra": 1})
    assert status == 422 and "extra" in body["error"]["message"]
    async with api.session.post(
        f"{api.base_url}/api/emails/{wid}/messages",
        data=b"{not json",
        headers={"Authorization": "Bearer test-token-4f1c9a", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_json"


async def test_oversized_bodies_are_refused(api: Api) -> None:
    wid = unique("big")
    await api.start(wid)
    status, body = await api.call("PUT", f"/api/emails/{wid}/draft", {"text": "x" * 100_000})
    assert status == 413, body


async def test_start_is_idempotent(api: Api) -> None:
    wid = unique("idem")
    first, _ = await api.call("POST", f"/api/emails/{wid}", {"timezone": "Asia/Tokyo"})
    second, body = await api.call("POST", f"/api/emails/{wid}", {"timezone": "Asia/Tokyo"})
    assert (first, second) == (201, 200) and body["created"] is False
    assert (await api.describe(wid))["timezone"] == "Asia/Tokyo"


async def test_openapi_document_describes_every_route(api: Api) -> None:
    async with api.session.get(f"{api.base_url}/api/openapi.json") as response:
        assert response.status == 200
        doc = await response.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {
        "/api/emails/{email_id}",
        "/api/emails/{email_id}/messages",
        "/api/emails/{email_id}/draft",
        "/api/emails/{email_id}/cancel",
    }
    assert "EmailView" in doc["components"]["schemas"]


async def test_worker_endpoints_are_not_on_the_public_port(api: Api, app_process: AppProcess) -> None:
    for path in ("/api/v1/workflowState/start", "/api/v1/workflowState/decide", "/api/v1/workflowWorker/rpc"):
        async with api.session.post(f"{api.base_url}{path}", json={}) as response:
            assert response.status == 404, path
    port = int(app_process.env["WORKER_PORT"])
    # The kernel's own table of listening sockets (state 0A): the worker's is bound to 127.0.0.1 only.
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        + Path("/proc/net/tcp6").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port
    ]
    assert listening == [f"0100007F:{port:04X}"], listening
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/api/v1/workflowWorker/rpc", json={}) as r:
            assert r.status == 500, "reachable on loopback, where the iWF server calls it"


async def test_healthz(api: Api) -> None:
    async with api.session.get(f"{api.base_url}/healthz") as response:
        assert response.status == 200 and (await response.json())["ok"] is True


async def test_only_the_owner_can_change_or_cancel_an_owned_email(api: Api) -> None:
    wid = unique("owned")
    status, _ = await api.call("POST", f"/api/emails/{wid}", {"owner": "alice"})
    assert status == 201
    for actor in (None, "mallory"):
        status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "hi", "actor": actor})
        assert status == 403 and body["error"]["code"] == "forbidden", body
        status, body = await api.call("PUT", f"/api/emails/{wid}/draft", {"text": "x", "actor": actor})
        assert status == 403, body
        status, body = await api.call("POST", f"/api/emails/{wid}/cancel", {"actor": actor})
        assert status == 403, body
    status, body = await api.call("POST", f"/api/emails/{wid}/messages", {"text": "hi", "actor": "alice"})
    assert status == 202 and body["accepted"], body
    view = await api.wait_for(wid, "waiting")
    assert [t["text"] for t in view["conversation"] if t["role"] == "user"] == ["hi"], "refused requests left no trace"
    status, body = await api.call("POST", f"/api/emails/{wid}/cancel", {"actor": "alice"})
    assert status == 200 and body["ok"], body


async def test_refusals_have_the_one_error_shape(api: Api) -> None:
    """403 and 409 are errors like any other: {"error": {"code", "message"}} and nothing else."""
    wid = unique("refusal-shape")
    await api.call("POST", f"/api/emails/{wid}", {"owner": "alice"})
    answers = [
        await api.call("POST", f"/api/emails/{wid}/messages", {"text": "hi", "actor": "mallory"}),
        await api.call("PUT", f"/api/emails/{wid}/draft", {"text": "x", "actor": "mallory"}),
        await api.call("POST", f"/api/emails/{wid}/cancel", {"actor": "mallory"}),
    ]
    status, body = await api.call("POST", f"/api/emails/{wid}/cancel", {"actor": "alice"})
    assert status == 200 and body["ok"], body
    answers.append(await api.call("POST", f"/api/emails/{wid}/messages", {"text": "more", "actor": "alice"}))
    answers.append(await api.call("PUT", f"/api/emails/{wid}/draft", {"text": "y", "actor": "alice"}))
    # Ended, a stranger is still told only that it is not theirs (before: 409, saying how it ended).
    for path, payload in (("/messages", {"text": "hi"}), ("/draft", {"text": "x"}), ("/cancel", {}), ("/undo", {})):
        answers.append(
            await api.call(
                "PUT" if path == "/draft" else "POST", f"/api/emails/{wid}{path}", {**payload, "actor": "mallory"}
            )
        )
    assert [status for status, _ in answers] == [403, 403, 403, 409, 409, 403, 403, 403, 403], answers
    for status, body in answers:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] in ({"forbidden"} if status == 403 else {"finished", "closed"}), body
        assert body["error"]["message"], body


async def _every_call_is_engine_unavailable(
    session: aiohttp.ClientSession, base_url: str, wid: str, *, start: bool
) -> None:
    """Each operation on the email (its start too, with `start`) answers 503 engine_unavailable, Retry-After."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    calls: list[tuple[str, str, Any]] = [("POST", "", {})] if start else []
    calls += [
        ("GET", "", None),
        ("POST", "/messages", {"text": "hi", "message_id": "m1"}),
        ("PUT", "/draft", {"text": "hi"}),
        ("POST", "/cancel", None),
    ]
    for method, path, payload in calls:
        url = f"{base_url}/api/emails/{wid}{path}"
        async with session.request(method, url, json=payload, headers=headers) as response:
            body = await response.json()
            assert response.status == 503, (method, path, body)
            assert body["error"]["code"] == "engine_unavailable", body
            assert int(response.headers["Retry-After"]) > 0


async def test_an_unreachable_worker_answers_503_with_retry_after(
    engine: Engine, fake_openai: FakeOpenAI, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    """The replica an email's worker URL names is gone (nothing listens there): every call for that email is
    an engine-side failure, 503 with Retry-After, never a 500."""
    port = free_port()
    env = app_env(port, engine.iwf_url, engine.temporal_host_port, tmp_path, fake_openai.base_url, smtp_sink.port)
    env["WORKER_URL"] = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    app = AppProcess(env=env, log_path=tmp_path / "app.log", base_url=f"http://127.0.0.1:{port}")
    app.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            api = Api(session, app.base_url)
            wid = unique("no-worker")
            await api.start(wid)  # iWF records the workflow; its first state waits for a worker
            await _every_call_is_engine_unavailable(session, app.base_url, wid, start=False)
    finally:
        app.stop()
    assert "unhandled error" not in app.log_tail(200)


async def _raw_status(base_url: str, request: bytes) -> int:
    """Sends bytes no HTTP client library would (a header that is not UTF-8) and reads the status code."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_malformed_requests_get_a_clear_4xx_never_a_500(api: Api, app_process: AppProcess) -> None:
    wid = unique("malformed")
    await api.start(wid)
    token_not_utf8 = b"Authorization: Bearer \xff\xfe"
    request = b"GET /api/emails/" + wid.encode() + b" HTTP/1.1\r\nHost: t\r\n" + token_not_utf8 + b"\r\n"
    assert await _raw_status(app_process.base_url, request + b"Connection: close\r\n\r\n") == 401

    deep = "[" * 10_000 + "]" * 10_000  # well within the size limit, deeper than any JSON parser follows
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    url = f"{app_process.base_url}/api/emails/{wid}/messages"
    async with api.session.post(url, data=deep, headers=headers) as response:
        body = await response.json()
        assert response.status == 400 and body["error"]["code"] == "bad_json", body
    long_number = '{"text": "hi", "message_id": ' + "9" * 5000 + "}"  # Python refuses ints over 4,300 digits
    async with api.session.post(url, data=long_number, headers=headers) as response:
        body = await response.json()
        assert response.status == 400 and body["error"]["code"] == "bad_json", body

    status, body = await api.call("GET", f"/api/emails/{wid}%0A")  # "<id>\n" once decoded
    assert status == 400 and body["error"]["code"] == "bad_id", body
    assert "unhandled error" not in app_process.log_tail(200)


async def test_a_proxy_answering_for_the_engine_with_text_is_503_not_500(
    engine: Engine, fake_openai: FakeOpenAI, smtp_sink: SmtpSink, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """Between the app and the iWF server sits a proxy whose upstream is down: it answers 502 with a text page,
    not iWF's JSON. Every operation is then "the engine is out of reach" (503, Retry-After), and a slash
    command says so to the user instead of failing."""

    async def upstream_down(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=502, text="upstream connect error or disconnect/reset before headers")

    proxy = web.Application()
    proxy.router.add_route("*", "/{tail:.*}", upstream_down)
    runner = web.AppRunner(proxy)
    await runner.setup()
    proxy_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", proxy_port).start()
    port = free_port()
    env = app_env(
        port,
        f"http://127.0.0.1:{proxy_port}",
        engine.temporal_host_port,
        tmp_path,
        fake_openai.base_url,
        smtp_sink.port,
        slack_api_url=fake_slack.api_url,
    )
    app = AppProcess(env=env, log_path=tmp_path / "app.log", base_url=f"http://127.0.0.1:{port}")
    app.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            wid = unique("proxied")
            await _every_call_is_engine_unavailable(session, app.base_url, wid, start=True)
            user = f"UPROXY{time.time_ns() % 10**9}"
            slack = Slack(session, app, fake_slack)
            status, text = await slack.post(
                command_body("to: p@example.com; subject: P; body: P", user, fake_slack.response_url(user)),
                "application/x-www-form-urlencoded",
            )
            assert status == 200 and json.loads(text) == {"response_type": "ephemeral", "text": COMMAND_UNREACHABLE}

            # A DM while the engine is out of reach: no answer (Slack delivers it again) until Slack's last
            # delivery, which tells the user it was not taken instead of dropping it without a word.
            channel, ts = f"D{user}", fake_slack.new_ts()
            body = event_body(message_event(user, ts, "to: p@example.com; subject: P; body: P"), f"Ev{ts}")
            for retry, expected in ((0, 500), (1, 500), (3, 200)):
                assert await slack.deliver(body, retry) == expected, retry
            [said] = fake_slack.of("chat.postMessage", channel=channel, thread_ts=ts)
            assert said.args["text"] == NOT_TAKEN

            # The same for an edit of a message: on the last delivery the user learns it was not saved.
            edited = edited_event(
                user, channel, ts, "to: p@example.com; body: Q", "to: p@example.com; body: P", fake_slack.new_ts()
            )
            body = event_body(edited, f"Ev{time.time_ns()}")
            status, _ = await slack.post(body, "application/json", {"X-Slack-Retry-Num": "3"})
            assert status == 200
            notes = [c.args["text"] for c in fake_slack.of("chat.postMessage", channel=channel, thread_ts=ts)]
            assert notes == [NOT_TAKEN, EDIT_NOT_SAVED], notes

            # A click on the Home tab (no channel to answer in): the tab itself says so, without a listing.
            click = home_action_payload("send_now", "slack-T0TEAM-D0-1.2", user, {"id": "V0HOME", "type": "home"})
            status, _ = await slack.post(urlencode({"payload": json.dumps(click)}), "application/x-www-form-urlencoded")
            assert status == 200
            deadline = time.monotonic() + 10
            while not (published := fake_slack.of("views.publish", user_id=user)):
                assert time.monotonic() < deadline, "the Home tab was never told"
                await asyncio.sleep(0.1)
            assert UNREACHABLE in json.dumps(published[-1].args["view"])
    finally:
        app.stop()
        await runner.cleanup()
    assert "unhandled error" not in app.log_tail(200)
