"""The pipeline integration examples: they parse, and what they rely on exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.support import REPO, in_ci

EXAMPLES = REPO / "examples" / "integrations"


def documents(name: str) -> list[dict[str, Any]]:
    with (EXAMPLES / name).open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.y*ml")), ids=lambda p: p.name)
def test_every_example_is_valid_yaml(path: Path) -> None:
    with path.open(encoding="utf-8") as handle:
        assert [doc for doc in yaml.safe_load_all(handle) if doc]


def test_argo_analysis_template_starts_a_check_of_the_release() -> None:
    """The fields against Argo's schema and the exchanges: tests/app/integrations/test_argo.py."""
    [template] = [
        d
        for d in documents("argo-rollouts-analysis-template.yaml")
        if d["kind"] == "AnalysisTemplate" and d["metadata"]["name"] == "gonogo-release"
    ]
    [metric] = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert web["method"] == "POST"
    assert re.fullmatch(r"https?://[^/]+/api/v1/gates/\{\{args\.gate\}\}/checks", web["url"])
    assert web["jsonBody"]["version"] == "{{args.version}}"
    assert web["jsonPath"] == "{$.conclusion}"
    assert metric["successCondition"] == 'result == "go"'
    assert any(h["key"] == "Idempotency-Key" for h in web["headers"])
    args = {a["name"]: a for a in template["spec"]["args"]}
    assert "secretKeyRef" in args["gonogo-token"]["valueFrom"], "the token comes from a Secret"


def test_flagger_canary_uses_both_release_scoped_hooks() -> None:
    [canary] = documents("flagger-canary.yaml")
    assert canary["kind"] == "Canary"
    hooks = {h["type"]: h for h in canary["spec"]["analysis"]["webhooks"]}
    assert set(hooks) == {"confirm-promotion", "rollback"}
    base = r"https?://[^/]+/api/v1/integrations/flagger/[a-z0-9-]+"
    assert re.fullmatch(base, hooks["confirm-promotion"]["url"])
    assert re.fullmatch(base + "/rollback", hooks["rollback"]["url"])
    # One check per revision: both hooks must ask for the same one.
    asked = [
        {k: v for k, v in h["metadata"].items() if k in ("version", "environment", "stage")}
        for h in hooks.values()
    ]
    assert asked[0] == asked[1] and "version" in asked[0]


def test_flagger_routes_exist() -> None:
    from app.integrations.flagger import router

    paths = {(route.path, tuple(sorted(route.methods))) for route in router.routes}  # type: ignore[attr-defined]
    assert ("/api/v1/integrations/flagger/{gate}", ("POST",)) in paths
    assert ("/api/v1/integrations/flagger/{gate}/rollback", ("POST",)) in paths


def test_azure_devops_gate_succeeds_only_on_go() -> None:
    [pipeline] = documents("azure-devops.yml")
    tasks = [
        step
        for stage in pipeline["stages"]
        for job in stage["jobs"]
        for step in job.get("steps", [])
        if str(step.get("task", "")).startswith("InvokeRESTAPI@")
    ]
    [task] = tasks
    inputs = task["inputs"]
    assert inputs["successCriteria"] == "eq(root['decision'], 'go')"
    assert inputs["urlSuffix"].startswith("/api/v1/gates/") and inputs["urlSuffix"].endswith(
        "/decision"
    )
    assert inputs["method"] == "GET"


# --- the CLI commands the GitHub and GitLab jobs run -------------------------------------


def check_commands() -> dict[str, str]:
    """Each example's `gonogo check ...` invocation, continuation lines joined."""
    found = {}
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        text = (EXAMPLES / name).read_text(encoding="utf-8")
        text = re.sub(r"\\\n\s*", " ", text)
        doc_scripts = []
        for doc in documents(name):
            doc_scripts.extend(_strings(doc))
        scripts = " ".join(doc_scripts) or text
        match = re.search(r"gonogo check\b([^;\n]*)", scripts)
        assert match, f"{name} does not run gonogo check"
        found[name] = match.group(0)
    return found


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [re.sub(r"\\\n\s*", " ", node)]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def check_help() -> str:
    from app.cli import cli
    from app.cli.commands import register_all

    register_all(cli)
    if "check" not in {c.name for c in cli.registered_commands} and not in_ci():
        pytest.skip("`gonogo check` (app/commands/check.py) is not in this tree yet")
    result = CliRunner().invoke(cli, ["check", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("example", ["github-actions.yml", "gitlab-ci.yml"])
def test_pipeline_jobs_use_only_real_check_flags(example: str) -> None:
    command = check_commands()[example]
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", command))
    assert {"--server", "--gate", "--version"} <= flags
    help_text = check_help()
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), (
            f"{example} uses {flag}, which `gonogo check` does not accept"
        )


def test_github_rollback_job_keys_on_exit_code_2() -> None:
    [workflow] = documents("github-actions.yml")
    jobs = workflow["jobs"]
    assert jobs["switch-traffic"]["needs"] == "gate"
    assert "exit-code == '2'" in jobs["rollback"]["if"]
    assert jobs["gate"]["outputs"]["exit-code"] == "${{ steps.check.outputs.exit-code }}"
