"""Runs the app: the embedded engine if asked for, the private worker listener and the public listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import ValidationError
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.signature import SignatureVerifier

from bot.api import public_app
from bot.engine import EmailEngine
from bot.slack.ack_budget import AckBudget
from bot.slack.app import build_slack_app
from bot.slack.notifier import SlackCardNotifier
from bot.slack.replay import ReplayGuard
from bot.worker_app import worker_app
from devstack.processes import PidFile, StackError
from devstack.secrets import PRINTABLE, configured_or_local, local_secret
from devstack.stack import LocalStack
from settings import Settings
from workflows.decisions import Policy
from workflows.mailer import Mailer
from workflows.wiring import wire

log = logging.getLogger("email_agent")


def worker_secret(settings: Settings) -> str:
    """The secret state calls must carry: configured, or made for the embedded engine (which puts it in the
    iWF server's config). Settings refuse an external engine without one."""
    return configured_or_local(settings.worker_secret, settings.state_dir, "worker-secret")


def api_token(settings: Settings) -> str:
    """The configured token, or one made for this machine and kept in the state dir (never logged)."""
    if settings.api_token:
        return settings.api_token.get_secret_value()
    log.warning("API_TOKEN is not set: the HTTP API uses the token in %s", settings.state_dir / "api-token")
    return local_secret(settings.state_dir, "api-token", PRINTABLE)


@dataclass
class RunningApp:
    """Both listeners, started in the current event loop; tests run several of these in turn."""

    settings: Settings
    mailer: Mailer | None = None
    runners: list[web.AppRunner] = field(default_factory=list)
    engine: EmailEngine | None = None
    socket_mode: AsyncSocketModeHandler | None = None
    notifier: SlackCardNotifier | None = None
    slack_budget: AckBudget | None = None
    _socket_connect: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings = self.settings
        notifier = (
            SlackCardNotifier(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
            if settings.slack_bot_token
            else None
        )
        self.notifier = notifier
        wiring = wire(settings, self.mailer, notifier)
        registry = wiring.registry
        log.info("mail goes to %s", wiring.services.mailer.description)
        if not settings.smtp_configured:
            log.warning("no SMTP or Gmail credentials: emails are written to %s", settings.effective_outbox_dir)
        if not settings.openai_api_key and not settings.openai_base_url:
            log.warning(
                "no model configured (OPENAI_API_KEY is not set): the assistant cannot answer requests. To try it "
                "without one: `.venv/bin/python -m tests.fakes.openai_server 8999` in another shell, then "
                "`OPENAI_BASE_URL=http://127.0.0.1:8999/v1 make run`"
            )
        self.engine = EmailEngine(
            registry,
            settings.iwf_server_url,
            settings.effective_worker_url,
            local_activities=settings.engine_local_activities,
        )
        worker = worker_app(registry, worker_secret(settings))
        public = public_app(self.engine, api_token(settings), settings.max_body_bytes)
        await self._start_slack(public)
        for app, host, port in (
            (worker, settings.worker_host, settings.worker_port),
            (public, settings.host, settings.port),
        ):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port, reuse_address=True).start()
            self.runners.append(runner)
        log.info("worker listening on %s:%s (private)", settings.worker_host, settings.worker_port)
        log.info("API listening on http://%s:%s", settings.host, settings.port)
        if self.socket_mode is not None:
            # After the listeners: the worker must serve the engine's callbacks even while Slack is out of
            # reach, and slack_sdk's connect() retries until it gets a connection.
            self._socket_connect = asyncio.create_task(self._connect_socket_mode(self.socket_mode))

    @staticmethod
    async def _connect_socket_mode(handler: AsyncSocketModeHandler) -> None:
        # From here slack_sdk's aiohttp client keeps the connection (auto_reconnect_enabled): a `disconnect`
        # message or a close frame makes it open a new one through apps.connections.open at once, and a
        # connection that died silently is found by its ping monitor (every ping_interval seconds).
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("Slack: Socket Mode connected")

    async def _start_slack(self, public: web.Application) -> None:
        settings = self.settings
        if not settings.slack_enabled or self.engine is None or settings.slack_bot_token is None:
            log.warning("Slack is off: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN)")
            return
        edge = build_slack_app(
            self.engine,
            settings.slack_bot_token.get_secret_value(),
            settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
            settings.slack_api_url,
            settings.slack_timezone_cache_seconds,
            policy=Policy(
                allowed_domains=tuple(settings.allowed_recipient_domains),
                confirm_external=settings.confirm_external_recipients,
                max_recipients=settings.max_recipients_per_email,
                max_body_chars=settings.max_body_chars,
            ),
            ack_seconds=settings.slack_ack_seconds,
        )
        slack = edge.app
        self.slack_budget = edge.budget
        if self.notifier is not None:
            # The card step of any email, run by this process's worker, refreshes its owner's App Home.
            self.notifier.on_change = edge.home.changed_threadsafe

        replays = ReplayGuard()
        verifier = (
            SignatureVerifier(settings.slack_signing_secret.get_secret_value())
            if settings.slack_signing_secret
            else None
        )

        async def slack_events(request: web.Request) -> web.Response:
            try:
                text = await request.text()
            except (UnicodeDecodeError, LookupError):  # not UTF-8, or a charset nobody knows: not from Slack
                return web.json_response({"error": "the body is not UTF-8 text"}, status=400)
            signature = request.headers.get("X-Slack-Signature", "")
            timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
            # Only a validly signed request is remembered, so a forger cannot fill the guard; Bolt
            # refuses the invalid ones itself, once the body is known to be readable.
            valid = bool(verifier and timestamp.isdigit() and verifier.is_valid(text, timestamp, signature))
            if not valid:  # refused before anything reads the body (Bolt would refuse it too, after parsing it)
                return web.json_response({"error": "invalid request signature"}, status=401)
            try:
                bolt_request = await to_bolt_request(request)
            except (ValueError, RecursionError, AttributeError, TypeError):  # not JSON, or not an object ("[]")
                return web.json_response({"error": "the body is not the JSON Slack sends"}, status=400)
            if not replays.claim(signature):
                log.warning("refused a replayed Slack request")
                return web.json_response({"error": "replayed request"}, status=401)
            try:
                response = await slack.async_dispatch(bolt_request)
            except (AttributeError, TypeError, KeyError):  # JSON, but not an object of Slack's shape ("[]")
                replays.forget(signature)
                return web.json_response({"error": "the body is not the JSON Slack sends"}, status=400)
            if response.status >= 500:
                replays.forget(signature)
            return await to_aiohttp_response(response)

        if settings.slack_signing_secret:
            public.router.add_post("/slack/events", slack_events)
            log.info("Slack: HTTP mode on POST /slack/events")
        if settings.slack_app_token:
            # Acks follow the same rule as HTTP mode (process_before_response): Bolt answers an envelope only
            # when the handler has handed the request to the engine, and a handler that fails (engine out of
            # reach) leaves it unacked (status 500: slack_bolt sends no ack), so Slack delivers it again.
            self.socket_mode = AsyncSocketModeHandler(slack, settings.slack_app_token.get_secret_value())

    async def stop(self) -> None:
        if self.socket_mode is not None:
            # Closes the websocket (Slack delivers what this process did not ack to another connection),
            # the client's tasks and its HTTP session; a connect still retrying stops too.
            await self.socket_mode.close_async()  # type: ignore[no-untyped-call]
        if self._socket_connect is not None:
            self._socket_connect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._socket_connect
        if self.slack_budget is not None:
            await self.slack_budget.drain()  # requests Slack had its answer for: Slack will not send them again
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()
        if self.engine:
            self.engine.close()


async def serve(settings: Settings) -> None:
    stack = LocalStack(settings)
    if settings.embedded_engine:
        await asyncio.to_thread(stack.start)
    pid_file = PidFile.of(settings.state_dir, "app")  # so `make stop` finds this process too
    app = RunningApp(settings)
    try:
        await app.start()
        pid_file.write(os.getpid())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        pid_file.remove()
        await app.stop()
        await asyncio.to_thread(stack.stop)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2", "openai", "slack_bolt", "slack_sdk"):
        logging.getLogger(chatty).setLevel(logging.WARNING)  # one line per HTTP call drowns the app's own
    try:
        settings = Settings()
    except ValidationError as error:
        # One line per bad setting, without pydantic's URLs: the app stops before serving anything.
        for problem in error.errors():
            name = ".".join(str(part) for part in problem["loc"]).upper()
            log.error("invalid setting %s: %s", name, problem["msg"].removeprefix("Value error, "))
        raise SystemExit(2) from None
    try:
        asyncio.run(serve(settings))
    except StackError as error:
        log.error("the local engine could not start: %s", error)
        raise SystemExit(1) from None
