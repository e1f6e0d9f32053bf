"""`python -m bench.chaos`: a chaos run from the command line, its table printed and its results written
beside the other benchmarks' (`bench/chaos-results.json`, `chaos-prod-results.json`, and `-plain-smtp`
variants for a run without a Sent folder)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos.plan import Config
from bench.chaos.run import run_chaos

BENCH = Path(__file__).resolve().parent.parent
RESULTS = {"dev": BENCH / "chaos-results.json", "production": BENCH / "chaos-prod-results.json"}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description="A chaos run: see bench/chaos/__init__.py."
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--window", type=float, default=None, help="seconds over which send times spread")
    defaults = Config()
    parser.add_argument("--model-faults", type=float, default=defaults.model_fault_rate, help="share of model calls")
    parser.add_argument("--smtp-faults", type=float, default=defaults.smtp_fault_rate, help="share of deliveries")
    parser.add_argument("--smtp-slow", type=float, default=defaults.smtp_slow_rate, help="share of deliveries")
    parser.add_argument("--keep-logs", action="store_true", help="keep the state dir and logs even if all is well")
    parser.add_argument("--profile", choices=["dev", "production"], default="dev")
    parser.add_argument(
        "--no-sent-folder", action="store_true", help="a plain SMTP account: no Sent folder to settle a lost answer"
    )
    args = parser.parse_args()
    config = Config(
        profile=args.profile,
        n=args.n,
        seed=args.seed,
        model_fault_rate=args.model_faults,
        smtp_fault_rate=args.smtp_faults,
        smtp_slow_rate=args.smtp_slow,
        sent_folder=not args.no_sent_folder,
    )
    if args.window or args.n > 60:
        span = args.window or max(60.0, args.n * 0.6)
        config.window_start, config.window_end = 30.0, 30.0 + span
        config.kill_until = config.window_end
    report = asyncio.run(run_chaos(config, keep_logs=args.keep_logs))
    print(report.table())
    results = RESULTS[config.profile]
    if not config.sent_folder:
        results = results.with_name(results.name.replace("-results", "-plain-smtp-results"))
    results.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "ok": report.ok,
                "config": {k: v for k, v in asdict(config).items()},
                **asdict(report),
            },
            indent=2,
        )
        + "\n"
    )
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
