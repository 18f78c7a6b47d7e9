"""The default idempotency key of ``gonogo check``: the CI run, its attempt, the gate and
the stage. A step retried within one attempt sends the same key, so it attaches to the
check it started; a new attempt (a re-run) has a new key, so it starts a new check."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

MAX_KEY = 255  # the server's limit for an Idempotency-Key

Env = Mapping[str, str]


def _github(env: Env) -> str | None:
    if env.get("GITHUB_ACTIONS") != "true" or not env.get("GITHUB_RUN_ID"):
        return None
    repository = env.get("GITHUB_REPOSITORY", "")
    attempt = env.get("GITHUB_RUN_ATTEMPT") or 1
    return f"github:{repository}:run={env['GITHUB_RUN_ID']}:attempt={attempt}"


def _gitlab(env: Env) -> str | None:
    # A retried GitLab job is a new job with a new CI_JOB_ID: the job id is the attempt.
    if env.get("GITLAB_CI") != "true":
        return None
    project = env.get("CI_PROJECT_ID", "")
    if env.get("CI_JOB_ID"):
        return f"gitlab:{project}:job={env['CI_JOB_ID']}"
    if env.get("CI_PIPELINE_ID") and env.get("CI_JOB_NAME"):
        return f"gitlab:{project}:pipeline={env['CI_PIPELINE_ID']}:job={env['CI_JOB_NAME']}"
    return None


def _azure(env: Env) -> str | None:
    if env.get("TF_BUILD", "").lower() != "true" or not env.get("BUILD_BUILDID"):
        return None
    job = env.get("SYSTEM_JOBID", "")
    attempt = env.get("SYSTEM_JOBATTEMPT") or 1
    return f"azure:build={env['BUILD_BUILDID']}:job={job}:attempt={attempt}"


def _jenkins(env: Env) -> str | None:
    # BUILD_TAG is jenkins-<job>-<build number>; a rebuild has a new number.
    if not env.get("JENKINS_URL") or not env.get("BUILD_TAG"):
        return None
    return f"jenkins:{env['BUILD_TAG']}"


def _buildkite(env: Env) -> str | None:
    if env.get("BUILDKITE") != "true" or not env.get("BUILDKITE_JOB_ID"):
        return None
    retry = env.get("BUILDKITE_RETRY_COUNT") or 0
    return f"buildkite:job={env['BUILDKITE_JOB_ID']}:retry={retry}"


_PROVIDERS: tuple[Callable[[Env], str | None], ...] = (
    _github,
    _gitlab,
    _azure,
    _jenkins,
    _buildkite,
)


def ci_attempt(env: Env) -> str | None:
    """The CI run and attempt this process runs in, or ``None`` outside a known CI."""
    for provider in _PROVIDERS:
        found = provider(env)
        if found is not None:
            return found
    return None


def default_idempotency_key(env: Env, *, gate: str, stage: str | None) -> str | None:
    """The key for a check of ``gate`` at ``stage`` from this CI attempt, or ``None``."""
    attempt = ci_attempt(env)
    if attempt is None:
        return None
    key = f"gonogo-check:{attempt}:gate={gate}:stage={stage or '-'}"
    if len(key) > MAX_KEY or not key.isprintable():
        # CI values are not ours to trust: a long or unprintable one is hashed, stably.
        key = "gonogo-check:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key
