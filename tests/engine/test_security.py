"""Safe by default, each attack tried through the real engine: recipients the owner never wrote, limits, who
the email says it is from, per-user tokens, and forged calls to the worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.slack.threads import thread_email_id
from tests.fakes.slack_server import TEAM, action_body
from tests.harness import (
    API_TOKEN,
    WORKER_SECRET,
    Api,
    AppProcess,
    Slack,
    SmtpSink,
    unique,
    variant_of,
    wait_for_mail,
)

pytestmark = pytest.mark.engine


@pytest.fixture
async def variant(app_process: AppProcess, tmp_path: Path) -> AsyncIterator[Any]:
    """Start an app like the session's with some settings changed: `async with variant(X=...) as api`."""
    started: list[AppProcess] = []

    def make(**env: str) -> Any:
        app = variant_of(app_process, tmp_path / f"v{len(started)}", **env)
        started.append(app)

        class Running:
            async def __aenter__(self) -> Api:
                (tmp_path / f"v{len(started) - 1}").mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(app.start)
                self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
                return Api(self.session, app.base_url)

            async def __aexit__(self, *exc: object) -> None:
                await self.session.close()
                app.stop()

        return Running()

    yield make
    for app in started:
        app.stop()


# --- recipients come from the user ----------------------------------------------------------------------


async def test_an_address_the_owner_never_wrote_is_not_used_until_confirmed(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("unwritten")
    await api.start(wid)
    await api.say(wid, "write to my accountant; subject: Receipts; body: Attached soon; send in 2 seconds")
    view = await api.wait_for(wid, "waiting")
    assert view["to"] == [] and view["unconfirmed"] == ["accountant@numbers.example"]
    assert not view["will_send"] and "New recipient: accountant@numbers.example" in view["last_reply"]
    await asyncio.sleep(4)  # past the time asked for: nothing went out
    assert smtp_sink.to("accountant@numbers.example") == []
    status, body = await api.call(
        "POST", f"/api/emails/{wid}/recipients/confirm", {"address": "accountant@numbers.example"}
    )
    assert status == 202 and body["ok"], body
    # Confirmed within the 2 minutes that count as "now": it goes out at once, to the confirmed address.
    view = await api.wait_for(wid, "sent")
    assert view["to"] == ["accountant@numbers.example"] and view["unconfirmed"] == []
    assert view["conversation"][-1]["text"].startswith("accountant@numbers.example confirmed.")
    [mail] = await wait_for_mail(smtp_sink, "accountant@numbers.example")
    assert mail.message["Subject"] == "Receipts"


async def test_a_removed_address_is_never_written_to(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("removed")
    await api.start(wid)
    await api.say(wid, f"to: zed@example.com; subject: {wid}; body: Hello")
    await api.say(wid, "also write to my accountant; send in 3 seconds")
    view = await api.wait_for(wid, "waiting")
    assert view["unconfirmed"] == ["accountant@numbers.example"]
    status, _ = await api.call(
        "POST", f"/api/emails/{wid}/recipients/remove", {"address": "accountant@numbers.example"}
    )
    assert status == 202
    view = await api.wait_for(wid, "sent", timeout=60)
    assert view["unconfirmed"] == [] and "accountant" not in json.dumps(view["to"])
    [mail] = [m for m in await wait_for_mail(smtp_sink, "zed@example.com") if m.message["Subject"] == wid]
    assert "accountant" not in str(mail.message["To"]) and mail.message["Cc"] is None
    assert not [m for m in smtp_sink.to("accountant@numbers.example") if m.message["Subject"] == wid]


async def test_an_address_the_owner_wrote_goes_straight_out(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("written")
    await api.start(wid)
    await api.say(wid, "to: ana.s@example.com; subject: Thanks; body: Thank you; send in 1 seconds")
    await api.wait_for(wid, "sent")
    await wait_for_mail(smtp_sink, "ana.s@example.com")


async def test_external_recipients_need_confirmation_when_configured(variant: Any, smtp_sink: SmtpSink) -> None:
    async with variant(CONFIRM_EXTERNAL_RECIPIENTS="true", ALLOWED_RECIPIENT_DOMAINS="example.com") as api:
        wid = unique("external")
        await api.start(wid)
        await api.say(wid, "to: in@example.com, out@partner.example; subject: Plan; body: Hi; send in 20 seconds")
        view = await api.wait_for(wid, "waiting")
        assert view["to"] == ["in@example.com"] and view["unconfirmed"] == ["out@partner.example"]
        assert "outside example.com" in view["last_reply"], "the user wrote it: the reason is the domain"
        status, _ = await api.call("POST", f"/api/emails/{wid}/recipients/confirm", {"address": "out@partner.example"})
        assert status == 202
        view = await api.wait_for(wid, "scheduled")
        assert view["to"] == ["in@example.com", "out@partner.example"]
        await api.call("POST", f"/api/emails/{wid}/cancel")


# --- limits ------------------------------------------------------------------------------------------------


async def test_limits_refuse_with_a_message_and_lose_nothing(variant: Any, smtp_sink: SmtpSink) -> None:
    async with variant(MAX_RECIPIENTS_PER_EMAIL="2", MAX_BODY_CHARS="200", SEND_LIMIT_PER_USER_PER_DAY="1") as api:
        wid = unique("too-many")
        await api.start(wid)
        await api.say(wid, "to: a1@example.com, a2@example.com, a3@example.com; subject: S; body: B")
        view = await api.wait_for(wid, "waiting")
        assert "3 recipients is more than the 2" in view["last_reply"] and view["to"] == []
        assert view["conversation"][0]["text"].startswith("to: a1@"), "the request is kept"

        wid = unique("too-long")
        await api.start(wid)
        await api.say(wid, "to: l@example.com; subject: S; a long body please; send in 1 seconds")
        view = await api.wait_for(wid, "waiting")
        assert "the limit is 200" in view["last_reply"] and not view["will_send"]
        # Send now checks the body too: the owner's click does not get an over-long body past the limit.
        status, _ = await api.call("POST", f"/api/emails/{wid}/send-now", {"message_id": "too-long-now"})
        assert status == 202
        view = await api.wait_for(wid, "waiting")
        reply = view["last_reply"]
        assert reply.startswith("Sending now.") and "the limit is 200" in reply and not view["will_send"], view
        await asyncio.sleep(3)
        assert smtp_sink.to("l@example.com") == [], "nothing over the limit went out"

        first, second = unique("daily-1"), unique("daily-2")
        for wid in (first, second):
            status, _ = await api.call("POST", f"/api/emails/{wid}", {"owner": "dana"})
            assert status == 201
        for wid, who in ((first, "d1"), (second, "d2")):
            status, body = await api.call(
                "POST",
                f"/api/emails/{wid}/messages",
                {"text": f"to: {who}@example.com; subject: S; body: B; send in 1 seconds", "actor": "dana"},
            )
            assert status == 202, body
            await api.wait_for(wid, "sent", "failed")
        assert (await api.describe(first))["status"] == "sent"
        view = await api.describe(second)
        assert view["status"] == "failed" and "daily limit of 1" in view["last_error"]
        assert smtp_sink.to("d2@example.com") == [] and len(smtp_sink.to("d1@example.com")) == 1


async def test_an_email_refused_then_edited_counts_once_against_the_daily_limit(
    variant: Any, smtp_sink: SmtpSink
) -> None:
    """The mail server refuses the first version; the edited one (a new revision, a new Message-ID, a new
    claim) is the same email, so a limit of one still lets it out, and a second email is still refused."""
    refused = "refused-once@example.com"
    smtp_sink.fault = lambda envelope: "554 5.7.1 not today" if refused in envelope.rcpt_tos else None
    try:
        async with variant(SEND_LIMIT_PER_USER_PER_DAY="1") as api:
            wid, other = unique("limit-edit"), unique("limit-other")
            for email_id in (wid, other):
                status, _ = await api.call("POST", f"/api/emails/{email_id}", {"owner": "erin"})
                assert status == 201
            text = f"to: {refused}; subject: First; body: B; send in 1 seconds"
            status, _ = await api.call("POST", f"/api/emails/{wid}/messages", {"text": text, "actor": "erin"})
            assert status == 202
            view = await api.wait_for(wid, "failed")
            assert "not today" in view["last_error"], view
            text = "to: kept@example.com; subject: Second try; body: B; send in 1 seconds"
            status, _ = await api.call("POST", f"/api/emails/{wid}/messages", {"text": text, "actor": "erin"})
            assert status == 202
            view = await api.wait_for(wid, "sent", "failed")
            assert view["status"] == "sent", view
            assert [m.message["Subject"] for m in smtp_sink.to("kept@example.com")] == ["Second try"]
            text = "to: third@example.com; subject: Another; body: B; send in 1 seconds"
            status, _ = await api.call("POST", f"/api/emails/{other}/messages", {"text": text, "actor": "erin"})
            assert status == 202
            view = await api.wait_for(other, "failed")
            assert "daily limit of 1" in view["last_error"] and smtp_sink.to("third@example.com") == []
    finally:
        smtp_sink.fault = None


# --- who it is from ------------------------------------------------------------------------------------------


async def test_the_email_says_who_asked_for_it(slack: Slack, smtp_sink: SmtpSink) -> None:
    user = f"UZOE{unique('z')[-8:]}"
    slack.fake.names[user] = "Zoë Ürban"
    slack.fake.emails[user] = {"email": "zoe@corp.example"}
    await slack.dm(user, "to: rita@example.com; subject: Hello; body: Hi Rita; send in 1 seconds")
    [mail] = await wait_for_mail(smtp_sink, "rita@example.com")
    [sender] = mail.message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Zoë Ürban (via email-agent)", "assistant@example.org")
    assert mail.message["Reply-To"].addresses[0].addr_spec == "zoe@corp.example"
    raw = dict(mail.message.raw_items())["From"]
    assert raw.isascii() and "=?utf-8?" in raw.lower(), raw
    assert mail.mail_from == "assistant@example.org", "the envelope sender stays the account"


async def test_a_profile_name_with_line_breaks_is_sent_on_one_line(slack: Slack, smtp_sink: SmtpSink) -> None:
    """A Slack name is free text: a line break or tab in it once failed every send at the header check."""
    user = f"UNL{unique('n')[-8:]}"
    slack.fake.names[user] = "Zoë\nÜrban\t(ops)\u2028 "
    await slack.dm(user, "to: oneline@example.com; subject: Hi; body: Hello; send in 1 seconds")
    [mail] = await wait_for_mail(smtp_sink, "oneline@example.com")
    [sender] = mail.message["From"].addresses
    assert sender.display_name == "Zoë Ürban (ops) (via email-agent)"


async def test_a_profile_address_with_a_non_latin_domain_is_sent_as_the_mail_server_takes_it(
    slack: Slack, smtp_sink: SmtpSink
) -> None:
    """Slack's profile.email as the user's domain spells it: Reply-To carries its IDNA form, and the email goes
    out (it failed at its send time, every time, with the address as Slack gave it)."""
    user = f"UANNA{unique('a')[-8:]}"
    slack.fake.emails[user] = {"email": "anna@müller.de"}
    await slack.dm(user, "to: idna-reply@example.com; subject: Hallo; body: Hi; send in 1 seconds")
    [mail] = await wait_for_mail(smtp_sink, "idna-reply@example.com")
    assert mail.message["Reply-To"].addresses[0].addr_spec == "anna@xn--mller-kva.de"


async def test_api_emails_can_name_their_owner(api: Api, smtp_sink: SmtpSink) -> None:
    wid = unique("named")
    status, _ = await api.call(
        "POST", f"/api/emails/{wid}", {"owner": "omar", "owner_name": "Omar", "owner_email": "omar@corp.example"}
    )
    assert status == 201
    status, _ = await api.call(
        "POST",
        f"/api/emails/{wid}/messages",
        {"text": "to: pat@example.com; subject: S; body: B; send in 1 seconds", "actor": "omar"},
    )
    assert status == 202
    [mail] = await wait_for_mail(smtp_sink, "pat@example.com")
    [sender] = mail.message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Omar (via email-agent)", "assistant@example.org")
    assert mail.message["Reply-To"].addresses[0].addr_spec == "omar@corp.example"


async def test_a_long_owner_name_is_shortened_and_keeps_the_via(api: Api, smtp_sink: SmtpSink) -> None:
    wid, name = unique("long-name"), "Maximiliane " + "Ä" * 85  # 97 characters: the API's longest is 100
    status, _ = await api.call("POST", f"/api/emails/{wid}", {"owner": "max", "owner_name": name})
    assert status == 201
    text = "to: ln@example.com; subject: S; body: B; send in 1 seconds"
    status, _ = await api.call("POST", f"/api/emails/{wid}/messages", {"text": text, "actor": "max"})
    assert status == 202
    [mail] = await wait_for_mail(smtp_sink, "ln@example.com")
    # Decoded as RFC 2047 says (adjacent encoded words joined), not by the modern parser's display_name,
    # which puts a space between the encoded words a long name is folded into.
    decoded = str(make_header(decode_header(dict(mail.message.raw_items())["From"])))
    shown = decoded.rsplit(" <", 1)[0]
    assert shown.startswith("Maximiliane ÄÄ") and shown.endswith("… (via email-agent)") and len(shown) == 100, shown


# --- tokens ------------------------------------------------------------------------------------------------


async def test_a_user_token_acts_only_as_its_user(api: Api) -> None:
    status, issued = await api.call("POST", "/api/tokens", {"user": "alice", "ttl_days": 1})
    assert status == 201 and issued["user"] == "alice", issued
    alice = issued["token"]
    assert API_TOKEN not in alice
    bobs = unique("bobs")
    await api.call("POST", f"/api/emails/{bobs}", {"owner": "bob"})
    mine = unique("alices")
    status, _ = await api.call("POST", f"/api/emails/{mine}", {}, token=alice)
    assert status == 201
    assert (await api.describe(mine))["owner"] == "alice", "a user token's emails are its user's"
    # Another user's email: not readable, not changeable, not cancelable; no actor can be claimed.
    for method, path, payload in (
        ("GET", "", None),
        ("POST", "/messages", {"text": "hi"}),
        ("POST", "/messages", {"text": "hi", "actor": "bob"}),
        ("PUT", "/draft", {"text": "x"}),
        ("POST", "/cancel", {"actor": "bob"}),
    ):
        status, body = await api.call(method, f"/api/emails/{bobs}{path}", payload, token=alice)
        assert status == 403 and body["error"]["code"] == "forbidden", (method, path, body)
    assert (await api.describe(bobs))["conversation"] == [], "nothing reached bob's email"
    status, body = await api.call("POST", f"/api/emails/{mine}/messages", {"text": "hello"}, token=alice)
    assert status == 202, body
    status, _ = await api.call("POST", "/api/tokens", {"user": "mallory"}, token=alice)
    assert status == 403, "only the admin token issues tokens"
    tampered = alice[:-3] + ("AAA" if not alice.endswith("AAA") else "BBB")
    status, _ = await api.call("GET", f"/api/emails/{mine}", token=tampered)
    assert status == 401


async def test_a_user_tokens_emails_carry_the_name_and_address_the_admin_issued_it_with(
    api: Api, smtp_sink: SmtpSink
) -> None:
    """A user token cannot send as someone else: From's name and Reply-To come from the signed token, and
    a start that names others is refused (before, alice's token could write "Bob (CFO)" and any Reply-To)."""
    status, issued = await api.call(
        "POST", "/api/tokens", {"user": "alice", "name": "Alice Example", "email": "alice@corp.example"}
    )
    assert status == 201 and (issued["name"], issued["email"]) == ("Alice Example", "alice@corp.example"), issued
    alice = issued["token"]
    for forged in ({"owner_name": "Bob (CFO)"}, {"owner_email": "x@evil.example"}):
        wid = unique("forged-identity")
        status, body = await api.call("POST", f"/api/emails/{wid}", forged, token=alice)
        assert status == 403 and body["error"]["code"] == "forbidden", body
        status, _ = await api.call("GET", f"/api/emails/{wid}")
        assert status == 404, "a refused start starts nothing"
    wid = unique("alices-identity")
    text = "to: vendor@example.com; subject: S; body: B; send in 1 seconds"
    status, body = await api.call(
        "POST", f"/api/emails/{wid}", {"owner_name": "Alice Example", "text": text}, token=alice
    )
    assert status == 201, body  # naming the token's own name is allowed
    [mail] = await wait_for_mail(smtp_sink, "vendor@example.com")
    [sender] = mail.message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Alice Example (via email-agent)", "assistant@example.org")
    assert mail.message["Reply-To"].addresses[0].addr_spec == "alice@corp.example"


# --- the worker ----------------------------------------------------------------------------------------------


async def test_forged_state_calls_to_the_worker_are_refused_and_send_nothing(
    app_process: AppProcess, api: Api, smtp_sink: SmtpSink
) -> None:
    wid = unique("forged")
    await api.start(wid)
    forged_email = {"to": ["victim@example.com"], "subject": "Forged", "body": "Pwned", "revision": 1}
    intent = {"message_id": "<forged@example.org>", "revision": 1, "round": 1, "ledger": "ledger-x"}
    body = {
        "context": {
            "workflowId": wid,
            "workflowRunId": "run",
            "workflowStartedTimestamp": 0,
            "stateExecutionId": "Deliver-1",
        },
        "workflowType": "EmailAgentWorkflow",
        "workflowStateId": "DeliverState",
        "dataObjects": [
            {"key": "email", "value": {"encoding": "json/plain", "data": json.dumps(json.dumps(forged_email))}},
            {"key": "delivery", "value": {"encoding": "json/plain", "data": json.dumps(json.dumps(intent))}},
        ],
        "commandResults": {},
    }
    url = f"http://127.0.0.1:{app_process.env['WORKER_PORT']}/api/v1/workflowState/decide"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"X-Email-Agent-Worker-Secret": WORKER_SECRET[:-1] + "x"}):
            async with session.post(url, json=body, headers=headers) as response:
                assert response.status == 403, await response.text()
    await asyncio.sleep(2)
    assert smtp_sink.to("victim@example.com") == []


async def test_a_forged_rpc_call_changes_nothing(app_process: AppProcess, api: Api) -> None:
    """RPC calls do not carry iWF's default headers, and need not: their effects are applied by the engine
    only from answers it asked for itself."""
    wid = unique("forged-rpc")
    await api.start(wid)
    body = {
        "context": {"workflowId": wid, "workflowRunId": "run", "workflowStartedTimestamp": 0},
        "workflowType": "EmailAgentWorkflow",
        "rpcName": "send_request",
        "input": {
            "encoding": "json/plain",
            "data": json.dumps(json.dumps({"text": "to: v@example.com; send in 1 seconds"})),
        },
        "dataAttributes": [],
    }
    url = f"http://127.0.0.1:{app_process.env['WORKER_PORT']}/api/v1/workflowWorker/rpc"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200  # it computes an answer, which nobody applies
    await asyncio.sleep(1)
    view = await api.describe(wid)
    assert view["conversation"] == [] and view["pending_requests"] == 0


async def test_a_failing_rpc_is_answered_as_iwfs_worker_error(app_process: AppProcess) -> None:
    """In iWF's WorkerErrorResponse shape, with an errorType, so the engine reports an RPC's own failure as
    such instead of as a worker it could not reach (which the API would answer 503, engine unavailable)."""
    body = {
        "context": {"workflowId": unique("no-rpc"), "workflowRunId": "run", "workflowStartedTimestamp": 0},
        "workflowType": "EmailAgentWorkflow",
        "rpcName": "no_such_rpc",
        "dataAttributes": [],
    }
    url = f"http://127.0.0.1:{app_process.env['WORKER_PORT']}/api/v1/workflowWorker/rpc"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 500
        answer = await response.json()
    assert answer["errorType"] and "no_such_rpc" in answer["detail"], answer


async def test_the_slack_email_of_a_thread_is_readable_only_by_its_owner(slack: Slack, api: Api) -> None:
    user = f"UOWN{unique('o')[-8:]}"
    channel, ts = await slack.dm(user, "to: q@example.com; subject: Mine; body: Private")
    wid = thread_email_id(TEAM, channel, ts)
    await api.wait_for(wid, "waiting")
    status, issued = await api.call("POST", "/api/tokens", {"user": "someone-else"})
    status, body = await api.call("GET", f"/api/emails/{wid}", token=issued["token"])
    assert status == 403, body
    status, issued = await api.call("POST", "/api/tokens", {"user": user})
    status, body = await api.call("GET", f"/api/emails/{wid}", token=issued["token"])
    assert status == 200 and body["subject"] == "Mine"


async def test_the_card_asks_and_the_owners_click_confirms(slack: Slack, api: Api, smtp_sink: SmtpSink) -> None:
    user = f"UCNF{unique('c')[-8:]}"
    channel, ts = await slack.dm(user, "write to my accountant; subject: Books; body: Ready; send in 1 seconds")
    card = await slack.card(channel, ts)
    asked = await slack.wait_card(channel, card, "New recipient")
    [confirm] = [
        element
        for block in asked["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == "confirm_recipient"
    ]
    stranger = f"USTR{unique('s')[-8:]}"
    click = action_body("confirm_recipient", confirm["value"], stranger, channel, card, ts)
    status, _ = await slack.post(click, "application/x-www-form-urlencoded")
    assert status == 200
    for _ in range(200):  # the stranger is told (an ephemeral note): the click has been answered
        if slack.fake.of("chat.postEphemeral", user=stranger):
            break
        await asyncio.sleep(0.05)
    [told] = slack.fake.of("chat.postEphemeral", user=stranger)
    view = await api.describe(thread_email_id(TEAM, channel, ts))
    assert view["unconfirmed"] == ["accountant@numbers.example"] and view["to"] == [], (told.args, view)
    books = [m for m in smtp_sink.to("accountant@numbers.example") if m.message["Subject"] == "Books"]
    assert books == [], "a stranger's click confirms nothing"
    click = action_body("confirm_recipient", confirm["value"], user, channel, card, ts)
    status, _ = await slack.post(click, "application/x-www-form-urlencoded")
    assert status == 200
    view = await api.wait_for(thread_email_id(TEAM, channel, ts), "sent")
    books = [m for m in smtp_sink.to("accountant@numbers.example") if m.message["Subject"] == "Books"]
    assert len(books) == 1
    assert view["status"] == "sent" and view["to"] == ["accountant@numbers.example"]
