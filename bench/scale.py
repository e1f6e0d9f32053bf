"""How far one machine goes: many waiting emails, a burst of timers, and where the time goes.

    python -m bench.scale [--sizes 1000,5000,10000] [--burst 1000] [--quick]

- scale: N emails scheduled far in the future through the HTTP API (16 clients at once): time to get
  them all accepted and all `scheduled`, the app's RSS before and after (it should stay flat: the app
  keeps no per-email state), the Temporal dev server's RSS and its SQLite file.
- burst: M emails all due within the same minute: delivered minus due, and emails sent per second.
- profile: py-spy samples the app during the scale run; the hottest functions are listed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.harness import Embedded, embedded
from bench.latency import summary
from tests.harness import Api

RESULTS = Path(__file__).with_name("scale-results.json")
CLIENTS = 16


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    total = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
    return round(float(total) / 2**20, 1)


async def pool(items: list[Any], worker: Any, clients: int = CLIENTS) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def run() -> None:
        while not queue.empty():
            await worker(queue.get_nowait())

    await asyncio.gather(*(run() for _ in range(clients)))


async def with_retries(api: Api, method: str, path: str, body: Any = None) -> Any:
    for attempt in range(50):
        status, answer = await api.call(method, path, body)
        if status < 500:
            return status, answer
        await asyncio.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"{method} {path} kept failing: {answer}")


async def schedule(api: Api, prefix: str, n: int, text: Any, clients: int = CLIENTS) -> tuple[float, float]:
    """Start n emails and send each its request; returns (accepted_s, all_scheduled_s)."""
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        wid = f"{prefix}-{i}"
        await with_retries(api, "POST", f"/api/emails/{wid}", {})
        status, answer = await with_retries(api, "POST", f"/api/emails/{wid}/messages", {"text": text(i)})
        assert status == 202, answer

    await pool(list(range(n)), one, clients)
    accepted = time.perf_counter() - t0

    async def wait(i: int) -> None:
        while True:
            status, view = await with_retries(api, "GET", f"/api/emails/{prefix}-{i}")
            if status == 200 and view["status"] in ("scheduled", "sending", "sent") and not view["pending_requests"]:
                return
            await asyncio.sleep(0.5)

    await pool(list(range(n)), wait)
    return accepted, time.perf_counter() - t0


def py_spy(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        return None
    return subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--rate",
            "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def hottest(raw: Path, top: int = 12) -> list[dict[str, Any]]:
    """Self time by function from py-spy's collapsed stacks ('a;b;c count')."""
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # Skip idle frames: threads parked in the pool or the selector are not work.
        if any(
            k in frames[-1] for k in ("_worker (concurrent", "select (", "wait (threading", "_wait_for_tstate_lock")
        ):
            continue
        leaf[frames[-1]] += int(count)
        total += int(count)
    return [{"function": f, "share": round(c / max(total, 1), 3)} for f, c in leaf.most_common(top)]


async def main(sizes: list[int], burst: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="email-agent-scale-"))
    try:
        async with embedded(state) as e:
            return await measure(e, sizes, burst)
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def measure(e: Embedded, sizes: list[int], burst: int) -> dict[str, Any]:
    state, stack, sink, app = e.state, e.stack, e.sink, e.app
    assert app.popen is not None
    temporal_pid = stack.started["temporal"].pid or 0
    iwf_pid = stack.started["iwf"].pid or 0
    db = state / "engine" / "temporal.db"
    out: dict[str, Any] = {"scale": [], "clients": CLIENTS}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        api = Api(session, app.base_url)
        await schedule(api, "warm", 20, lambda i: f"to: w{i}@example.com; subject: W; body: Hi; send in 86400 seconds")
        profiled = False
        for n in sizes:
            before = rss_mb(app.popen.pid)
            spy = None
            if not profiled:
                spy = py_spy(app.popen.pid, 30, state / "profile.txt")
                profiled = True
            accepted, scheduled = await schedule(
                api, f"scale{n}", n, lambda i: f"to: s{i}@example.com; subject: S; body: Hi; send in 86400 seconds"
            )
            if spy:
                spy.wait(120)
            out["scale"].append(
                {
                    "emails": n,
                    "accepted_s": round(accepted, 1),
                    "all_scheduled_s": round(scheduled, 1),
                    "emails_per_s": round(n / scheduled, 1),
                    "app_rss_mb_before": before,
                    "app_rss_mb_after": rss_mb(app.popen.pid),
                    "temporal_rss_mb": rss_mb(temporal_pid),
                    "iwf_rss_mb": rss_mb(iwf_pid),
                    "temporal_db_mb": round(sum(p.stat().st_size for p in db.parent.glob("temporal.db*")) / 2**20, 1),
                }
            )
            print(json.dumps(out["scale"][-1]), flush=True)
        if (state / "profile.txt").exists():
            out["app_profile_self_time"] = hottest(state / "profile.txt")
        if burst:
            # All due within one minute, starting a little after they can all be scheduled.
            lead = max(60, burst // 10)
            due_from = time.time() + lead

            def text(i: int) -> str:
                wait = round(due_from + 60 * i / burst - time.time())
                return f"to: b{i}@example.com; subject: B{i}; body: Hi; send in {wait} seconds"

            accepted, scheduled = await schedule(api, "burst", burst, text)
            dues: dict[str, float] = {}

            async def due_of(i: int) -> None:
                _, view = await with_retries(api, "GET", f"/api/emails/burst-{i}")
                dues[f"b{i}@example.com"] = datetime.fromisoformat(view["send_at"]).timestamp()

            await pool(list(range(burst)), due_of)
            deadline = time.time() + lead + 60 + 300
            while (
                len({r.rcpt_tos[0] for r in sink.received if r.rcpt_tos[0].startswith("b")}) < burst
                and time.time() < deadline
            ):
                await asyncio.sleep(1)
            arrivals = {r.rcpt_tos[0]: r.at for r in sink.received if r.rcpt_tos[0] in dues}
            late = [(arrivals[a] - dues[a]) * 1000 for a in arrivals]
            window = max(arrivals.values()) - min(arrivals.values()) if arrivals else 0
            out["burst"] = {
                "emails": burst,
                "scheduled_in_s": round(scheduled, 1),
                "delivered": len(arrivals),
                "lateness": summary(late) if late else {},
                "sent_per_s": round(len(arrivals) / window, 1) if window else None,
            }
            print(json.dumps(out["burst"]), flush=True)
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), **out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 100 emails, a burst of 50")
    args = parser.parse_args()
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",")]
    result = asyncio.run(main(sizes, 50 if args.quick else args.burst))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
