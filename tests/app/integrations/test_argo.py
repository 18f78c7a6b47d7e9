"""The Argo Rollouts example: its fields are Argo's, and the exchanges Argo's web provider
makes with it judge the canary's own version (``tests/app/integrations/argo.py`` says what
of Argo's behaviour is relied on, and where Argo defines it)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import yaml

from gates.conditions import parse_duration
from tests.app.conftest import TOKENS, Service
from tests.app.integrations import argo
from tests.app.integrations.canary_support import VersionBench
from tests.app.integrations.canary_support import bench as bench  # the fixture
from tests.app.integrations.canary_support import gates_dir as gates_dir  # the fixture
from tests.support import REPO

EXAMPLE = REPO / "examples" / "integrations" / "argo-rollouts-analysis-template.yaml"


def portal_timeout() -> timedelta:
    """The example gate's timeout: how long gonogo may judge before it says no_go."""
    gate = yaml.safe_load((REPO / "examples" / "gates" / "portal.yaml").read_text())
    return parse_duration(gate["timeout"])


def documents() -> list[dict[str, Any]]:
    with EXAMPLE.open(encoding="utf-8") as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def template(name: str) -> dict[str, Any]:
    [found] = [
        d for d in documents() if d["kind"] == "AnalysisTemplate" and d["metadata"]["name"] == name
    ]
    return found


def web_metric() -> dict[str, Any]:
    [metric] = template("gonogo-release")["spec"]["metrics"]
    return metric


def rollout() -> dict[str, Any]:
    [found] = [d for d in documents() if d["kind"] == "Rollout"]
    return found


# --- the fields, against Argo's schema ------------------------------------------------------


@pytest.mark.parametrize("name", ["gonogo-release", "gonogo-release-job"])
def test_each_template_uses_only_argos_fields_and_passes_its_validation(name: str) -> None:
    found = template(name)
    assert found["apiVersion"] == "argoproj.io/v1alpha1"
    assert set(found["spec"]) <= argo.TEMPLATE_SPEC_KEYS
    for arg in found["spec"]["args"]:
        assert set(arg) <= argo.ARGUMENT_KEYS, arg
        assert set(arg.get("valueFrom", {})) <= argo.TEMPLATE_VALUE_FROM, arg
    for metric in found["spec"]["metrics"]:
        assert argo.validate_metric(metric) == []
        declared = {a["name"] for a in found["spec"]["args"]}
        used = set(re.findall(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}", str(metric)))
        assert used <= declared, f"{name} uses undeclared args {used - declared}"


def test_the_web_metric_asks_for_a_check_of_the_release_by_idempotent_post() -> None:
    metric = web_metric()
    web = metric["provider"]["web"]
    assert web["method"] == "POST"
    assert re.fullmatch(r"https?://[^/]+/api/v1/gates/\{\{args\.gate\}\}/checks", web["url"])
    headers = {h["key"]: h["value"] for h in web["headers"]}
    assert headers["Authorization"] == "Bearer {{args.gonogo-token}}"
    for part in ("rollout", "namespace", "revision"):
        assert f"{{{{args.{part}}}}}" in headers["Idempotency-Key"]
    assert web["jsonBody"]["version"] == "{{args.version}}"
    assert web["jsonPath"] == "{$.conclusion}"
    assert metric["successCondition"] == 'result == "go"'
    args = {a["name"]: a for a in template("gonogo-release")["spec"]["args"]}
    assert "secretKeyRef" in args["gonogo-token"]["valueFrom"], "the token comes from a Secret"


def test_every_conclusion_reads_as_intended() -> None:
    metric = web_metric()
    assert argo.evaluate(metric, "go") == argo.SUCCESSFUL
    assert argo.evaluate(metric, "running") == argo.INCONCLUSIVE
    for ended in ("no_go", "rollback", "cancelled"):
        assert argo.evaluate(metric, ended) == argo.FAILED, ended
    assert argo.evaluate(metric, None) == argo.INCONCLUSIVE  # not a gonogo answer: no go


def test_still_judging_cannot_outlast_the_inconclusive_limit() -> None:
    """gonogo ends a check at its gate's timeout, so a check is "running" for at most
    timeout / interval measurements: below the limit, so it never pauses the rollout;
    and no ``count`` could turn a run of "running" answers into a success."""
    metric = web_metric()
    measurements = portal_timeout() / parse_duration(metric["interval"])
    assert measurements < int(metric["inconclusiveLimit"])
    assert "count" not in metric
    assert int(metric["consecutiveSuccessLimit"]) == 1 and int(metric["failureLimit"]) == 0
    run = argo.MetricRun(metric)
    for _ in range(int(measurements) + 1):
        assert run.record(argo.Measurement(argo.INCONCLUSIVE, "running")) == argo.RUNNING


def test_the_rollout_step_passes_every_argument_the_template_needs() -> None:
    [step] = [s for s in rollout()["spec"]["strategy"]["canary"]["steps"] if "analysis" in s]
    analysis = step["analysis"]
    assert [t["templateName"] for t in analysis["templates"]] == ["gonogo-release"]
    given = {}
    for arg in analysis["args"]:
        assert set(arg) <= argo.ARGUMENT_KEYS, arg
        source = arg.get("valueFrom", {})
        assert set(source) <= argo.ROLLOUT_VALUE_FROM, arg
        if "podTemplateHashValue" in source:
            assert source["podTemplateHashValue"] in argo.POD_TEMPLATE_HASHES
        if "fieldRef" in source:
            assert set(source["fieldRef"]) == {"fieldPath"}
        given[arg["name"]] = arg
    assert given["revision"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
    needed = {
        a["name"]
        for a in template("gonogo-release")["spec"]["args"]
        if "value" not in a and "valueFrom" not in a
    }
    assert needed <= set(given), needed - set(given)
    version_path = given["version"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert version_path == "spec.template.metadata.labels.version"
    assert rollout()["spec"]["template"]["metadata"]["labels"]["version"]


def test_the_job_metric_runs_gonogo_check_and_keeps_the_token_in_a_secret() -> None:
    [metric] = template("gonogo-release-job")["spec"]["metrics"]
    job = metric["provider"]["job"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    [container] = pod["containers"]
    command = container["command"]
    assert command[:2] == ["gonogo", "check"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--gate"] == "{{args.gate}}" and options["--version"] == "{{args.version}}"
    assert "--token" not in options
    [env] = container["env"]
    assert env["name"] == "GONOGO_TOKEN" and "secretKeyRef" in env["valueFrom"]
    # Exit 0 (go) is Argo's success, any other exit its failure; longer than the gate.
    assert job["activeDeadlineSeconds"] > portal_timeout().total_seconds()


# --- the exchanges, against the service -----------------------------------------------------

ARGS = {
    "gate": "canary",
    "rollout": "portal",
    "namespace": "portal",
    "revision": "6d4f8b9c7",
    "stage": "canary",
    "gonogo-token": TOKENS["pipeline"],
}


def resolved(**args: str) -> dict[str, Any]:
    return argo.substitute(web_metric(), {**ARGS, **args})


async def analyse(
    service: Service, metric: dict[str, Any], *, most: int = 20
) -> tuple[str, argo.MetricRun]:
    """Measure like Argo until the metric's phase is final, with gonogo's clock moving
    one gate interval between measurements."""
    run = argo.MetricRun(metric)
    for _ in range(most):
        phase = run.record(await argo.measure(service.client, metric))
        if phase != argo.RUNNING:
            return phase, run
        await service.advance(10)
    return argo.RUNNING, run


def check_ids(run: argo.MetricRun) -> set[str]:
    return {m.body["id"] for m in run.measurements if isinstance(m.body, dict)}


async def listed(service: Service) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await service.get("/api/v1/checks")).json()["items"]
    return items


async def test_a_healthy_canary_is_inconclusive_while_judged_then_successful(
    service: Service,
) -> None:
    bench = service.bench
    assert isinstance(bench, VersionBench)
    bench.by_version["2.4.1"] = 1.0
    phase, run = await analyse(service, resolved(version="2.4.1"))
    assert phase == argo.SUCCESSFUL
    assert run.measurements[0].value == "running"
    assert run.measurements[-1].phase == argo.SUCCESSFUL
    assert argo.INCONCLUSIVE in {m.phase for m in run.measurements}
    assert [m.status for m in run.measurements] == [201] + [200] * (len(run.measurements) - 1)
    [check_id] = check_ids(run)
    [check] = await listed(service)
    assert (check["id"], check["version"], check["decision"]) == (check_id, "2.4.1", "go")
    assert check["metadata"]["argo"]["revision"] == "6d4f8b9c7"


async def test_a_broken_canary_fails_the_analysis_while_the_fleet_is_go(
    service: Service,
) -> None:
    bench = service.bench
    assert isinstance(bench, VersionBench)
    bench.by_version["2.5.0"] = 0.90
    for _ in range(2):
        await service.advance(10)
    fleet = (await service.get("/api/v1/gates/canary/decision")).json()
    assert fleet["decision"] == "go"
    phase, run = await analyse(service, resolved(version="2.5.0"))
    assert phase == argo.FAILED
    assert run.measurements[-1].value == "rollback"
    assert len(check_ids(run)) == 1
    assert 'availability{version=~"2.5.0"}' in bench.queries


async def test_a_check_that_times_out_no_go_fails_the_analysis_without_pausing(
    service: Service,
) -> None:
    bench = service.bench
    assert isinstance(bench, VersionBench)
    bench.by_version["2.6.0"] = 0.97  # never go, never a breach: no_go at the deadline
    phase, run = await analyse(service, resolved(version="2.6.0"))
    assert phase == argo.FAILED
    assert run.measurements[-1].value == "no_go"
    assert run.inconclusive <= int(web_metric()["inconclusiveLimit"])


async def test_a_cancelled_check_fails_the_analysis(service: Service) -> None:
    metric = resolved(version="2.7.0")
    run = argo.MetricRun(metric)
    first = await argo.measure(service.client, metric)
    assert run.record(first) == argo.RUNNING
    cancelled = await service.post(f"/api/v1/checks/{first.body['id']}/cancel", "pipeline")
    assert cancelled.status_code == 200
    assert run.record(await argo.measure(service.client, metric)) == argo.FAILED
    assert run.measurements[-1].value == "cancelled"


async def test_a_new_revision_is_a_new_check(service: Service) -> None:
    one = await argo.measure(service.client, resolved(version="2.8.0"))
    again = await argo.measure(service.client, resolved(version="2.8.0"))
    other = await argo.measure(service.client, resolved(version="2.8.1", revision="7f00aa11b"))
    assert one.body["id"] == again.body["id"] != other.body["id"]
    assert len(await listed(service)) == 2


async def test_a_token_gonogo_refuses_is_an_error_and_ends_in_error(service: Service) -> None:
    metric = resolved(version="2.9.0", **{"gonogo-token": "not-a-token"})
    phase, run = await analyse(service, metric)
    assert phase == argo.ERROR
    assert {m.status for m in run.measurements} == {401}
    assert await listed(service) == []
