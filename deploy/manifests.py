"""The deployment as Kubernetes objects, built from the launcher's own sources (Temporal and iWF configs,
the HAProxy config, the search attributes), so the manifests and `make prod-up` cannot drift apart.

    python -m deploy.manifests            # rewrites deploy/k8s/email-agent.yaml (committed; a test checks it)

Two renderings of one shape:
- `kubernetes()`: what you apply to a cluster. Deployments with replicas, Services as the shared addresses
  (the workers' Service is the WORKER_URL every email records), a StatefulSet for PostgreSQL, a Job that
  registers the namespace and search attributes, secrets from one Secret, probes on /healthz.
- `podman(plan)`: the same containers for `podman kube play` on one machine (deploy/podman.py). Podman has
  no Services and plays a Deployment as one pod, so each replica is its own host-network pod on its own
  loopback port, and an HAProxy pod (Debian's) stands in for the Services.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from devstack import haproxy, iwf, temporal_server
from devstack.plan import Plan

Obj = dict[str, Any]

OUT = Path(__file__).with_name("k8s") / "email-agent.yaml"
SECRET = "email-agent"  # noqa: S105 - the Secret's name
SETTINGS = "email-agent-settings"  # the ConfigMap of the app's settings that are not secret
# Filled in before applying; a blank value counts as unset. The app refuses to start without a mail server
# (SMTP_HOST, or GOOGLE_EMAIL_ADDRESS with the Secret's google-email-app-password): in a container, mail to
# files would be lost with the pod. Every other setting (settings.py, the README's table) can be added here.
APP_SETTINGS = {
    "GOOGLE_EMAIL_ADDRESS": "",
    "SMTP_HOST": "",
    "SMTP_PORT": "",
    "SMTP_SECURITY": "ssl",
    "SMTP_USERNAME": "",
    "MAIL_FROM": "",
    "IMAP_HOST": "",
    "OPENAI_BASE_URL": "",
    "OPENAI_MODEL": "gpt-4o-mini",
    "ALLOWED_RECIPIENT_DOMAINS": "",
}
NAMESPACE = "default"  # Temporal's namespace
# The iWF image's own default (deploy/engine.Dockerfile), written out so an operator sees where to tune it.
IWF_STICKY_CACHE_SIZE = 2000
K8S_TEMPORAL_PORTS = temporal_server.Ports(7233, 6933, 7243, 7234, 6934, 7235, 6935, 7239, 6939)
IMAGES = {
    "app": "localhost/email-agent:latest",
    "setup": "localhost/email-agent-setup:latest",
    "temporal": "localhost/email-agent-temporal:latest",
    "iwf": "localhost/email-agent-iwf:latest",
    "postgres": "localhost/email-agent-postgres:latest",
    "haproxy": "localhost/email-agent-haproxy:latest",
}


def _secret_env(name: str, key: str, optional: bool = False) -> Obj:
    ref: Obj = {"name": SECRET, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _env(values: dict[str, str]) -> list[Obj]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _http_probe(port: int, path: str, period: int = 10) -> Obj:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": 3}


def _meta(name: str, component: str) -> Obj:
    return {"name": name, "labels": {"app.kubernetes.io/part-of": "email-agent", "component": component}}


def _config_map(name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, "config"), "data": data}


def _temporal_config(ports: temporal_server.Ports) -> Obj:
    return _config_map(
        "temporal-config",
        {
            "config.yaml": temporal_server.config_text(
                ports=ports, shards=4, dynamic_config_path="/etc/temporal/dynamic-config.yaml"
            ),
            "dynamic-config.yaml": temporal_server.dynamic_config_text(),
        },
    )


def _db_env(host: str, port: int) -> list[Obj]:
    return [
        *_env({temporal_server.ENV_DB_HOST: host, temporal_server.ENV_DB_PORT: str(port)}),
        _secret_env(temporal_server.ENV_PASSWORD, "postgres-password"),
    ]


def _postgres_container(port: int, listen: str) -> Obj:
    return {
        "name": "postgres",
        "image": IMAGES["postgres"],
        "env": [
            *_env({"POSTGRES_PORT": str(port), "POSTGRES_LISTEN": listen}),
            _secret_env("POSTGRES_PASSWORD", "postgres-password"),
        ],
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
    }


def _schema_container(db_host: str, db_port: int) -> Obj:
    env = _db_env(db_host, db_port)
    return {"name": "schema", "image": IMAGES["temporal"], "command": ["temporal-schema"], "env": env}


def _temporal_pod_spec(ports: temporal_server.Ports, db_host: str, db_port: int, bind: str, *, init: bool) -> Obj:
    """`init`: the schema step as an init container (Kubernetes); podman 4.3 mishandles those, so there
    it is a pod of its own played first."""
    broadcast: Obj = (
        {"name": temporal_server.ENV_BROADCAST, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        if bind == "0.0.0.0"
        else {"name": temporal_server.ENV_BROADCAST, "value": bind}
    )
    env = [*_db_env(db_host, db_port), *_env({temporal_server.ENV_BIND: bind}), broadcast]
    spec: Obj = {"initContainers": [_schema_container(db_host, db_port)]} if init else {}
    return {
        **spec,
        "containers": [
            {
                "name": "temporal",
                "image": IMAGES["temporal"],
                "env": env,
                "volumeMounts": [{"name": "config", "mountPath": "/etc/temporal"}],
                "readinessProbe": {"tcpSocket": {"port": ports.frontend}, "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": ports.frontend}, "periodSeconds": 10, "failureThreshold": 6},
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": "temporal-config"}}],
    }


def _iwf_container(config_map: str, port: int) -> tuple[Obj, Obj]:
    container = {
        "name": "iwf",
        "image": IMAGES["iwf"],
        "args": ["--config", "/etc/iwf/config.yaml", "start"],
        # Filled into the config's placeholder by the image's entrypoint (devstack/iwf-quiet).
        "env": [
            _secret_env("WORKER_SECRET", "worker-secret"),
            # Workflows its Temporal worker keeps cached (~180 KB each): what bounds its memory.
            {"name": "IWF_STICKY_CACHE_SIZE", "value": str(IWF_STICKY_CACHE_SIZE)},
        ],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/iwf"}],
        "readinessProbe": _http_probe(port, "/info/healthcheck", 5),
        "livenessProbe": _http_probe(port, "/info/healthcheck"),
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }
    return container, {"name": "config", "configMap": {"name": config_map}}


def _app_container(env: dict[str, str], port: int, settings: str | None = None) -> Obj:
    return {
        "name": "app",
        "image": IMAGES["app"],
        **({"envFrom": [{"configMapRef": {"name": settings}}]} if settings else {}),
        "env": [
            *_env(env),
            _secret_env("API_TOKEN", "api-token"),
            _secret_env("WORKER_SECRET", "worker-secret"),
            _secret_env("OPENAI_API_KEY", "openai-api-key", optional=True),
            _secret_env("SLACK_BOT_TOKEN", "slack-bot-token", optional=True),
            _secret_env("SLACK_SIGNING_SECRET", "slack-signing-secret", optional=True),
            _secret_env("SLACK_APP_TOKEN", "slack-app-token", optional=True),  # Socket Mode
            _secret_env("GOOGLE_EMAIL_APP_PASSWORD", "google-email-app-password", optional=True),
            _secret_env("SMTP_PASSWORD", "smtp-password", optional=True),
            _secret_env("IMAP_PASSWORD", "imap-password", optional=True),
        ],
        "readinessProbe": _http_probe(port, "/healthz", 5),
        "livenessProbe": _http_probe(port, "/healthz"),
        "resources": {"requests": {"cpu": "250m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}},
    }


def _setup_container(address: str) -> Obj:
    return {"name": "setup", "image": IMAGES["setup"], "args": ["--address", address, "--namespace", NAMESPACE]}


# --- Kubernetes --------------------------------------------------------------------------------------


def _deployment(name: str, component: str, replicas: int, spec: Obj) -> Obj:
    labels = {"component": component}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": {**labels, "app.kubernetes.io/part-of": "email-agent"}}, "spec": spec},
        },
    }


def _from(*components: str) -> list[Obj]:
    return [{"podSelector": {"matchLabels": {"component": c}}} for c in components]


def _ingress_policy(name: str, component: str, ingress: list[Obj]) -> Obj:
    """Only `ingress` reaches the component's pods (a pod any policy selects refuses everything else)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, component),
        "spec": {
            "podSelector": {"matchLabels": {"component": component}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _service(name: str, component: str, port: int, headless: bool = False) -> Obj:
    spec: Obj = {"selector": {"component": component}, "ports": [{"port": port, "targetPort": port}]}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, component),
        "spec": {"clusterIP": "None", **spec} if headless else spec,
    }


def _hardened(objects: list[Obj]) -> list[Obj]:
    """Every container without privilege escalation or Linux capabilities (each image runs as its own
    non-root user and listens above 1024). Kubernetes only: podman kube play runs the same containers as is."""
    for obj in objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            container["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return objects


def kubernetes(iwf_replicas: int = 2, app_replicas: int = 2) -> list[Obj]:
    ports = K8S_TEMPORAL_PORTS
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(SECRET, "secrets"),
        "type": "Opaque",
        # Replace before applying (or create it with kubectl create secret generic email-agent ...).
        "stringData": {"postgres-password": "change-me", "api-token": "change-me", "worker-secret": "change-me"},
    }
    postgres = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta("postgres", "postgres"),
        "spec": {
            "serviceName": "postgres",
            "replicas": 1,
            "selector": {"matchLabels": {"component": "postgres"}},
            "template": {
                "metadata": {"labels": {"component": "postgres", "app.kubernetes.io/part-of": "email-agent"}},
                "spec": {"securityContext": {"fsGroup": 999}, "containers": [_postgres_container(5432, "*")]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
                }
            ],
        },
    }
    setup_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("temporal-setup", "setup"),
        "spec": {
            "backoffLimit": 20,
            "template": {
                # Labelled: Temporal's NetworkPolicy admits it by this label.
                "metadata": {"labels": {"component": "setup", "app.kubernetes.io/part-of": "email-agent"}},
                "spec": {"restartPolicy": "OnFailure", "containers": [_setup_container(f"temporal:{ports.frontend}")]},
            },
        },
    }
    iwf_container, iwf_volume = _iwf_container("iwf-config", 8801)
    app_env = {
        "HOST": "0.0.0.0",
        "PORT": "3000",
        "WORKER_HOST": "0.0.0.0",  # reachable by the iWF pods only (NetworkPolicy below)
        "WORKER_PORT": "8802",
        "WORKER_URL": "http://email-agent-worker:8802",  # the Service: any replica serves any email
        "IWF_SERVER_URL": "http://iwf:8801",
    }
    worker_policy = _ingress_policy(
        "email-agent-worker",
        "app",
        [{"ports": [{"port": 3000}]}, {"from": _from("iwf"), "ports": [{"port": 8802}]}],
    )
    # The engine is reachable only by the part that uses it: the iWF API and Temporal have no authentication
    # of their own, and whoever reached them could start, signal or end any email past the API's checks.
    engine_policies = [
        _ingress_policy("iwf", "iwf", [{"from": _from("app"), "ports": [{"port": 8801}]}]),
        # Temporal's own services talk to each other on its pod's address (membership, history, matching).
        _ingress_policy("temporal", "temporal", [{"from": _from("iwf", "setup", "temporal")}]),
        _ingress_policy("postgres", "postgres", [{"from": _from("temporal"), "ports": [{"port": 5432}]}]),
    ]
    return _hardened(
        [
            secret,
            _config_map(SETTINGS, APP_SETTINGS),
            _temporal_config(ports),
            _config_map(
                "iwf-config",
                {
                    "config.yaml": iwf.config_text(
                        api_port=8801,
                        temporal_host_port=f"temporal:{ports.frontend}",
                        namespace=NAMESPACE,
                        log_level="error",
                        worker_secret=iwf.WORKER_SECRET_PLACEHOLDER,
                    )
                },
            ),
            postgres,
            _service("postgres", "postgres", 5432, headless=True),  # the StatefulSet's governing Service
            _deployment("temporal", "temporal", 1, _temporal_pod_spec(ports, "postgres", 5432, "0.0.0.0", init=True)),
            _service("temporal", "temporal", ports.frontend),
            setup_job,
            _deployment("iwf", "iwf", iwf_replicas, {"containers": [iwf_container], "volumes": [iwf_volume]}),
            _service("iwf", "iwf", 8801),
            _deployment("email-agent", "app", app_replicas, {"containers": [_app_container(app_env, 3000, SETTINGS)]}),
            _service("email-agent", "app", 3000),
            _service("email-agent-worker", "app", 8802),
            worker_policy,
            *engine_policies,
        ]
    )


# --- podman kube play ----------------------------------------------------------------------------------


def _pod(name: str, component: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, component),
        "spec": {"hostNetwork": True, **spec},
    }


def podman(plan: Plan, app_env: dict[str, str]) -> list[list[Obj]]:
    """Groups of objects to play in order (each waits for the previous to serve): database, schema,
    Temporal, setup, iWF servers, the load balancer, the app replicas."""
    ports = plan.temporal_ports
    iwf_pods = []
    iwf_configs = []
    for index, port in enumerate(plan.iwf_ports, start=1):
        container, volume = _iwf_container(f"iwf-{index}-config", port)
        iwf_configs.append(
            _config_map(
                f"iwf-{index}-config",
                {
                    "config.yaml": iwf.config_text(
                        api_port=port,
                        temporal_host_port=plan.temporal_host_port,
                        namespace=NAMESPACE,
                        log_level="error",
                        worker_secret=iwf.WORKER_SECRET_PLACEHOLDER,
                    )
                },
            )
        )
        iwf_pods.append(_pod(f"iwf-{index}", "iwf", {"containers": [container], "volumes": [volume]}))
    publics = [public for public, _ in plan.app_ports]
    backends = [
        haproxy.Backend("iwf", plan.iwf_lb_port, "/info/healthcheck", [("127.0.0.1", p) for p in plan.iwf_ports]),
        haproxy.Backend(
            "worker", plan.worker_lb_port, "/healthz", [("127.0.0.1", w) for _, w in plan.app_ports], publics
        ),
        haproxy.Backend("api", plan.api_lb_port, "/healthz", [("127.0.0.1", p) for p in publics]),
    ]
    lb = [
        _config_map("haproxy-config", {"haproxy.cfg": haproxy.config_text(plan.lb_health_port, backends)}),
        _pod(
            "haproxy",
            "haproxy",
            {
                "containers": [
                    {
                        "name": "haproxy",
                        "image": IMAGES["haproxy"],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/haproxy"}],
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "haproxy-config"}}],
            },
        ),
    ]
    apps = []
    for index, (public, worker) in enumerate(plan.app_ports, start=1):
        env = {
            **app_env,
            "HOST": "127.0.0.1",
            "PORT": str(public),
            "WORKER_HOST": "127.0.0.1",
            "WORKER_PORT": str(worker),
            "WORKER_URL": plan.worker_url,
            "IWF_SERVER_URL": plan.iwf_url,
        }
        apps.append(_pod(f"app-{index}", "app", {"containers": [_app_container(env, public)]}))
    database = _pod(
        "postgres",
        "postgres",
        {
            "containers": [_postgres_container(plan.postgres_port, "127.0.0.1")],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "email-agent-postgres"}}],
        },
    )
    schema = _pod(
        "temporal-schema",
        "schema",
        {"restartPolicy": "Never", "containers": [_schema_container("127.0.0.1", plan.postgres_port)]},
    )
    temporal = _pod(
        "temporal", "temporal", _temporal_pod_spec(ports, "127.0.0.1", plan.postgres_port, "127.0.0.1", init=False)
    )
    setup = _pod(
        "temporal-setup", "setup", {"restartPolicy": "Never", "containers": [_setup_container(plan.temporal_host_port)]}
    )
    return [[database], [schema], [_temporal_config(ports), temporal], [setup], [*iwf_configs, *iwf_pods], lb, apps]


def dump(objects: list[Obj]) -> str:
    return str(yaml.safe_dump_all(objects, sort_keys=False, width=120))


def main() -> int:
    header = "# Rendered by `python -m deploy.manifests` from devstack's configs; edit that, not this file.\n"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(header + dump(kubernetes()))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
