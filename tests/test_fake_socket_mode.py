"""The fake Socket Mode server against slack_sdk's own aiohttp Socket Mode client (no engine, no app):
the protocol the engine tests rely on, checked from the official client's side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import FakeSlack
from tests.fakes.socket_mode import FakeSocketMode

APP_TOKEN = "xapp-1-A0APP-1-unit"
BOT_TOKEN = "xoxb-unit"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(socket_mode=FakeSocketMode(app_token=APP_TOKEN))
    await fake.start()
    yield fake
    await fake.stop()


class Recorder:
    """A request listener that acks (or not, the first `skip` times) and keeps what it received."""

    def __init__(self, skip: int = 0, payload: dict[str, str] | None = None):
        self.received: list[SocketModeRequest] = []
        self.skip, self.payload = skip, payload

    async def __call__(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        self.received.append(request)
        if self.skip:
            self.skip -= 1
            return
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id, self.payload))


async def connected(fake: FakeSlack, listener: Recorder) -> SocketModeClient:
    client = SocketModeClient(APP_TOKEN, web_client=AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url))
    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    await client.connect()
    assert fake.socket_mode is not None
    await fake.socket_mode.wait_connected()
    return client


async def test_only_the_app_token_opens_a_connection(fake: FakeSlack) -> None:
    web = AsyncWebClient(base_url=fake.api_url)
    with pytest.raises(SlackApiError) as refused:
        await web.apps_connections_open(app_token=BOT_TOKEN)
    assert refused.value.response["error"] == "not_allowed_token_type"
    answer = await web.apps_connections_open(app_token=APP_TOKEN)
    assert str(answer["url"]).startswith(f"ws://127.0.0.1:{fake.port}/link/?ticket=")
    assert [c.token for c in fake.of("apps.connections.open")] == [BOT_TOKEN, APP_TOKEN]


async def test_envelopes_are_delivered_acked_and_timed(fake: FakeSlack) -> None:
    socket = fake.socket_mode
    assert socket is not None
    listener = Recorder(payload=None)
    client = await connected(fake, listener)
    try:
        event = await socket.send("events_api", {"type": "event_callback", "event": {"type": "message"}})
        ack = await socket.wait_ack(event)
        assert ack.payload is None and ack.latency_s >= 0
        [request] = listener.received
        assert (request.type, request.retry_attempt, request.retry_reason) == ("events_api", 0, "")
        assert request.payload["type"] == "event_callback"
        listener.payload = {"response_type": "ephemeral", "text": "ok"}
        command = await socket.send("slash_commands", {"command": "/x"}, accepts_response_payload=True)
        assert (await socket.wait_ack(command)).payload == {"response_type": "ephemeral", "text": "ok"}
        assert socket.errors == []
        wrong = await socket.send("interactive", {"type": "block_actions"})  # accepts no payload
        await socket.wait_ack(wrong)
        assert len(socket.errors) == 1 and "accepts none" in socket.errors[0]
    finally:
        await client.close()


async def test_an_unacked_envelope_comes_again_on_the_next_connection(fake: FakeSlack) -> None:
    socket = fake.socket_mode
    assert socket is not None
    listener = Recorder(skip=1)
    client = await connected(fake, listener)
    try:
        first = await socket.wait_connected()
        envelope = await socket.send("events_api", {"type": "event_callback", "event": {"type": "message"}})
        for _ in range(1000):
            if listener.received:
                break
            await asyncio.sleep(0.01)
        assert listener.received and not envelope.acked
        await socket.disconnect()  # the client opens a new connection through apps.connections.open
        await socket.wait_ack(envelope)
        second = await socket.wait_connected(first.number + 1)
        assert [(r.retry_attempt, r.retry_reason) for r in listener.received] == [(0, ""), (1, "timeout")]
        assert envelope.deliveries[-1].connection == second.number
        assert len(fake.of("apps.connections.open")) == 2
        await socket.wait_closed(first)
        assert socket.errors == []
    finally:
        await client.close()
