"""Dockerfile, Kubernetes manifests, Grafana dashboard and Prometheus alert rules."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.observability import metrics
from gates.engine import CriterionOutcome, CriterionResult, Decision, Steady, Verdict
from gates.model import Gate
from probes.base import MeasurementStatus, ProbeConfig
from tests.support import REPO, require_binary

KUBE_DIR = REPO / "deploy" / "kubernetes"
DASHBOARD = REPO / "deploy" / "grafana" / "gonogo-dashboard.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"

# --- Dockerfile ----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        instruction, _, arguments = stripped.partition(" ")
        found.append((instruction.upper(), arguments.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_on_python_311_slim_with_uv() -> None:
    froms = [args for name, args in dockerfile_instructions() if name == "FROM"]
    assert len(froms) >= 2
    assert all(args.split()[0] == "python:3.11-slim" for args in froms)
    assert any(
        "uv sync --locked --no-dev" in args
        for name, args in dockerfile_instructions()
        if name == "RUN"
    )


def test_final_image_runs_as_a_non_root_user() -> None:
    users = [args for name, args in final_stage() if name == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert not user.isdigit() or int(user) >= 1000


def test_healthcheck_asks_healthz_and_entrypoint_serves_on_all_interfaces() -> None:
    stage = final_stage()
    [healthcheck] = [args for name, args in stage if name == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    [entrypoint] = [args for name, args in stage if name == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["gonogo", "serve", "--host", "0.0.0.0"]
    env = " ".join(args for name, args in stage if name == "ENV")
    assert "GONOGO_GATES_DIR=/etc/gonogo/gates" in env


def test_dockerfile_carries_no_secrets() -> None:
    for name, args in dockerfile_instructions():
        if name in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY|DATABASE_URL)", args, re.I), args
    instructions = " ".join(args for _, args in dockerfile_instructions())
    assert "GONOGO_TOKENS" not in instructions
    assert not re.search(r"CHANGE-ME|Bearer ", instructions)


def test_docker_build_context_leaves_out_local_state() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "exclude everything, then allow what the image needs"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert not allowed & {".venv", ".git", "gonogo.db", "tests", ".env"}
    copied = {
        args.split()[0]
        for name, args in dockerfile_instructions()
        if name == "COPY" and not args.startswith("--from")
    }
    for source in copied:
        assert source in allowed, f"COPY {source} is excluded by .dockerignore"


# --- Kubernetes -------------------------------------------------------------------------


def kube_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(KUBE_DIR.glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            documents.extend(doc for doc in yaml.safe_load_all(handle) if doc)
    return documents


def kube(kind: str) -> dict[str, Any]:
    [found] = [doc for doc in kube_documents() if doc.get("kind") == kind]
    return found


def test_manifests_parse_and_cover_the_deployment() -> None:
    kinds = {doc["kind"] for doc in kube_documents()}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceMonitor"} <= kinds
    for doc in kube_documents():
        assert doc.get("apiVersion"), doc.get("kind")
        assert doc.get("metadata", {}).get("name") or doc["kind"] == "Kustomization"


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kube("Kustomization")["resources"])
    present = {p.name for p in KUBE_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_three_replicas_spread_over_nodes_that_a_drain_takes_one_at_a_time() -> None:
    deployment = kube("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = spec["template"]["metadata"]["labels"]
    budget = kube("PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable") == 2
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    pod = spec["template"]["spec"]
    [preferred] = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    [spread] = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"


def test_each_replica_is_named_after_its_pod_and_has_time_to_hand_over() -> None:
    env = {e["name"]: e for e in container()["env"]}
    assert env["GONOGO_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["GONOGO_LEASE_TTL"]["value"] == "15s"
    pod = kube("Deployment")["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # The longest long-poll (60 s) after the preStop pause, then the lease release.
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 60 + 15


def container() -> dict[str, Any]:
    [found] = kube("Deployment")["spec"]["template"]["spec"]["containers"]
    return found


def test_probes_use_the_service_health_endpoints_on_the_http_port() -> None:
    spec = container()
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"http": 8080}
    for probe in ("readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["port"] in ("http", 8080)
    env = {e["name"]: e.get("value") for e in spec["env"]}
    assert env["GONOGO_PORT"] == str(ports["http"])


def test_service_and_servicemonitor_reach_the_pods() -> None:
    pod_labels = kube("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = kube("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    monitor = kube("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # alerts.yaml's GonogoDown uses job="gonogo": the Service name becomes the job label.
    assert service["metadata"]["name"] == "gonogo"
    assert 'job="gonogo"' in ALERTS.read_text(encoding="utf-8")


def test_gate_configmap_is_mounted_where_gonogo_reads_gates() -> None:
    spec = container()
    template = kube("Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["env"]}
    mounts = {m["name"]: m for m in spec["volumeMounts"]}
    volumes = {v["name"]: v for v in template["volumes"]}
    gates_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[gates_volume]["configMap"]["name"] == kube("ConfigMap")["metadata"]["name"]
    assert mounts[gates_volume]["mountPath"] == env["GONOGO_GATES_DIR"] == "/etc/gonogo/gates"
    assert mounts[gates_volume]["readOnly"] is True


def test_secrets_come_from_the_secret_and_are_placeholders() -> None:
    spec = container()
    secret = kube("Secret")
    [source] = spec["envFrom"]
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    values = secret["stringData"]
    assert {"GONOGO_TOKENS", "GONOGO_DATABASE_URL"} <= values.keys()
    assert values["GONOGO_DATABASE_URL"].startswith("postgresql+asyncpg://")
    for value in values.values():
        assert "CHANGE-ME" in value, "the committed Secret holds placeholders only"
    for entry in spec["env"]:
        assert not re.search(r"TOKEN|SECRET|PASSWORD|DATABASE_URL", entry["name"]), entry


def test_pod_runs_non_root_and_read_only() -> None:
    template = kube("Deployment")["spec"]["template"]["spec"]
    assert template["securityContext"]["runAsNonRoot"] is True
    assert template["securityContext"]["runAsUser"] >= 1000
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_configmap_gate_files_validate_with_the_gate_loader() -> None:
    loader = pytest.importorskip("gates.loader", reason="the gate loader (gates/loader.py)")
    data = kube("ConfigMap")["data"]
    assert data
    for file_name, text in data.items():
        assert file_name.endswith(".yaml")
        gate = loader.load_gate_text(text, name=Path(file_name).stem, source=file_name)
        assert gate.name == Path(file_name).stem


# --- metric names in the dashboard and alert rules --------------------------------------

PROMETHEUS_OWN = {"up"}
METRIC_IN_EXPR = re.compile(r"\b(gonogo_[a-z0-9_]+|up)\b(?:\s*\{([^}]*)\})?")
LABEL_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def exported_samples() -> dict[str, set[str]]:
    """Every sample name in app.observability.metrics' exposition, with its label names, after one
    evaluation, check, notification and decision change have been recorded."""
    gate = Gate(
        name="metric-names",
        probes={"prom": ProbeConfig(type="prometheus")},
        criteria=[{"name": "error-rate", "probe": "prom", "query": "x", "go": "< 1%"}],  # type: ignore[list-item]
    )
    result = CriterionResult(
        name="error-rate",
        outcome=CriterionOutcome.PASS,
        reason="ok",
        probe="prom",
        go="< 1%",
        value=0.001,
        duration_ms=3.0,
        status=MeasurementStatus.OK,
        observed_at=datetime(2026, 11, 24, tzinfo=UTC),
    )
    evaluated_at = datetime(2026, 11, 24, tzinfo=UTC)
    verdict = Verdict("metric-names", Decision.GO, evaluated_at, (), Steady(3, 3), (result,))
    metrics.observe_evaluation(gate, verdict, 0.01)
    metrics.sample_write_failed("gate")
    metrics.decision_changed("metric-names", Decision.GO)
    metrics.check_finished("metric-names", "go")
    metrics.set_checks_running("metric-names", 1)
    metrics.notification_sent("ok")
    body, _ = metrics.render()
    try:
        samples: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples.setdefault(sample.name, set()).update(sample.labels)
        return samples
    finally:
        metrics.forget_gate("metric-names")


def referenced(exprs: list[str]) -> list[tuple[str, set[str]]]:
    found = []
    for expr in exprs:
        for match in METRIC_IN_EXPR.finditer(expr):
            labels = set(LABEL_MATCHER.findall(match.group(2) or ""))
            found.append((match.group(1), labels))
    return found


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_used_is_exported_with_those_labels(source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else alert_exprs()
    used = referenced(exprs)
    assert used, "no metric names found: the extraction is broken"
    samples = exported_samples()
    for name, labels in used:
        if name in PROMETHEUS_OWN:
            continue
        assert name in samples, f"{source} uses {name}, which gonogo does not export"
        assert labels <= samples[name], f"{source}: {name} has no label {labels - samples[name]}"


def test_dashboard_covers_decisions_criteria_probes_and_checks() -> None:
    names = {name for name, _ in referenced(dashboard_exprs())}
    assert {
        "gonogo_gate_decision",
        "gonogo_criterion_value",
        "gonogo_criterion_outcome",
        "gonogo_probe_requests_total",
        "gonogo_probe_duration_seconds_bucket",
        "gonogo_checks_total",
        "gonogo_checks_running",
    } <= names
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    kinds = {panel["type"] for panel in dashboard["panels"]}
    assert "state-timeline" in kinds
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"


def test_dashboard_shows_replicas_and_sums_per_gate_gauges_over_them() -> None:
    exprs = dashboard_exprs()
    names = {name for name, _ in referenced(exprs)}
    assert {
        "gonogo_gates_owned",
        "gonogo_gates_loaded",
        "gonogo_lease_takeovers_total",
        "gonogo_lease_renew_failures_total",
    } <= names
    # Per-gate gauges come from the owning replica only: never read one bare in a panel.
    for expr in (e for e in exprs if not e.startswith("label_values(")):
        for gauge in ("gonogo_criterion_value", "gonogo_criterion_outcome", "gonogo_gate_decision"):
            for match in re.finditer(gauge + r"\b", expr):
                before = expr[: match.start()]
                assert re.search(r"(max|sum) by \([^)]*gate[^)]*\) \($", before), expr


def test_extraction_finds_names_and_labels() -> None:
    assert referenced(['max by (gate) (gonogo_gate_decision{gate=~"$gate", decision="go"})']) == [
        ("gonogo_gate_decision", {"gate", "decision"})
    ]


# --- promtool -------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_when_they_should() -> None:
    result = promtool("test", "rules", "tests/deploy/promtool/alerts_test.yaml")
    assert result.returncode == 0, shlex.join(result.args) + "\n" + result.stdout + result.stderr


def test_alert_rules_cover_the_operational_failures() -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "GonogoGateRollback",
        "GonogoProbeErrorsHigh",
        "GonogoDown",
        "GonogoChecksStuck",
        "GonogoGatesUnowned",
        "GonogoLeaseRenewFailures",
        "GonogoLeaseTakeoversFrequent",
    } <= names
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
