"""What one email costs the engine, compared between versions of the app in one run.

    python -m bench.cost                                   # this checkout only
    python -m bench.cost --baseline aa0b4f6 --rounds 2     # A/B/A/B against another commit
    python -m bench.cost --baseline aa0b4f6 --baseline HEAD --no-current   # fixed commits only
    make bench (the last line), make bench-quick (--quick)

For each variant (this checkout, and each `--baseline` commit checked out into a temporary worktree and run
with the same interpreter), on a fresh embedded stack each round (its own Temporal dev server and iWF
server, a zero-latency fake model, aiosmtpd):

- machine-independent figures, counted from the Temporal history of sample emails (temporalio client):
  history events by type, activities (normal, and local ones recorded as markers) and workflow tasks, per
  scheduled email and per sent email: an API email (no card) and a Slack email (a DM, with its card); and
  the delivery ledger's share of a sent email (events one claim adds to the owner's ledger workflow, and
  what opening a ledger costs once per owner and day);
- bytes of data attributes the iWF server sends per state call (counted by a gate between iWF and the
  worker, tests/fakes/worker_gate.py);
- request -> describe shows `scheduled`, one email at a time (p50/p99);
- saturation, per scheduled email and per sent email: N emails from C concurrent clients (each client
  starts an email and sends its request, then the next one: the engine builds a backlog), until all are
  `scheduled` (due in an hour) or `sent` (due in a second): emails/s, and the CPU time (user+system) the
  Temporal server, the iWF server (and its log filter) and the app spent, per email. Completion is found
  by describe sweeps every half second; what those describes cost the engine is measured right after
  (CPU of a batch of describes) and subtracted in the `net` figures.

Rounds alternate the variants (A, B, A, B), so a noisy shared machine hits both alike. Writes
bench/cost-results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client as TemporalClient

from bench.emails import one_email, same_shard, slack_email, takes_one_call, wait_status
from bench.engine_figures import history_counts, ledger_events
from bench.harness import Embedded, embedded, write_results
from bench.latency import summary
from bench.saturation import saturate
from bench.variants import Variant, checkout, remove
from settings import REPO_ROOT
from tests.fakes.worker_gate import WorkerGate
from tests.harness import Api, AppProcess, free_port

RESULTS = Path(__file__).with_name("cost-results.json")
CURRENT = "current"


async def latency(api: Api, run: str, one_call: bool, n: int = 40) -> list[float]:
    """request -> scheduled, one email at a time: from the request's call (the start's, if it carries it)."""
    tag = "lat1" if one_call else "lat"
    latencies: list[float] = []
    for i in range(n):
        wid = f"cost-{run}-{tag}-{i}"
        if not one_call:
            await api.call("POST", f"/api/emails/{wid}", {})
        t0 = time.perf_counter()
        text = f"to: l{i}@example.com; subject: L; body: Latency; send in 3600 seconds"
        await one_email(api, wid, text, one_call, started=not one_call)
        await wait_status(api, wid, "scheduled")
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


async def samples(e: Embedded, session: aiohttp.ClientSession, api: Api, run: str) -> dict[str, Any]:
    """History of scheduled and sent emails, the ledger's share, and request -> scheduled one at a time."""
    temporal = await TemporalClient.connect(e.temporal_host_port)
    one_call = await takes_one_call(api, run)
    scheduled, sent = f"cost-{run}-scheduled", f"cost-{run}-sent"
    await one_email(api, scheduled, "to: s@example.com; subject: S; body: Scheduled; send in 3600 seconds")
    await wait_status(api, scheduled, "scheduled")
    await one_email(api, sent, "to: t@example.com; subject: T; body: Sent; send in 1 seconds")
    await wait_status(api, sent, "sent")
    await asyncio.sleep(1)  # the workflow's last task completes after describe shows sent
    ledger_first = await ledger_events(temporal)
    # A second email claimed in the same ledger: what one more claim costs it.
    second = same_shard(sent, f"cost-{run}-sent2")
    await one_email(api, second, "to: u@example.com; subject: U; body: Sent; send in 1 seconds")
    await wait_status(api, second, "sent")
    await asyncio.sleep(1)
    ledger_second = await ledger_events(temporal)
    first_total, second_total = sum(ledger_first.values()), sum(ledger_second.values())
    slack_sent = await slack_email(
        e, session, api, "UCOSTSLACK", "to: v@example.com; subject: V; body: Card; send in 1 seconds"
    )
    await asyncio.sleep(1)
    latencies = await latency(api, run, one_call=False)
    return {
        "takes_one_call": one_call,
        "history_scheduled": await history_counts(temporal, scheduled),
        "history_sent": await history_counts(temporal, sent),
        "history_sent_slack": await history_counts(temporal, slack_sent),
        "ledger": {
            "ledgers": len(ledger_second),
            "events_after_first_claim": first_total,
            "events_per_claim": second_total - first_total,
        },
        "request_to_scheduled": summary(latencies),
    }


async def one_call_samples(e: Embedded, api: Api, run: str) -> dict[str, Any]:
    """The same, for a start that carries its request: a sent email's history, then request -> scheduled."""
    temporal = await TemporalClient.connect(e.temporal_host_port)
    sent = f"cost-{run}-sent1"
    await one_email(api, sent, "to: w@example.com; subject: W; body: Sent; send in 1 seconds", one_call=True)
    await wait_status(api, sent, "sent")
    await asyncio.sleep(1)
    return {
        "history_sent_one_call": await history_counts(temporal, sent),
        "request_to_scheduled_one_call": summary(await latency(api, run, one_call=True)),
    }


async def bytes_per_state_call(e: Embedded, run: str) -> dict[str, Any]:
    """A second app of the same version whose callbacks pass a counting gate; one sent email."""
    gate = WorkerGate()
    worker_port = free_port()
    gate.target = f"http://127.0.0.1:{worker_port}"
    await gate.start()
    port = free_port()
    env = e.app.env | {"PORT": str(port), "WORKER_PORT": str(worker_port), "WORKER_URL": gate.url}
    app = AppProcess(env=env, log_path=e.state / "gated-app.log", base_url=f"http://127.0.0.1:{port}", cwd=e.app.cwd)
    await asyncio.to_thread(app.start)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, app.base_url)
            wid = f"cost-{run}-bytes"
            await one_email(api, wid, "to: b@example.com; subject: Bytes; body: Counted; send in 1 seconds")
            await wait_status(api, wid, "sent")
            await asyncio.sleep(1)
    finally:
        app.stop()
        await gate.stop()
    # This email's own state calls only (the gated app's new worker URL also opens a delivery ledger).
    states = [p for p in gate.passed if "workflowState" in p.path and p.workflow_id == wid]
    if not states:
        raise RuntimeError(f"no state call of {wid} went through the gate")
    by_state: dict[str, list[int]] = {}
    for p in states:
        by_state.setdefault(f"{p.name} {p.path.rsplit('/', 1)[1]}", []).append(p.data_attribute_bytes)
    return {
        "state_calls": len(states),
        "data_attribute_bytes_per_state_call": round(statistics.mean(p.data_attribute_bytes for p in states)),
        "data_attribute_bytes_per_email": sum(p.data_attribute_bytes for p in states),
        "request_bytes_per_state_call": round(statistics.mean(p.body_bytes for p in states)),
        "by_call": {k: round(statistics.mean(v)) for k, v in sorted(by_state.items())},
    }


async def measure(variant: Variant, n: int, clients: int, round_no: int) -> dict[str, Any]:
    """One round of one variant: its samples and saturations on a fresh stack; for a version whose start can
    carry the request, the one-call path on a second fresh stack (same warm-up, same place in the order as
    the two-call saturation, so neither meets a bigger database)."""
    run = f"{variant.name}-{round_no}-{time.time_ns() % 10**8}"
    state = Path(tempfile.mkdtemp(prefix=f"email-agent-cost-{variant.name}-"))
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with embedded(state / "two", app_dir=variant.app_dir) as e:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                api = Api(session, e.app.base_url)
                result = await samples(e, session, api, run)
                # Each phase measures its own describes' CPU (a finished workflow's costs more than an open one's).
                result["saturation"] = await saturate(e, api, run, n, clients, sent=False)
                result["saturation_sent"] = await saturate(e, api, run, n, clients, sent=True)
            result["bytes"] = await bytes_per_state_call(e, run)
        if result.pop("takes_one_call"):
            async with embedded(state / "one", app_dir=variant.app_dir) as e:
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    api = Api(session, e.app.base_url)
                    result |= await one_call_samples(e, api, run)
                    result["saturation_one_call"] = await saturate(e, api, run, n, clients, sent=False, one_call=True)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return result


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Machine-independent counts from the first round (they are the same every round), timings per round."""
    first = rounds[0]

    def each(phase: str, key: str) -> list[Any]:
        return [r[phase][key] for r in rounds]

    one_call: dict[str, Any] = {}
    if "history_sent_one_call" in first:
        one_call = {
            "history_sent": first["history_sent_one_call"],
            "request_to_scheduled_p50_ms": [r["request_to_scheduled_one_call"]["p50_ms"] for r in rounds],
            "request_to_scheduled_p99_ms": [r["request_to_scheduled_one_call"]["p99_ms"] for r in rounds],
            "scheduled_emails_per_s": each("saturation_one_call", "emails_per_s"),
            "scheduled_net_engine_cpu_ms_per_email": each("saturation_one_call", "net_engine_cpu_ms_per_email"),
            "scheduled_net_cpu_ms_per_email": each("saturation_one_call", "net_cpu_ms_per_email"),
        }
    return {
        "one_call": one_call or None,
        "history_scheduled": {k: v for k, v in first["history_scheduled"].items() if k != "sequence"},
        "history_sent": {k: v for k, v in first["history_sent"].items() if k != "sequence"},
        "history_sent_slack": {k: v for k, v in first["history_sent_slack"].items() if k != "sequence"},
        "ledger": first["ledger"],
        "bytes": first["bytes"],
        "request_to_scheduled_p50_ms": [r["request_to_scheduled"]["p50_ms"] for r in rounds],
        "request_to_scheduled_p99_ms": [r["request_to_scheduled"]["p99_ms"] for r in rounds],
        "scheduled": {
            "emails_per_s": each("saturation", "emails_per_s"),
            "engine_cpu_ms_per_email": each("saturation", "engine_cpu_ms_per_email"),
            "net_engine_cpu_ms_per_email": each("saturation", "net_engine_cpu_ms_per_email"),
            "net_cpu_ms_per_email": each("saturation", "net_cpu_ms_per_email"),
            "describes_per_email": each("saturation", "describes_per_email"),
            "cpu_ms_per_describe": each("saturation", "cpu_ms_per_describe"),
        },
        "sent": {
            "emails_per_s": each("saturation_sent", "emails_per_s"),
            "engine_cpu_ms_per_email": each("saturation_sent", "engine_cpu_ms_per_email"),
            "net_engine_cpu_ms_per_email": each("saturation_sent", "net_engine_cpu_ms_per_email"),
            "net_cpu_ms_per_email": each("saturation_sent", "net_cpu_ms_per_email"),
            "ledger_events_per_email": each("saturation_sent", "ledger_events_per_email"),
            "cpu_ms_per_describe": each("saturation_sent", "cpu_ms_per_describe"),
        },
    }


async def main(baselines: list[str], rounds: int, n: int, clients: int, current: bool = True) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="email-agent-cost-"))
    variants: list[Variant] = []
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        variants = [checkout(rev, workdir) for rev in baselines] + ([Variant(CURRENT, REPO_ROOT)] if current else [])
        results = {v.name: [] for v in variants}
        for round_no in range(rounds):
            for variant in variants:
                print(f"round {round_no + 1}: {variant.name}", flush=True)
                results[variant.name].append(await measure(variant, n, clients, round_no))
    finally:
        for variant in variants:
            if variant.name != CURRENT:
                remove(variant)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "method": f"{rounds} alternating rounds, fresh engine each; saturation: {n} emails from {clients} clients",
        "variants": {name: combine(r) for name, r in results.items()},
        "raw": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", action="append", default=[], help="a commit to compare with (repeatable)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--no-current", action="store_true", help="only the given commits (the tree may change)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, 30 emails from 10 clients")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.n, args.clients = 1, 30, 10
    output = asyncio.run(main(args.baseline, args.rounds, args.n, args.clients, current=not args.no_current))
    write_results(RESULTS, output, args.quick)
    print(json.dumps(output["variants"], indent=2))
