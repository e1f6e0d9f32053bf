"""What one email costs the engine, compared between versions of the app in one run.

    python -m bench.cost                                   # this checkout only
    python -m bench.cost --baseline aa0b4f6 --rounds 2     # A/B/A/B against another commit
    make bench-cost

For each variant (this checkout, and each `--baseline` commit checked out into a temporary worktree and run
with the same interpreter), on a fresh embedded stack each round (its own Temporal dev server and iWF
server, a zero-latency fake model, aiosmtpd):

- machine-independent figures, counted from the Temporal history of sample emails (temporalio client):
  history events, activities (normal, and local ones recorded as markers) and workflow tasks, per
  scheduled email and per sent email (API emails without a card);
- bytes of data attributes the iWF server sends per state call (counted by a gate between iWF and the
  worker, tests/fakes/worker_gate.py);
- request -> describe shows `scheduled`, one email at a time (p50/p99);
- saturation: N emails from C concurrent clients until all are scheduled: emails/s, and the CPU time
  (user+system) the Temporal server, the iWF server and the app spent, per email.

Rounds alternate the variants (A, B, A, B), so a noisy shared machine hits both alike. Writes
bench/cost-results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from temporalio.client import Client as TemporalClient

from bench.harness import Embedded, embedded
from bench.latency import summary
from settings import REPO_ROOT
from tests.fakes.worker_gate import WorkerGate
from tests.harness import Api, AppProcess, free_port

RESULTS = Path(__file__).with_name("cost-results.json")
CURRENT = "current"


@dataclass(frozen=True)
class Variant:
    name: str
    app_dir: Path


def checkout(rev: str, into: Path) -> Variant:
    """A detached worktree of `rev`, run with this checkout's interpreter and dependencies."""
    target = into / f"app-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", str(target), rev], cwd=REPO_ROOT, check=True)
    return Variant(rev, target)


def remove(variant: Variant) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(variant.app_dir)], cwd=REPO_ROOT, check=False)


def cpu_seconds(pid: int) -> float:
    """The process and its live children: the iWF server runs under a log-filtering wrapper script."""
    process = psutil.Process(pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def engine_pids(e: Embedded) -> dict[str, int]:
    pids = {name: process.pid for name, process in e.stack.started.items() if process.pid}
    assert e.app.popen is not None
    pids["app"] = e.app.popen.pid
    return pids


async def history_counts(temporal_host_port: str, workflow_id: str) -> dict[str, int]:
    client = await TemporalClient.connect(temporal_host_port)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(event.WhichOneof("attributes") for event in history.events)
    return {
        "events": len(history.events),
        "activities": kinds["activity_task_scheduled_event_attributes"],
        "local_activities": kinds["marker_recorded_event_attributes"],
        "workflow_tasks": kinds["workflow_task_completed_event_attributes"],
        "timers": kinds["timer_started_event_attributes"],
        "updates": kinds["workflow_execution_update_accepted_event_attributes"],
    }


async def wait_status(api: Api, wid: str, *statuses: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, view = await api.call("GET", f"/api/emails/{wid}")
        if status == 200 and view["status"] in statuses and not view["pending_requests"]:
            return dict(view)
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{wid} never reached {statuses}")


async def one_email(api: Api, wid: str, text: str) -> None:
    for attempt in range(100):
        status, _ = await api.call("POST", f"/api/emails/{wid}", {})
        if status < 500:
            break
        await asyncio.sleep(0.05 * (attempt + 1))
    for attempt in range(100):
        status, answer = await api.call("POST", f"/api/emails/{wid}/messages", {"text": text, "message_id": "m1"})
        if status < 500:
            assert status == 202, answer
            return
        await asyncio.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"{wid}: the request was never accepted")


async def samples(e: Embedded, api: Api, run: str) -> dict[str, Any]:
    """History of one scheduled and one sent email, and request -> scheduled one at a time."""
    scheduled, sent = f"cost-{run}-scheduled", f"cost-{run}-sent"
    await one_email(api, scheduled, "to: s@example.com; subject: S; body: Scheduled; send in 3600 seconds")
    await wait_status(api, scheduled, "scheduled")
    await one_email(api, sent, "to: t@example.com; subject: T; body: Sent; send in 1 seconds")
    await wait_status(api, sent, "sent")
    await asyncio.sleep(1)  # the workflow's last task completes after describe shows sent
    latencies: list[float] = []
    for i in range(30):
        wid = f"cost-{run}-lat-{i}"
        await api.call("POST", f"/api/emails/{wid}", {})
        t0 = time.perf_counter()
        await one_email(api, wid, f"to: l{i}@example.com; subject: L; body: Latency; send in 3600 seconds")
        await wait_status(api, wid, "scheduled")
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "history_scheduled": await history_counts(e.temporal_host_port, scheduled),
        "history_sent": await history_counts(e.temporal_host_port, sent),
        "request_to_scheduled": summary(latencies),
    }


async def saturate(e: Embedded, api: Api, run: str, n: int, clients: int) -> dict[str, Any]:
    pids = engine_pids(e)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def client() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            wid = f"cost-{run}-sat-{i}"
            await one_email(api, wid, f"to: x{i}@example.com; subject: X; body: Load; send in 3600 seconds")
            await wait_status(api, wid, "scheduled", timeout=600)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return {
        "emails": n,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "emails_per_s": round(n / elapsed, 1),
        "cpu_ms_per_email": {name: round(seconds * 1000 / n, 1) for name, seconds in spent.items()},
        "engine_cpu_ms_per_email": round((spent.get("temporal", 0) + spent.get("iwf", 0)) * 1000 / n, 1),
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
    states = [p for p in gate.passed if "workflowState" in p.path]
    by_state: dict[str, list[int]] = {}
    for p in states:
        by_state.setdefault(f"{p.name} {p.path.rsplit('/', 1)[1]}", []).append(p.data_attribute_bytes)
    return {
        "state_calls": len(states),
        "data_attribute_bytes_per_state_call": round(statistics.mean(p.data_attribute_bytes for p in states)),
        "request_bytes_per_state_call": round(statistics.mean(p.body_bytes for p in states)),
        "by_call": {k: round(statistics.mean(v)) for k, v in sorted(by_state.items())},
    }


async def measure(variant: Variant, n: int, clients: int, round_no: int) -> dict[str, Any]:
    run = f"{variant.name}-{round_no}-{time.time_ns() % 10**8}"
    state = Path(tempfile.mkdtemp(prefix=f"email-agent-cost-{variant.name}-"))
    async with embedded(state, app_dir=variant.app_dir) as e:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            api = Api(session, e.app.base_url)
            result = await samples(e, api, run)
            result["saturation"] = await saturate(e, api, run, n, clients)
        result["bytes"] = await bytes_per_state_call(e, run)
    return result


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Machine-independent counts from the first round (they are the same every round), timings per round."""
    first = rounds[0]
    return {
        "history_scheduled": first["history_scheduled"],
        "history_sent": first["history_sent"],
        "bytes": first["bytes"],
        "request_to_scheduled_p50_ms": [r["request_to_scheduled"]["p50_ms"] for r in rounds],
        "request_to_scheduled_p99_ms": [r["request_to_scheduled"]["p99_ms"] for r in rounds],
        "emails_per_s": [r["saturation"]["emails_per_s"] for r in rounds],
        "engine_cpu_ms_per_email": [r["saturation"]["engine_cpu_ms_per_email"] for r in rounds],
        "cpu_ms_per_email": [r["saturation"]["cpu_ms_per_email"] for r in rounds],
    }


async def main(baselines: list[str], rounds: int, n: int, clients: int, current: bool = True) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="email-agent-cost-"))
    variants = [checkout(rev, workdir) for rev in baselines] + ([Variant(CURRENT, REPO_ROOT)] if current else [])
    results: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    try:
        for round_no in range(rounds):
            for variant in variants:
                print(f"round {round_no + 1}: {variant.name}", flush=True)
                results[variant.name].append(await measure(variant, n, clients, round_no))
    finally:
        for variant in variants:
            if variant.name != CURRENT:
                remove(variant)
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
    args = parser.parse_args()
    output = asyncio.run(main(args.baseline, args.rounds, args.n, args.clients, current=not args.no_current))
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output["variants"], indent=2))
