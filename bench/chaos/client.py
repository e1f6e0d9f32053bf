"""The client side of a chaos run: it retries every operation until the app answers (Slack re-delivers
events, people press again), with an idempotency key, and behaves as a user reading the answers."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp

from bench.chaos.plan import Config, Email, Faults
from tests.fakes.slack_server import TEAM, event_body, sign
from tests.harness import SLACK_SIGNING_SECRET, Api

RESTING = ("sent", "canceled", "unconfirmed")


class Client:
    """All the users of a run: `drive` plays one email from its first message until it rests."""

    def __init__(self, config: Config, faults: Faults, session: aiohttp.ClientSession, base_url: str, t0: float):
        self.config = config
        self.faults = faults
        self.session = session
        self.base_url = base_url
        self.api = Api(session, base_url)
        self.t0 = t0
        self.settle_by = t0 + config.window_end + config.settle_timeout
        self.deliveries = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    # --- transport ---------------------------------------------------------

    async def eventually(self, what: str, attempt: Any, give_up_after: float = 120.0) -> Any:
        """Retry until the app answers (not a 5xx, not a connection error), as Slack and people do."""
        deadline = time.monotonic() + give_up_after
        last: Any = None
        while True:
            try:
                result = await attempt()
                if result is not None:
                    return result
            except (aiohttp.ClientError, TimeoutError, AssertionError) as error:
                last = error
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up: {what} (last: {last!r})")
            await asyncio.sleep(0.3)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        status, answer = await self.api.call(method, path, body)
        return None if status >= 500 else (status, answer)

    async def describe(self, email: Email) -> dict[str, Any]:
        async def attempt() -> dict[str, Any] | None:
            status, view = await self.api.call("GET", f"/api/emails/{email.email_id}")
            if status >= 500:
                return None
            if status != 200:
                raise RuntimeError(f"{email.email_id}: describe answered {status} {view}")
            email.seen.add(view["status"])
            return dict(view)

        result: dict[str, Any] = await self.eventually(f"describe {email.email_id}", attempt)
        return result

    async def dm(self, email: Email, text: str, ts: str, thread: bool) -> tuple[int, str] | None:
        event: dict[str, Any] = {
            "type": "message",
            "channel_type": "im",
            "channel": email.slack_channel,
            "user": email.slack_user,
            "text": text,
            "ts": ts,
            "team": TEAM,
        }
        if thread:
            event["thread_ts"] = email.slack_ts
        body = event_body(event, f"Ev{ts}")
        # Slack signs every delivery afresh, with its own timestamp: so does this client.
        self.deliveries += 1
        stamp = int(time.time()) - self.deliveries % 200
        headers = {"Content-Type": "application/json", **sign(SLACK_SIGNING_SECRET, body, timestamp=stamp)}
        async with self.session.post(f"{self.base_url}/slack/events", data=body.encode(), headers=headers) as r:
            if r.status >= 500:
                return None
            if r.status != 200:
                raise RuntimeError(f"Slack delivery refused: {r.status} {await r.text()}")
            return r.status, await r.text()

    async def put(self, email: Email, text: str) -> bool:
        """One message from the user, delivered until the app answers; True if it was accepted (not
        refused as too late or finished). Each message has its own id; retries of it keep that id."""
        email.sent_messages += 1
        seq = email.sent_messages
        if email.via == "api":
            key = f"m{seq}"
            path = f"/api/emails/{email.email_id}/messages"
            status, answer = await self.eventually(
                key, lambda: self.call("POST", path, {"text": text, "message_id": key})
            )
            if status == 202 and answer.get("accepted"):
                return True
            if status == 409:
                return False
            raise RuntimeError(f"{email.email_id}: message answered {status} {answer}")
        root = seq == 1  # the thread's first message starts the email
        ts = email.slack_ts if root else f"{int(email.slack_ts.split('.')[0]) + seq}.{email.index:06d}"
        await self.eventually(f"dm {ts}", lambda: self.dm(email, text, ts, thread=not root))
        if root:
            return True
        # The app answers Slack once the workflow accepted or refused the message: the email shows which.
        view = await self.describe(email)
        users = sum(t["role"] == "user" for t in view["conversation"])
        return bool(users > email.user_turns or view["pending_requests"] > 0)

    # --- a user -------------------------------------------------------------

    async def say(self, email: Email, text: str, subject: str | None = None) -> str:
        """Says `text` until the assistant answers it: "understood", "refused" (too late / finished),
        "not understood" (the assistant failed every time), "moot" (not understood, and the email went
        on without it: sent, canceled, delivery unknown) or "stuck" (no answer and no error)."""
        for _ in range(1 + self.config.max_said_again):
            if not await self.put(email, text):
                return "refused"
            email.user_turns += 1
            fate, view = await self.fate(email)
            if fate == "answered":
                email.understood_any = True
                email.refusals_understood = self.refusals(email)
                if subject:
                    email.expected_subject = subject
                email.scheduled = bool(view["will_send"]) or view["status"] in ("sending", "sent", "unconfirmed")
                return "understood"
            if fate in ("stuck", "moot"):
                email.request_stuck = fate == "stuck"
                return fate
            # A model failure changes nothing: an email that was going out still goes out (unless the mail
            # server refused it for good meanwhile, which unschedules it with its own reason).
            refused = self.refusals(email) > email.refusals_understood
            if email.scheduled and not email.cancel_accepted and not view["will_send"] and not refused:
                email.unscheduled_by.append(
                    f"the assistant failed on {text!r} and the email is now {view['status']}: {view['plan']!r}"
                )
            email.said_again += 1  # the assistant failed: say it again, as a person would
        email.said_again -= 1
        email.not_understood = True
        return "not understood"

    def refusals(self, email: Email) -> int:
        return self.faults.by_email.get(email.index, []).count("smtp 554")

    async def fate(self, email: Email) -> tuple[str, dict[str, Any]]:
        """Waits for the answer to the latest accepted message (the email's `user_turns`-th user turn):
        "answered" (an assistant turn after it), "failed" (none, nothing left to do, and `last_error`
        says why), "moot" (none, and the email is at rest) or "stuck"."""
        k = email.user_turns
        deadline = time.monotonic() + 120
        while True:
            view = await self.describe(email)
            turns = view["conversation"]
            users = [j for j, t in enumerate(turns) if t["role"] == "user"]
            if len(users) >= k:
                if any(t["role"] == "assistant" for t in turns[users[k - 1] + 1 :]):
                    return "answered", view
                if view["status"] in RESTING:
                    return "moot", view  # not understood, and the email went on without it (sent, ...)
                busy = view["status"] in ("processing", "sending") or view["pending_requests"]
                if not busy and view["last_error"]:
                    return "failed", view
            if time.monotonic() > deadline:
                return "stuck", view
            await asyncio.sleep(0.3)

    async def still_open(self, email: Email) -> bool:
        """Whether a user looking at the email would still change it: not while it is being handed over,
        and not once it is sent, canceled, refused for good or of unknown delivery."""
        while True:
            view = await self.describe(email)
            if view["status"] != "sending":
                return view["status"] not in (*RESTING, "failed")
            await asyncio.sleep(0.3)

    async def drive(self, email: Email) -> None:
        i, rng = email.index, email.rng
        await asyncio.sleep(rng.uniform(0, 3))
        wait = max(1, round(email.due - self.now()))
        first = f"to: {email.recipient}; subject: Chaos {i}; body: Hello {i}; send in {wait} seconds"
        if email.via == "api":
            await self.eventually("start", lambda: self.call("POST", f"/api/emails/{email.email_id}", {}))
        await self.say(email, first, subject=f"Chaos {i}")
        if email.revise and email.understood_any:
            await asyncio.sleep(rng.uniform(1, 5))
            if await self.still_open(email):
                answer = await self.say(email, f"subject: Chaos {i} revised", subject=f"Chaos {i} revised")
                email.revised = answer == "understood"
        if email.cancel:
            await asyncio.sleep(rng.uniform(1, 5))
            if await self.still_open(email):
                asked_at = time.time()
                if email.via == "api":
                    status, answer = await self.eventually(
                        "cancel", lambda: self.call("POST", f"/api/emails/{email.email_id}/cancel")
                    )
                    email.cancel_accepted = status == 200 and answer.get("ok") is True
                else:
                    email.cancel_accepted = await self.say(email, f"cancel Chaos {i}") == "understood"
                if email.cancel_accepted:
                    email.cancel_at = asked_at
        await self.follow(email)

    async def follow(self, email: Email) -> None:
        """Watches the email until it rests, asking again to send it when the mail server refused it."""
        while True:
            view = await self.describe(email)
            email.final = view
            status = view["status"]
            if status in RESTING:
                email.settled = True
                return
            idle = not view["pending_requests"] and status not in ("processing", "sending", "scheduled")
            if idle:
                # `failed`: the mail server refused it for good, and the user is told so: ask again. `waiting`
                # without a plan the user asked for (a revision landed after a refusal): ask again too. An email
                # the user's last understood request scheduled, waiting unscheduled, is left as the app left it.
                unplanned = email.understood_any and not email.scheduled and "unconfirmed" not in email.seen
                refused = status == "failed" or (status == "waiting" and unplanned)
                if email.request_stuck or email.not_understood or not refused:
                    email.settled = True
                    return
                if email.asked_again >= self.config.max_asked_again:
                    email.settled = True
                    return
                email.asked_again += 1
                await self.say(email, f"Chaos {email.index}: send in 3 seconds")
                continue
            if time.monotonic() > self.settle_by:
                return  # not settled: stuck
            pause = 1.0
            if view["will_send"] and view["send_at"]:
                ahead = datetime.fromisoformat(view["send_at"]).timestamp() - time.time()
                pause = min(max(0.5, ahead + 0.3), 5.0)
            await asyncio.sleep(pause)
