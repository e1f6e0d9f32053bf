"""`python -m devstack stop`: stop exactly the processes the embedded stack's pid files name (`make stop`)."""

from __future__ import annotations

import argparse
import sys

from devstack.processes import PidFile, stop_owned
from settings import StackPaths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["stop", "status"])
    args = parser.parse_args(argv)
    state_dir = StackPaths().state_dir
    if args.command == "status":
        # The dev stack's three, and every other part a pid file names (the production profile's replicas,
        # HAProxy, PostgreSQL).
        named = {path.stem for path in (state_dir / "pids").glob("*.pid")}
        for name in sorted(named | {"app", "iwf", "temporal"}):
            process = PidFile.of(state_dir, name).process()
            print(f"{name}: {'running, pid ' + str(process.pid) if process else 'not running (no live pid file)'}")
        return 0
    stopped = stop_owned(state_dir)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing to stop (no live pid files in {state_dir}/pids)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
