"""A chaos run on the engine: the stack started in a fresh state dir, the Sent folder beside it, the
clients driven while processes are SIGKILLed at random moments, then the check."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bench.chaos.client import Client
from bench.chaos.plan import MODEL_TIMEOUT_SECONDS, Config, Faults, plan
from bench.chaos.report import Kill, Report, check
from bench.harness import embedded, production, production_state_in
from tests.imap_server import ImapServer


class Chaos:
    """Owns the stack and the kills; the clients (`Client`) drive the emails meanwhile."""

    def __init__(self, config: Config, state: Path):
        self.config = config
        self.rng = random.Random(config.seed)
        self.kill_rng = random.Random(f"{config.seed}/kills")
        self.faults = Faults(config)
        self.state = state
        kinds = ["app", "iwf", "temporal"] + (["postgres"] if config.profile == "production" else [])
        self.kills: Counter[str] = Counter(dict.fromkeys(kinds, 0))
        self.removed: list[str] = []
        self.kill_log: list[Kill] = []  # when each kill happened, to explain an email that went out late
        self.t0 = 0.0
        self.imap: ImapServer | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> Report:
        # SMTP 451s are retried by the workflow: keep enough attempts for the faults and the engine's sake.
        extra = {"SEND_MAX_ATTEMPTS": "10"}
        async with self.sent_folder(extra):
            return await self.run_on_engine(extra)

    @asynccontextmanager
    async def sent_folder(self, extra: dict[str, str]) -> AsyncIterator[None]:
        """The account's Sent folder (pymap), when the run has one: the app is told where it is."""
        if not self.config.sent_folder:
            yield
            return
        imap = ImapServer()
        await asyncio.to_thread(imap.start, self.state / "pymap.log")
        self.imap = imap
        extra |= {
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": str(imap.port),
            "IMAP_SECURITY": "none",
            "IMAP_USERNAME": imap.username,
            "IMAP_PASSWORD": imap.password,
            "IMAP_SENT_FOLDER": imap.folder,
            "IMAP_SETTLE_SECONDS": "1",
        }
        try:
            yield
        finally:
            imap.stop()

    async def run_on_engine(self, extra: dict[str, str]) -> Report:
        if self.config.profile == "production":
            async with production(production_state_in(self.state), extra_env=extra) as p:
                self.prod, self.sink, self.fake_slack, self.base_url = p.stack, p.sink, p.fake_slack, p.base_url
                p.fake_ai.slow_seconds = MODEL_TIMEOUT_SECONDS
                p.fake_ai.fault = self.faults.model
                p.sink.fault = self.faults.smtp
                p.sink.sent_folder = self.imap.file if self.imap else None
                return await self.drive_all()
        async with embedded(self.state, extra) as e:
            self.stack, self.sink, self.app, self.fake_slack = e.stack, e.sink, e.app, e.fake_slack
            self.base_url = self.app.base_url
            e.fake_ai.slow_seconds = MODEL_TIMEOUT_SECONDS
            e.fake_ai.fault = self.faults.model
            e.sink.fault = self.faults.smtp
            e.sink.sent_folder = self.imap.file if self.imap else None
            return await self.drive_all()

    async def drive_all(self) -> Report:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            emails = plan(self.config, self.rng)
            self.t0 = time.monotonic()
            client = Client(self.config, self.faults, session, self.base_url, self.t0)
            chaos = asyncio.create_task(self.kill_loop())
            await asyncio.gather(*(client.drive(email) for email in emails))
            await chaos
            await asyncio.sleep(3)  # anything still in flight would be a duplicate: give it the chance to show
            return check(emails, self.sink, self.config, self.faults, dict(self.kills), self.removed, self.kill_log)

    async def kill_loop(self) -> None:
        config, rng = self.config, self.kill_rng
        victims: list[str] = []
        kinds = list(self.kills)
        while True:
            await asyncio.sleep(rng.uniform(*config.kill_every))
            if self.now() > config.kill_until:
                return
            if config.profile == "production" and not self.removed and self.now() > config.kill_until / 2:
                await asyncio.to_thread(self.remove_for_good)
                continue
            if not victims:  # every process dies once per round, in a random order
                victims = rng.sample(kinds, len(kinds))
            victim = victims.pop()
            down_for = rng.uniform(0.2, 2.0)
            await asyncio.to_thread(self.kill, victim, down_for)

    def kill(self, victim: str, down_for: float) -> None:
        self.kills[victim] += 1
        self.kill_log.append(Kill(time.time(), victim, down_for))
        if self.config.profile == "production":
            # A replica at random among the live ones; Temporal and PostgreSQL are one process each.
            names = [n for n in self.prod.started if n.split("-")[0] == victim]
            name = self.kill_rng.choice(sorted(names))
            self.prod.kill(name)
            time.sleep(down_for)
            self.prod.revive(name)
            return
        if victim == "app":
            self.app.kill()
            time.sleep(down_for)
            self.app.start()
        else:
            process = self.stack.started[victim]
            process.kill()
            time.sleep(down_for)
            process.start(90)

    def remove_for_good(self) -> None:
        """One app replica and one iWF server die and never come back."""
        for kind in ("app", "iwf"):
            name = self.kill_rng.choice(sorted(n for n in self.prod.started if n.split("-")[0] == kind))
            self.prod.remove(name)
            self.removed.append(name)


async def run_chaos(config: Config, keep_logs: bool = False) -> Report:
    """Runs in a fresh state dir, removed on success and kept (with every process's log) on failure, when
    asked, or when an email that never reached the mail server ended "delivery unknown" (worth a look)."""
    state = Path(tempfile.mkdtemp(prefix="email-agent-chaos-"))
    try:
        report = await Chaos(config, state).run()
    except BaseException:
        print(f"chaos run failed; logs kept in {state}")
        raise
    if report.ok and not keep_logs and not report.unconfirmed_not_delivered:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"logs kept in {state}" + ("" if report.ok else " (the chaos run found problems)"))
    return report
