"""A fake Slack Socket Mode server: a websocket on loopback, served beside the fake Web API.

It follows Slack's documented protocol (https://api.slack.com/apis/connections/socket-implement and
https://api.slack.com/apis/socket-mode), with the envelope shapes of slack_sdk's own test fixtures
(slack_sdk/socket_mode/request.py reads the same fields):

- `apps.connections.open`, called with the app-level token (`Authorization: Bearer xapp-…`; a bot token
  is refused with `not_allowed_token_type`), answers `{"ok": true, "url": "ws://127.0.0.1:<port>/link/?ticket=…"}`.
  A ticket opens one connection.
- On connect the server sends `{"type": "hello", "num_connections": n, "debug_info": {…}, "connection_info":
  {"app_id": …}}`, then envelopes: `{"envelope_id", "type", "payload", "accepts_response_payload"}` with
  `retry_attempt` and `retry_reason` on `events_api` ones. Payloads: `events_api` carries the same
  event_callback body as HTTP mode, `slash_commands` the command's fields as JSON, `interactive` the
  block_actions payload.
- The app acks with `{"envelope_id": …}` on any of its connections, plus `"payload"` where the envelope
  accepts one (slash commands: the ephemeral answer). Each ack is recorded with the time since the
  delivery it answers. An ack that names no known envelope, or carries a payload the envelope does not
  accept, is recorded in `errors`.
- An envelope not acked when its connection closes is delivered again on the next connection, with
  `retry_attempt` one higher and `retry_reason` "timeout"; `redeliver` does the same on the current
  connection, as Slack does when no ack came in time. `duplicate` sends the very same frame again.
- `disconnect` sends `{"type": "disconnect", "reason": "refresh_requested", "debug_info": {…}}`: the client
  is expected to open a new connection through apps.connections.open; once it has, the old one is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = "A0APP"
RETRY_REASON = "timeout"  # as in slack_sdk's fixtures for an events_api envelope with retry_attempt 1


@dataclass
class Delivery:
    connection: int
    retry_attempt: int
    retry_reason: str
    sent_at: float


@dataclass
class Ack:
    connection: int
    payload: dict[str, Any] | None
    at: float
    latency_s: float  # since the latest delivery of the envelope sent before this ack
    lost: bool = False  # dropped on purpose, as if it never reached Slack


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    deliveries: list[Delivery] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    lose_acks: int = 0  # the next N acks are dropped

    @property
    def acked(self) -> bool:
        return any(not ack.lost for ack in self.acks)

    @property
    def ack(self) -> Ack:
        return next(ack for ack in self.acks if not ack.lost)

    def frame(self, retry_attempt: int, retry_reason: str) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "type": self.type,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.type == "events_api":
            frame |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        return frame


@dataclass
class Connection:
    number: int
    ws: web.WebSocketResponse
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    hello_sent: bool = False
    refreshing: bool = False  # a disconnect was sent on it
    close_code: int | None = None  # 1000: the app closed it properly; 1006: it just went away

    @property
    def open(self) -> bool:
        return self.closed_at is None and self.hello_sent and not self.ws.closed


@dataclass
class FakeSocketMode:
    app_token: str
    base_url: str = ""  # ws://127.0.0.1:<port>, set by the fake Web API when it starts
    envelopes: list[Envelope] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    opened: list[float] = field(default_factory=list)  # apps.connections.open calls that got a URL
    errors: list[str] = field(default_factory=list)
    _tickets: dict[str, int] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- apps.connections.open and the websocket --------------------------------------------------

    def open_url(self, authorization: str) -> dict[str, Any]:
        """The answer to apps.connections.open: only the app-level token may open a connection."""
        token = authorization.removeprefix("Bearer ").strip()
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.app_token:
            return {"ok": False, "error": "not_allowed_token_type" if token.startswith("xox") else "invalid_auth"}
        ticket = str(uuid.uuid4())
        self._tickets[ticket] = next(self._numbers)
        self.opened.append(time.monotonic())
        return {"ok": True, "url": f"{self.base_url}/link/?ticket={ticket}&app_id={APP_ID}"}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        number = self._tickets.pop(request.query.get("ticket", ""), None)
        if number is None:  # a ticket opens one connection
            self.errors.append(f"connection with an unknown or used ticket: {request.query_string}")
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)  # answers the client's pings with pongs
        await ws.prepare(request)
        connection = Connection(number, ws)
        self.connections.append(connection)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": sum(1 for c in self.connections if c.closed_at is None),
                "debug_info": {"host": "applink-fake-1", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        connection.hello_sent = True
        for previous in self.connections[:-1]:  # a refresh: the new connection replaces the old ones
            if previous.refreshing and previous.closed_at is None and not previous.ws.closed:
                await previous.ws.close()
        for envelope in self._pending():
            await self._deliver(envelope, connection)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_text(connection, message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            connection.close_code = ws.close_code
            connection.closed_at = time.monotonic()
            current = self.current
            if current is not None:  # what this connection left unacked goes to another one now
                with contextlib.suppress(ConnectionError):  # that one closing too: then to the next
                    for envelope in self._pending():
                        await self._deliver(envelope, current)
        return ws

    def _on_text(self, connection: Connection, data: str) -> None:
        now = time.monotonic()
        try:
            frame = json.loads(data)
        except ValueError:
            self.errors.append(f"not JSON: {data[:200]}")
            return
        envelope = self.find(str(frame.get("envelope_id"))) if isinstance(frame, dict) else None
        if envelope is None:
            self.errors.append(f"ack for no known envelope: {data[:200]}")
            return
        payload = frame.get("payload")
        if payload is not None and not envelope.accepts_response_payload:
            self.errors.append(f"payload in the ack of a {envelope.type} envelope, which accepts none: {data[:200]}")
        sent = [d.sent_at for d in envelope.deliveries if d.sent_at <= now]
        lost = envelope.lose_acks > 0
        envelope.lose_acks -= 1 if lost else 0
        latency = now - max(sent) if sent else float("nan")
        envelope.acks.append(Ack(connection.number, payload, now, latency, lost))

    # --- what Slack sends ----------------------------------------------------------------------------

    @property
    def current(self) -> Connection | None:
        """The newest open connection: Slack sends each envelope on one of the app's connections."""
        live = [c for c in self.connections if c.open]
        return live[-1] if live else None

    def find(self, envelope_id: str) -> Envelope | None:
        return next((e for e in self.envelopes if e.envelope_id == envelope_id), None)

    def _pending(self) -> list[Envelope]:
        """Envelopes not acked and not out on a live connection: never delivered, or their connection closed."""
        live = {c.number for c in self.connections if c.open}
        return [
            e for e in self.envelopes if not e.acked and (not e.deliveries or e.deliveries[-1].connection not in live)
        ]

    async def send(
        self, type_: str, payload: dict[str, Any], *, accepts_response_payload: bool = False, lose_acks: int = 0
    ) -> Envelope:
        """An envelope, sent now on the current connection, or on the next one if there is none."""
        envelope = Envelope(str(uuid.uuid4()), type_, payload, accepts_response_payload, lose_acks=lose_acks)
        self.envelopes.append(envelope)
        connection = self.current
        if connection is not None:
            await self._deliver(envelope, connection)
        return envelope

    async def redeliver(self, envelope: Envelope, reason: str = RETRY_REASON) -> None:
        """Slack's retry of an envelope whose ack did not come in time: the next retry_attempt."""
        connection = self._require_connection()
        await self._deliver(envelope, connection, reason)

    async def duplicate(self, envelope: Envelope) -> None:
        """The very same frame once more (same retry_attempt): at-least-once delivery."""
        connection = self._require_connection()
        last = envelope.deliveries[-1]
        envelope.deliveries.append(Delivery(connection.number, last.retry_attempt, last.retry_reason, time.monotonic()))
        await connection.ws.send_json(envelope.frame(last.retry_attempt, last.retry_reason))

    async def _deliver(self, envelope: Envelope, connection: Connection, reason: str = RETRY_REASON) -> None:
        attempt = max(d.retry_attempt for d in envelope.deliveries) + 1 if envelope.deliveries else 0
        reason = reason if attempt else ""
        envelope.deliveries.append(Delivery(connection.number, attempt, reason, time.monotonic()))
        await connection.ws.send_json(envelope.frame(attempt, reason))

    async def disconnect(self, reason: str = "refresh_requested") -> Connection:
        """Slack asks the app to reconnect; the connection is closed once the app has opened a new one."""
        connection = self._require_connection()
        connection.refreshing = True
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-1"}}
        await connection.ws.send_json(message)
        return connection

    async def drop(self) -> None:
        """The connection goes away without a disconnect message (a network fault, a server restart)."""
        connection = self._require_connection()
        await connection.ws.close(code=1001, message=b"going away")

    def _require_connection(self) -> Connection:
        connection = self.current
        if connection is None:
            raise AssertionError("the app has no open Socket Mode connection")
        return connection

    # --- waiting ---------------------------------------------------------------------------------------

    async def wait_ack(self, envelope: Envelope, timeout: float = 20) -> Ack:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if envelope.acked:
                return envelope.ack
            await asyncio.sleep(0.005)
        raise AssertionError(f"{envelope.type} envelope {envelope.envelope_id} never acked: {envelope.deliveries}")

    async def wait_acks(self, envelope: Envelope, count: int, timeout: float = 20) -> list[Ack]:
        """Until `count` acks (lost ones included) arrived for the envelope."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(envelope.acks) >= count:
                return envelope.acks
            await asyncio.sleep(0.005)
        raise AssertionError(f"expected {count} acks of {envelope.envelope_id}, got {envelope.acks}")

    async def wait_connected(self, number: int | None = None, timeout: float = 30) -> Connection:
        """Until a connection (numbered `number` or later) is open; returns the current one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection = self.current
            if connection is not None and (number is None or connection.number >= number):
                return connection
            await asyncio.sleep(0.02)
        raise AssertionError(f"no Socket Mode connection (wanted #{number}); connections: {self.connections}")

    async def wait_closed(self, connection: Connection, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if connection.closed_at is not None:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"connection #{connection.number} still open")
