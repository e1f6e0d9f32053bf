"""The committed Kubernetes manifests are what deploy/manifests.py renders, and have the promised shape."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from deploy import manifests
from settings import Settings


def _by_kind_and_name() -> dict[tuple[str, str], dict[str, Any]]:
    docs = list(yaml.safe_load_all(manifests.OUT.read_text()))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_committed_manifests_are_the_rendered_ones() -> None:
    rendered = manifests.dump(manifests.kubernetes())
    assert manifests.OUT.read_text().split("\n", 1)[1] == rendered, "run `python -m deploy.manifests`"


def test_two_iwf_servers_and_two_app_replicas_behind_one_worker_service() -> None:
    objects = _by_kind_and_name()
    assert objects[("Deployment", "iwf")]["spec"]["replicas"] == 2
    app = objects[("Deployment", "email-agent")]
    assert app["spec"]["replicas"] == 2
    container = app["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["WORKER_URL"]["value"] == "http://email-agent-worker:8802"
    assert ("Service", "email-agent-worker") in objects
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_secrets_come_from_the_secret_and_are_not_in_any_config() -> None:
    objects = _by_kind_and_name()
    app_env = {
        e["name"]: e for e in objects[("Deployment", "email-agent")]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert app_env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "email-agent", "key": "api-token"}
    temporal = objects[("Deployment", "temporal")]["spec"]["template"]["spec"]["containers"][0]
    password = {e["name"]: e for e in temporal["env"]}["TEMPORAL_POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["key"] == "postgres-password"
    config = objects[("ConfigMap", "temporal-config")]["data"]["config.yaml"]
    assert 'env "TEMPORAL_POSTGRES_PASSWORD"' in config


def test_the_iwf_servers_memory_is_bounded_by_their_sticky_cache() -> None:
    """The iWF image runs deploy/iwf-server, which reads IWF_STICKY_CACHE_SIZE; without the cap its RSS
    grows with the open emails (1.5 GB at 10,000) and the memory limit would kill it."""
    iwf = _by_kind_and_name()[("Deployment", "iwf")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in iwf["env"]}
    assert env["IWF_STICKY_CACHE_SIZE"]["value"] == "2000"
    assert iwf["resources"]["limits"]["memory"] == "1Gi"
    dockerfile = (manifests.OUT.parents[1] / "engine.Dockerfile").read_text()
    iwf_build = dockerfile.split("AS iwf-build", 1)[1].split("FROM ", 1)[0]
    assert "COPY deploy/iwf-server" in iwf_build and "go build" in iwf_build
    assert "IWF_STICKY_CACHE_SIZE=2000" in dockerfile.split("AS iwf\n", 1)[1].split("FROM ", 1)[0]


def test_the_engine_is_reachable_only_by_the_part_that_uses_it() -> None:
    """The iWF API and Temporal have no authentication of their own: any pod reaching them could start, signal
    or end an email past the API's checks. Each engine component admits only its clients, by label."""
    objects = _by_kind_and_name()
    allowed = {}
    for (kind, _), obj in objects.items():
        if kind == "NetworkPolicy":
            component = obj["spec"]["podSelector"]["matchLabels"]["component"]
            allowed[component] = {
                peer["podSelector"]["matchLabels"]["component"]
                for rule in obj["spec"]["ingress"]
                for peer in rule.get("from", [])
            }
    assert allowed == {
        "app": {"iwf"},
        "iwf": {"app"},
        "temporal": {"iwf", "setup", "temporal"},
        "postgres": {"temporal"},
    }
    job = objects[("Job", "temporal-setup")]["spec"]["template"]["metadata"]["labels"]
    assert job["component"] == "setup", "the setup Job must carry the label Temporal's policy admits"
    for (kind, name), obj in objects.items():
        if kind in ("Deployment", "StatefulSet"):
            pod = obj["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, (name, container["name"])
    assert objects[("Service", "postgres")]["spec"]["clusterIP"] == "None"


def test_the_apps_settings_come_from_a_config_map_of_real_settings_and_a_missing_mail_server_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, nothing in the manifests could set SMTP_HOST or GOOGLE_EMAIL_ADDRESS: every email ended "sent"
    into a folder of the pod. Now the operator fills a ConfigMap, and left blank the app refuses to start."""
    objects = _by_kind_and_name()
    container = objects[("Deployment", "email-agent")]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "email-agent-settings"}}]
    data = objects[("ConfigMap", "email-agent-settings")]["data"]
    assert set(data) <= {name.upper() for name in Settings.model_fields}, "every key is a setting the app reads"
    assert {"SMTP_HOST", "GOOGLE_EMAIL_ADDRESS", "IMAP_HOST", "MAIL_FROM"} <= set(data)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    # As the pod sees them: the ConfigMap's keys (blank ones too), the container's env, the image's default.
    for name, value in {
        **data,
        **env,
        "EMBEDDED_ENGINE": "false",
        "WORKER_SECRET": "a-long-enough-secret-0123",  # the Secret's
        "API_TOKEN": "an-admin-token-0123",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="a mail server is required"):
        Settings(_env_file=None)
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    assert Settings(_env_file=None).smtp_configured
