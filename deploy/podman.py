"""The Kubernetes shape, played with `podman kube play` on this machine, and one email sent through it.

    python -m deploy.podman smoke    # `make kube-smoke`: up, one email end to end, down
    python -m deploy.podman down     # remove what an interrupted run left

Groups of pods are played in dependency order (Kubernetes would retry the init container and the Job
until their dependencies answer; podman plays once). The fake model and the SMTP sink run here, on
loopback, which host-network pods reach. Podman reads the Secret from a podman secret of the same name.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import yaml
from aiosmtpd.controller import Controller

from deploy import manifests
from devstack import temporal
from devstack.plan import Plan
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import SmtpSink, free_port, wait_for_mail

STATE = Path(tempfile.gettempdir()) / "email-agent-kube"
RESULTS = Path(__file__).with_name("kube-smoke-results.json")
VOLUME = "email-agent-postgres"


def _containers_conf() -> Path:
    """runc, cgroupfs and rlimits no higher than ours (../shared/containers.md): kube play has no flags for them."""
    hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True, check=True).stdout.strip()
    conf = STATE / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={hard}:{hard}", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
    )
    return conf


def podman(*args: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CONTAINERS_CONF": str(_containers_conf())}
    result = subprocess.run(["podman", *args], env=env, capture_output=True, input=stdin, timeout=600, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _http_ok(port: int, path: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait(what: str, check: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(1)


def _create_secret(values: dict[str, str]) -> None:
    """Podman 4.3 reads a Secret referenced by a pod from a podman secret: a JSON map of base64 values."""
    podman("secret", "rm", manifests.SECRET, check=False)
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    podman("secret", "create", manifests.SECRET, "-", stdin=json.dumps(data).encode())


def _finished(container: str) -> Callable[[], bool]:
    """A one-shot pod's container exited 0 (raises if it failed: podman plays it once)."""

    def check() -> bool:
        result = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container, check=False)
        status, _, code = result.stdout.decode().strip().partition(" ")
        if status == "exited" and code != "0":
            logs = podman("logs", container, check=False)
            raise RuntimeError(f"{container} failed ({code}): {logs.stdout.decode()}{logs.stderr.decode()}")
        return status == "exited"

    return check


def up(plan: Plan, app_env: dict[str, str], api_token: str) -> float:
    """Play every group and wait for it to serve; returns the seconds it took."""
    started = time.monotonic()
    _create_secret(
        {
            "postgres-password": secrets.token_urlsafe(24),
            "api-token": api_token,
            "worker-secret": secrets.token_urlsafe(24),
        }
    )
    groups = manifests.podman(plan, app_env)

    def http(what: str, checks: list[tuple[int, str]]) -> Callable[[], None]:
        def wait() -> None:
            for port, path in checks:
                _wait(f"{what} :{port}", lambda port=port, path=path: _http_ok(port, path))  # type: ignore[misc]

        return wait

    apps = [(public, "/healthz") for public, _ in plan.app_ports]
    waits: list[Callable[[], None]] = [
        lambda: _wait("PostgreSQL", lambda: _tcp_open(plan.postgres_port)),
        lambda: _wait("the schema pod", _finished("temporal-schema-schema")),
        lambda: _wait("Temporal", lambda: temporal.is_serving(plan.temporal_host_port)),
        lambda: _wait("the setup pod", _finished("temporal-setup-setup")),
        http("iWF", [(port, "/info/healthcheck") for port in plan.iwf_ports]),
        http("HAProxy", [(plan.lb_health_port, "/healthz")]),
        # the replicas, then the API through HAProxy (its own checks have seen them come up)
        http("app", [*apps, (plan.api_lb_port, "/healthz")]),
    ]
    for index, (group, wait) in enumerate(zip(groups, waits, strict=True)):
        path = STATE / f"{index}-{group[-1]['metadata']['name']}.yaml"
        path.write_text(manifests.dump(group))
        podman("kube", "play", "--network", "host", str(path))
        wait()
        print(f"  {path.name}: up at {time.monotonic() - started:.1f} s", flush=True)
    return time.monotonic() - started


def down() -> None:
    """Remove the pods, then what `kube down` leaves: the ConfigMaps' volumes, the secret, the database."""
    for path in sorted(STATE.glob("*.yaml"), reverse=True):
        podman("kube", "down", str(path), check=False)
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("kind") == "ConfigMap":
                podman("volume", "rm", "-f", obj["metadata"]["name"], check=False)
        path.unlink()
    podman("secret", "rm", manifests.SECRET, check=False)
    podman("volume", "rm", "-f", VOLUME, check=False)


def image_sizes() -> dict[str, str]:
    result = podman("images", "--format", "{{.Repository}} {{.Size}}")
    return {
        repo.split("/")[-1]: size
        for repo, _, size in (line.partition(" ") for line in result.stdout.decode().splitlines())
        if "email-agent" in repo
    }


async def smoke() -> dict[str, object]:
    down()
    STATE.mkdir(parents=True, exist_ok=True)
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    fake_ai = FakeOpenAI()
    await fake_ai.start()
    plan = Plan.on_free_ports(STATE, iwf_replicas=2, app_replicas=2)
    token = secrets.token_urlsafe(24)
    app_env = {
        "OPENAI_BASE_URL": fake_ai.base_url,
        "OPENAI_API_KEY": "sk-fake",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "SMTP_SECURITY": "none",
        "MAIL_FROM": "assistant@example.org",
    }
    try:
        bring_up = await asyncio.to_thread(up, plan, app_env, token)
        headers = {"Authorization": f"Bearer {token}"}
        email_id, to = f"kube-{time.time_ns()}", "kube@example.com"
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.post(f"{plan.api_url}/api/emails/{email_id}", json={}) as r:
                assert r.status == 201, await r.text()
            text = f"to: {to}; subject: Through kube play; body: Hello from the pods; send in 2 seconds"
            async with session.post(f"{plan.api_url}/api/emails/{email_id}/messages", json={"text": text}) as r:
                assert r.status == 202, await r.text()
            mails = await wait_for_mail(sink, to, timeout=60)
            async with session.get(f"{plan.api_url}/api/emails/{email_id}") as r:
                view = await r.json()
        assert len(mails) == 1 and mails[0].message["Subject"] == "Through kube play", mails
        assert view["status"] == "sent", view
        return {"bring_up_s": round(bring_up, 1), "email": email_id, "status": view["status"], "images": image_sizes()}
    finally:
        await fake_ai.stop()
        controller.stop()
        await asyncio.to_thread(down)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.podman", description=__doc__)
    parser.add_argument("command", choices=["smoke", "down"])
    args = parser.parse_args(argv)
    if args.command == "down":
        down()
        return 0
    result = asyncio.run(smoke())
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
