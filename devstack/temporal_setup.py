"""Register what the app needs on a Temporal cluster: the namespace and every search attribute.

The attributes come from the one list the project keeps (`devstack.temporal.IWF_SEARCH_ATTRIBUTES`),
iterated, so an attribute added there is registered everywhere: by the dev server's flags, by the
production launcher, and by the Kubernetes setup Job (`python -m devstack.temporal_setup`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from devstack import temporal
from devstack.processes import StackError


def _cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [temporal.temporal_cli(), *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def register(address: str, namespace: str, retention: str = "720h") -> list[str]:
    """Create what is missing; return what was created (a frontend caches both for up to a minute)."""
    created = []
    if _cli(address, "operator", "namespace", "describe", "--namespace", namespace).returncode != 0:
        result = _cli(address, "operator", "namespace", "create", "--namespace", namespace, "--retention", retention)
        if result.returncode != 0 and "already" not in result.stderr.lower():
            raise StackError(f"could not create the namespace {namespace}: {result.stderr.strip()}")
        created.append(f"namespace {namespace}")
    # The namespace may take a moment to be visible to the call that lists its attributes.
    existing = _existing_attributes(address, namespace)
    missing = {name: kind for name, kind in temporal.IWF_SEARCH_ATTRIBUTES.items() if name not in existing}
    if missing:
        args = ["operator", "search-attribute", "create", "--namespace", namespace]
        for name, kind in missing.items():
            args += ["--name", name, "--type", kind]
        result = _cli(address, *args)
        if result.returncode != 0:
            raise StackError(f"could not create the search attributes {sorted(missing)}: {result.stderr.strip()}")
        created += [f"search attribute {name} ({kind})" for name, kind in missing.items()]
    return created


def _existing_attributes(address: str, namespace: str, timeout: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        result = _cli(address, "operator", "search-attribute", "list", "--namespace", namespace, "--output", "json")
        if result.returncode == 0:
            listed = json.loads(result.stdout)
            return set((listed.get("customAttributes") or {}).keys()) | set(listed.get("systemAttributes") or {})
        if time.monotonic() > deadline:
            raise StackError(f"could not list the search attributes of {namespace}: {result.stderr.strip()}")
        time.sleep(1)


def wait_visible(address: str, namespace: str, timeout: float = 120) -> None:
    """Until the frontend's caches (refreshed about once a minute) know the namespace and every attribute:
    a query naming them all succeeds. Without a restart, this is when workflows can be started."""
    query = " AND ".join(f"{name} IS NOT NULL" for name in temporal.IWF_SEARCH_ATTRIBUTES)
    deadline = time.monotonic() + timeout
    while True:
        result = _cli(address, "workflow", "count", "--namespace", namespace, "--query", query)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise StackError(f"the frontend still does not know them after {timeout:.0f}s: {result.stderr.strip()}")
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.temporal_setup", description=__doc__)
    parser.add_argument("--address", required=True, help="the Temporal frontend, host:port")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for the frontend to serve")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while not temporal.is_serving(args.address):
        if time.monotonic() > deadline:
            print(f"Temporal at {args.address} is not serving", file=sys.stderr)
            return 1
        time.sleep(2)
    created = register(args.address, args.namespace)
    print("created: " + ", ".join(created) if created else "nothing to create: all registered", flush=True)
    wait_visible(args.address, args.namespace)
    print("the frontend sees them all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
