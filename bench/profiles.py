"""The dev server and the production profile measured in one run, on the same machine, same load:

    python -m bench.profiles [--n 600] [--burst 300] [--clients 32]     # make bench-profiles

For each profile: the bring-up time (binaries already built), emails scheduled per second at saturation
(N emails through the HTTP API from many clients at once, until all are `scheduled`), emails sent per
second when B of them fall due at the same moment, and the memory (PSS) of every process. Results go to
bench/profiles-results.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.harness import embedded, production, production_state_in
from bench.scale import schedule
from tests.harness import Api, SmtpSink

RESULTS = Path(__file__).with_name("profiles-results.json")


def pss_mb(pid: int) -> float:
    """Proportional set size of a process and its children: shared pages counted once, so PostgreSQL's
    backends (which all map its shared buffers) are not counted a hundred times over as with RSS."""
    process = psutil.Process(pid)
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except psutil.Error:
            continue
    return round(total / 2**20, 1)


@dataclass
class Target:
    base_url: str
    sink: SmtpSink
    pids: dict[str, int]


@asynccontextmanager
async def profile(name: str, state: Path) -> AsyncIterator[Target]:
    if name == "dev":
        async with embedded(state) as e:
            assert e.app.popen is not None
            pids = {n: p.pid or 0 for n, p in e.stack.started.items()} | {"app": e.app.popen.pid}
            yield Target(e.app.base_url, e.sink, pids)
    else:
        async with production(production_state_in(state)) as p:
            yield Target(p.base_url, p.sink, {n: proc.pid or 0 for n, proc in p.stack.started.items()})


async def measure(name: str, n: int, burst: int, clients: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix=f"email-agent-{name}-"))
    t0 = time.perf_counter()
    try:
        async with profile(name, state) as target:
            bring_up = time.perf_counter() - t0
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                api = Api(session, target.base_url)
                far = "send in 86400 seconds"
                await schedule(api, "warm", 20, lambda i: f"to: w{i}@example.com; subject: W; body: Hi; {far}")
                accepted, scheduled = await schedule(
                    api, "sat", n, lambda i: f"to: s{i}@example.com; subject: S; body: Hi; {far}", clients
                )
                lead = max(30, burst // 8)
                due = time.time() + lead

                def text(i: int) -> str:
                    return f"to: b{i}@example.com; subject: B; body: Hi; send in {round(due - time.time())} seconds"

                await schedule(api, "burst", burst, text, clients)
                sent_per_s, delivered = await _burst(target.sink, burst, due)
            memory = {part: pss_mb(pid) for part, pid in target.pids.items() if pid}
        return {
            "profile": name,
            "bring_up_s": round(bring_up, 1),
            "emails": n,
            "accepted_per_s": round(n / accepted, 1),
            "scheduled_per_s": round(n / scheduled, 1),
            "burst": burst,
            "burst_delivered": delivered,
            "burst_sent_per_s": sent_per_s,
            "pss_mb": memory,
            "pss_mb_total": round(sum(memory.values()), 1),
        }
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def _burst(sink: SmtpSink, burst: int, due: float) -> tuple[float | None, int]:
    deadline = due + 300
    while time.time() < deadline:
        arrived = {r.rcpt_tos[0]: r.at for r in sink.received if r.rcpt_tos[0].startswith("b")}
        if len(arrived) >= burst:
            break
        await asyncio.sleep(0.5)
    arrived = {r.rcpt_tos[0]: r.at for r in sink.received if r.rcpt_tos[0].startswith("b")}
    if not arrived:
        return None, 0
    window = max(arrived.values()) - due
    return (round(len(arrived) / window, 1) if window > 0 else None), len(arrived)


async def main(n: int, burst: int, clients: int) -> dict[str, Any]:
    results = []
    for name in ("dev", "production"):
        result = await measure(name, n, burst, clients)
        print(json.dumps(result), flush=True)
        results.append(result)
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "clients": clients, "profiles": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    out = asyncio.run(main(args.n, args.burst, args.clients))
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
