"""The integrations file: validated at start-up, every problem with file, line and column;
and the rule for where a GitHub token may be sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.settings import SettingsError, env_policy, load_settings
from app.integrations.forges import IntegrationsFileError, load_integrations, parse_integrations
from app.integrations.github import callback_allowed
from app.main import create_app
from tests.app.integrations.conftest import integrations_yaml

POLICY = env_policy()


def _problems(text: str) -> list[str]:
    with pytest.raises(IntegrationsFileError) as failed:
        parse_integrations(text, source="integrations.yaml", env_policy=POLICY)
    return [str(p) for p in failed.value.problems]


def test_the_example_file_loads(forge_env: None) -> None:
    text = (
        Path(__file__).parents[3] / "examples/integrations/gonogo-integrations.yaml"
    ).read_text()
    doors = parse_integrations(text, source="example", env_policy=POLICY)
    assert doors.github is not None and doors.gitlab is not None
    assert doors.github.rule("caresync/portal", "production") is not None


def test_a_valid_file_gives_both_doors(forge_env: None) -> None:
    doors = parse_integrations(
        integrations_yaml("https://ghe.example/api/v3", "https://gitlab.example"),
        source="i.yaml",
        env_policy=POLICY,
    )
    assert doors.github is not None and doors.gitlab is not None
    assert doors.github.config.api_url == "https://ghe.example/api/v3"
    rule = doors.github.rule("caresync/portal", "staging")
    assert rule is not None and (rule.stage, rule.version_from) == ("canary", "ref")
    assert doors.gitlab.rule("caresync/portal", 30, "production") is not None
    assert doors.gitlab.rule("other", 30, "production") is None


def test_an_unknown_key_is_located(forge_env: None) -> None:
    text = integrations_yaml("https://api.github.com", "https://gitlab.com").replace(
        "    - {repository: caresync/portal, environment: production, gate: portal}",
        "    - {repository: caresync/portal, environment: production, gate: portal, gaet: x}",
    )
    [problem] = _problems(text)
    assert problem.startswith("integrations.yaml:7:76:")
    assert "github.rules[0].gaet: unknown key" in problem


def test_a_variable_the_allow_list_refuses_is_located(forge_env: None) -> None:
    text = integrations_yaml("https://api.github.com", "https://gitlab.com").replace(
        "token_env: GONOGO_NOTIFY_GITLAB_TOKEN", "token_env: GONOGO_TOKENS"
    )
    [problem] = _problems(text)
    assert problem.startswith("integrations.yaml:16:") and "gitlab.token_env" in problem
    assert "gonogo's own settings" in problem


def test_a_secret_that_is_not_set_is_named(
    forge_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GONOGO_NOTIFY_GITHUB_WEBHOOK_SECRET")
    [problem] = _problems(integrations_yaml("https://api.github.com", "https://gitlab.com"))
    assert "GONOGO_NOTIFY_GITHUB_WEBHOOK_SECRET is not set" in problem


def test_a_private_key_that_is_not_pem_is_refused_without_echoing_it(
    forge_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_NOTIFY_GITHUB_APP_KEY", "not-a-key-but-a-secret-value")
    [problem] = _problems(integrations_yaml("https://api.github.com", "https://gitlab.com"))
    assert "PEM private key" in problem
    assert "not-a-key-but-a-secret-value" not in problem


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("stage: canary", 'stage: "can ary"', "github.rules[1].stage"),
        ("gate: portal}", "gate: Portal}", "github.rules[0].gate"),
        ("api_url: https://api.github.com", "api_url: ftp://x", "github.api_url"),
        (
            "  rules:\n    - {project",
            "  rules:\n    - {project: caresync/portal, environment:"
            " production, gate: portal}\n    - {project",
            "gitlab.rules[1]",
        ),
    ],
    ids=["stage", "gate", "url", "duplicate"],
)
def test_bad_values_are_located(forge_env: None, old: str, new: str, expected: str) -> None:
    text = integrations_yaml("https://api.github.com", "https://gitlab.com").replace(old, new)
    assert text != integrations_yaml("https://api.github.com", "https://gitlab.com")
    problems = _problems(text)
    assert any(expected in p and p.startswith("integrations.yaml:") for p in problems), problems


def test_the_service_does_not_start_on_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "integrations.yaml"
    path.write_text("github: {rules: []}\n")
    with pytest.raises(IntegrationsFileError) as failed:
        create_app(load_settings(integrations_file=path, database_url="sqlite+aiosqlite://"))
    assert str(path) in str(failed.value)


def test_no_file_opens_no_door() -> None:
    doors = load_integrations(None, env_policy=POLICY)
    assert (doors.github, doors.gitlab) == (None, None)


@pytest.mark.parametrize(
    ("api", "url", "allowed"),
    [
        (
            "https://api.github.com",
            "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            True,
        ),
        (
            "https://ghe.example/api/v3",
            "https://ghe.example/api/v3/repos/o/r/actions/runs/9/deployment_protection_rule",
            True,
        ),
        (
            "https://ghe.example/api/v3",
            "https://ghe.example/repos/o/r/actions/runs/9/deployment_protection_rule",
            False,
        ),
        (
            "https://api.github.com",
            "https://api.github.com.evil.example/repos/o/r/actions/runs/1/deployment_protection_rule",
            False,
        ),
        (
            "https://api.github.com",
            "http://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            False,
        ),
        (
            "https://api.github.com",
            "https://api.github.com:8443/repos/o/r/actions/runs/1/deployment_protection_rule",
            False,
        ),
        (
            "https://api.github.com",
            "https://user@api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            False,
        ),
        (
            "https://api.github.com",
            "https://api.github.com/app/installations/1/access_tokens",
            False,
        ),
        (
            "https://api.github.com",
            "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule?x=1",
            False,
        ),
    ],
)
def test_a_token_goes_only_to_a_review_url_on_the_configured_host(
    api: str, url: str, allowed: bool
) -> None:
    assert callback_allowed(api, url) is allowed


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("integrations_file", "/nonexistent/integrations.yaml", "GONOGO_INTEGRATIONS_FILE"),
        ("public_url", "ftp://gonogo.example.org", "GONOGO_PUBLIC_URL"),
        ("public_url", "https://user:pw@gonogo.example.org", "GONOGO_PUBLIC_URL"),
    ],
)
def test_bad_door_settings_stop_start_up_naming_the_variable(
    setting: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as failed:
        load_settings(**{setting: value})
    assert message in str(failed.value)
    assert "pw@" not in str(failed.value)


def test_the_public_url_loses_its_trailing_slash() -> None:
    assert load_settings(public_url="https://gonogo.example.org/").public_url == (
        "https://gonogo.example.org"
    )
