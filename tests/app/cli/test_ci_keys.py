"""The default idempotency key of ``gonogo check``: one per CI attempt, gate and stage."""

from __future__ import annotations

import pytest

from app.cli.check import choose_idempotency_key
from app.cli.ci import MAX_KEY, default_idempotency_key

GITHUB = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "4711"}


def key(env: dict[str, str], gate: str = "portal", stage: str | None = "canary") -> str | None:
    return default_idempotency_key(env, gate=gate, stage=stage)


@pytest.mark.parametrize(
    ("first", "rerun"),
    [
        ({**GITHUB, "GITHUB_RUN_ATTEMPT": "1"}, {**GITHUB, "GITHUB_RUN_ATTEMPT": "2"}),
        (
            {"GITLAB_CI": "true", "CI_PROJECT_ID": "7", "CI_JOB_ID": "100"},
            {"GITLAB_CI": "true", "CI_PROJECT_ID": "7", "CI_JOB_ID": "101"},  # a retried job
        ),
        (
            {
                "TF_BUILD": "True",
                "BUILD_BUILDID": "9",
                "SYSTEM_JOBID": "j",
                "SYSTEM_JOBATTEMPT": "1",
            },
            {
                "TF_BUILD": "True",
                "BUILD_BUILDID": "9",
                "SYSTEM_JOBID": "j",
                "SYSTEM_JOBATTEMPT": "2",
            },
        ),
        (
            {"JENKINS_URL": "http://ci", "BUILD_TAG": "jenkins-shop-41"},
            {"JENKINS_URL": "http://ci", "BUILD_TAG": "jenkins-shop-42"},
        ),
        (
            {"BUILDKITE": "true", "BUILDKITE_JOB_ID": "a1", "BUILDKITE_RETRY_COUNT": "0"},
            {"BUILDKITE": "true", "BUILDKITE_JOB_ID": "a1", "BUILDKITE_RETRY_COUNT": "1"},
        ),
    ],
    ids=["github", "gitlab", "azure", "jenkins", "buildkite"],
)
def test_a_retry_keeps_the_key_and_a_rerun_changes_it(
    first: dict[str, str], rerun: dict[str, str]
) -> None:
    assert key(first) is not None
    assert key(first) == key(dict(first))  # the same step retried in the same attempt
    assert key(rerun) != key(first)


def test_the_key_names_the_gate_and_the_stage() -> None:
    env = {**GITHUB, "GITHUB_RUN_ATTEMPT": "3"}
    assert key(env) == "gonogo-check:github:acme/shop:run=4711:attempt=3:gate=portal:stage=canary"
    assert key(env, gate="billing") != key(env)
    assert key(env, stage="full") != key(env)
    assert key(env, stage=None) == key(env, stage=None) != key(env)


def test_outside_ci_each_run_gets_a_new_key() -> None:
    assert key({}) is None
    assert key({"GITHUB_RUN_ID": "1"}) is None  # not in GitHub Actions unless it says so
    first = choose_idempotency_key(None, {}, gate="portal", stage=None)
    assert first != choose_idempotency_key(None, {}, gate="portal", stage=None)


def test_a_given_key_wins_over_the_ci_run() -> None:
    assert choose_idempotency_key("mine", GITHUB, gate="portal", stage=None) == "mine"


def test_a_long_or_unprintable_ci_value_is_hashed_into_a_valid_key() -> None:
    long = key({"JENKINS_URL": "x", "BUILD_TAG": "j" * 400})
    odd = key({"JENKINS_URL": "x", "BUILD_TAG": "job\nname"})
    for found in (long, odd):
        assert found is not None
        assert len(found) <= MAX_KEY
        assert found.isprintable()
    assert long == key({"JENKINS_URL": "x", "BUILD_TAG": "j" * 400})
