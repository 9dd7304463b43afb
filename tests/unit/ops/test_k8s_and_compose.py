"""Production manifests: parse, have the structure the cluster needs, agree with topics.toml
and with the ports the services use. (Schema validation against Kubernetes' own OpenAPI
schemas is done offline with ``kubernetes-validate`` when it is installed.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.access import ACCESS, OPERATOR, strimzi_user
from services.common.topics import load_topic_specs
from services.launcher.plan import StackOptions, plan_stack
from tests.unit.ops.assets import DEPLOY, ROOT, load_all

K8S = DEPLOY / "k8s"
SERVICES = ("router", "escalation", "notifier")


def _docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_all(path)
    ]


def _of(kind: str) -> list[dict[str, Any]]:
    return [d for d in _docs() if d["kind"] == kind]


def test_every_manifest_has_api_version_kind_name_and_namespace() -> None:
    docs = _docs()
    assert docs
    for doc in docs:
        assert doc["apiVersion"], doc
        assert doc["kind"], doc
        assert doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "switchboard", doc["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_all(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_a_deployment_service_and_budget_per_service() -> None:
    deployments = {d["metadata"]["name"]: d for d in _of("Deployment")}
    services = {d["metadata"]["name"]: d for d in _of("Service")}
    budgets = {d["metadata"]["name"]: d for d in _of("PodDisruptionBudget")}
    for name in SERVICES:
        assert f"switchboard-{name}" in deployments
        assert f"switchboard-{name}" in services
        assert f"switchboard-{name}" in budgets
    assert "switchboard-gateway" in deployments


@pytest.mark.parametrize("deployment", _of("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_every_container_probes_grpc_health_on_its_plaintext_health_port(
    deployment: dict[str, Any],
) -> None:
    """Kubernetes' gRPC probes speak no TLS: they call the health-only port."""
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    for container in spec["template"]["spec"]["containers"]:
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SWITCHBOARD_GRPC__HEALTH_PORT"] == str(ports["health"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == ports["health"], (container["name"], probe)
        assert container["resources"]["requests"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("deployment", _of("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_every_server_speaks_tls_and_every_service_signs_in_to_kafka(
    deployment: dict[str, Any],
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["SWITCHBOARD_GRPC__TLS_CERT_FILE"].startswith("/etc/switchboard/tls/")
    assert volumes[mounts["/etc/switchboard/tls"]]["secret"]["secretName"].endswith("-tls")
    name = container["name"]
    if name == "gateway":
        return
    assert env["SWITCHBOARD_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["SWITCHBOARD_KAFKA__SASL_USERNAME"] == name
    assert volumes[mounts["/etc/switchboard/kafka-user"]]["secret"]["secretName"] == name
    assert "SWITCHBOARD_KAFKA__SASL_PASSWORD" not in env  # from the Secret's file, never inline


def test_kafka_users_are_exactly_the_access_table() -> None:
    users = {u["metadata"]["name"]: u for u in _of("KafkaUser")}
    assert set(users) == {*ACCESS, OPERATOR}
    for name, user in users.items():
        assert user == strimzi_user(name), name


def test_kafka_has_no_unauthenticated_listener_and_acls_decide() -> None:
    (kafka,) = _of("Kafka")
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert all(listener["tls"] and listener["authentication"]["type"] for listener in listeners)
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    (common,) = [c for c in _of("ConfigMap") if c["metadata"]["name"] == "switchboard-common"]
    port = int(common["data"]["kafka_bootstrap_servers"].rsplit(":", 1)[1])
    assert port in {listener["port"] for listener in listeners}


def test_ingress_is_denied_by_default() -> None:
    policies = {p["metadata"]["name"]: p for p in _of("NetworkPolicy")}
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {}
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny


def test_ports_match_what_the_launcher_and_prometheus_use(tmp_path: Path) -> None:
    planned = {s.name: s for s in plan_stack(StackOptions(scenario_path=tmp_path))}
    deployments = {d["metadata"]["name"]: d for d in _of("Deployment")}
    services = {d["metadata"]["name"]: d for d in _of("Service")}
    for name in SERVICES:
        deployment = deployments[f"switchboard-{name}"]
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {
            "grpc": planned[name].grpc_port,
            "metrics": planned[name].metrics_port,
            "health": 50070,
        }
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SWITCHBOARD_GRPC__PORT"] == str(ports["grpc"])
        assert env["SWITCHBOARD_METRICS__PORT"] == str(ports["metrics"])
        assert env["SWITCHBOARD_GRPC__HOST"] == env["SWITCHBOARD_METRICS__HOST"] == "0.0.0.0"
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
        assert container["command"] == ["python", "-m", f"services.{name}"]
        service_ports = {
            p["name"]: p["port"] for p in services[f"switchboard-{name}"]["spec"]["ports"]
        }
        assert service_ports == {k: v for k, v in ports.items() if k != "health"}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        config_map = volumes["config"]["configMap"]["name"]
        assert config_map in {c["metadata"]["name"] for c in _of("ConfigMap")}
        assert deployment["spec"]["replicas"] <= min(s.partitions for s in load_topic_specs())


def test_kafka_is_a_three_node_kraft_cluster_with_replication_three() -> None:
    (kafka,) = _of("Kafka")
    (pool,) = _of("KafkaNodePool")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["auto.create.topics.enable"] is False


def test_kafka_topics_match_topics_toml() -> None:
    topics = {t["spec"]["topicName"]: t for t in _of("KafkaTopic")}
    specs = {s.name: s for s in load_topic_specs()}
    assert set(topics) == set(specs)
    for name, spec in specs.items():
        topic = topics[name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "switchboard"
        assert topic["spec"]["partitions"] == spec.partitions
        assert topic["spec"]["replicas"] == 3
        for key, value in spec.configs().items():
            assert str(topic["spec"]["config"][key]) == value, (name, key)
    co_partitioned = {
        topics[n]["spec"]["partitions"]
        for n in ("contact.events", "agent.events", "router.changelog")
    }
    assert len(co_partitioned) == 1


def test_compose_runs_official_kafka_in_kraft_mode_and_every_service() -> None:
    (compose,) = load_all(DEPLOY / "compose.yaml")
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in (*SERVICES, "gateway", "topics", "prometheus", "grafana"):
        assert name in services
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["SWITCHBOARD_CONFIG"] == f"/app/deploy/config/{name}.toml"
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    # The mounted files exist.
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (DEPLOY / source).exists(), source


# Installed into the venv by `make setup` (a dev dependency); look beside this interpreter.
KUBERNETES_VALIDATE = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(KUBERNETES_VALIDATE is None, reason="kubernetes-validate not installed")
def test_core_manifests_pass_kubernetes_schema_validation() -> None:
    files = [
        str(p)
        for p in sorted(K8S.glob("*.yaml"))
        if p.name not in {"kustomization.yaml", "kafka-cluster.yaml", "kafka-topics.yaml"}
    ]
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", *files],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
