"""What Argo Rollouts does with an AnalysisTemplate's metric, small enough to read.

Argo's behaviour as of argoproj/argo-rollouts (2026), in the names it uses:

- Schema (``pkg/apis/rollouts/v1alpha1/analysis_types.go``, JSON field names):
  ``AnalysisTemplateSpec``: ``metrics``, ``args``, ``dryRun``, ``measurementRetention``,
  ``templates``. ``Metric``: ``name``, ``interval``, ``initialDelay``, ``count``,
  ``successCondition``, ``failureCondition``, ``failureLimit``, ``inconclusiveLimit``,
  ``consecutiveErrorLimit``, ``consecutiveSuccessLimit``, ``provider``. ``WebMetric``:
  ``method`` (GET, POST, PUT; default GET), ``url``, ``headers`` (``[{key, value}]``),
  ``body``, ``jsonBody``, ``timeoutSeconds``, ``jsonPath``, ``insecure``,
  ``authentication``. ``JobMetric``: ``metadata``, ``spec`` (a ``batch/v1`` JobSpec).
  ``Argument``: ``name``, ``value``, ``valueFrom`` (``secretKeyRef``, ``fieldRef``); a
  Rollout step's ``AnalysisRunArgument`` takes ``valueFrom.podTemplateHashValue``
  (``Latest`` or ``Stable``) or ``valueFrom.fieldRef.fieldPath``.
- Validation (``utils/analysis/factory.go`` ``ValidateMetric``): limits not negative
  (``failureLimit`` may be -1, disabled; ``consecutiveSuccessLimit`` 0 is disabled; not
  both disabled); with a ``count``, ``count >= failureLimit + consecutiveSuccessLimit``
  and ``count >= inconclusiveLimit``; ``interval`` needed when ``count > 1``; exactly
  one provider.
- The web provider (``metricproviders/webmetric/webmetric.go``): ``{{args.NAME}}`` is
  replaced everywhere in the metric; ``body`` and ``jsonBody`` exclude each other and
  GET; each header is ``Header.Set``; ``jsonBody`` is sent marshalled with
  ``Content-Type: application/json``; a transport error or a status outside 200-299 is
  a measurement **Error**; a JSON answer is read with ``jsonPath`` (default ``{$}``),
  the first value found is ``result``, none found is an Error.
- Conditions (``utils/evaluate/evaluate.go`` ``EvaluateResult``): with both conditions
  set, failure wins, success next, and a result matching neither is **Inconclusive**.
- Assessment (``analysis/analysis.go`` ``assessMetricStatus``): after each measurement,
  Failed when failures exceed ``failureLimit`` (default 0), Inconclusive (the rollout
  pauses) when inconclusive measurements exceed ``inconclusiveLimit`` (default 0), Error
  when consecutive errors exceed ``consecutiveErrorLimit`` (default 4); then Successful
  once ``consecutiveSuccessLimit`` consecutive successes are reached; with a ``count``
  reached, Successful (or Inconclusive when a ``consecutiveSuccessLimit`` is set and not
  reached); otherwise still Running.

The expression language (expr-lang) is far larger than what is here: ``condition``
understands only ``result == "text"`` and ``result in ["a", "b"]`` and refuses anything
else, so a template that says more fails its test rather than being misread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

TEMPLATE_SPEC_KEYS = {"metrics", "args", "dryRun", "measurementRetention", "templates"}
METRIC_KEYS = {
    "name",
    "interval",
    "initialDelay",
    "count",
    "successCondition",
    "failureCondition",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "consecutiveSuccessLimit",
    "provider",
}
PROVIDERS = {
    "prometheus",
    "kayenta",
    "web",
    "datadog",
    "wavefront",
    "newRelic",
    "job",
    "cloudWatch",
    "graphite",
    "influxdb",
    "skywalking",
    "plugin",
}
WEB_KEYS = {
    "method",
    "url",
    "headers",
    "body",
    "timeoutSeconds",
    "jsonPath",
    "insecure",
    "jsonBody",
    "authentication",
}
WEB_METHODS = {"GET", "POST", "PUT"}
JOB_KEYS = {"metadata", "spec"}
ARGUMENT_KEYS = {"name", "value", "valueFrom"}
TEMPLATE_VALUE_FROM = {"secretKeyRef", "fieldRef"}
ROLLOUT_VALUE_FROM = {"podTemplateHashValue", "fieldRef"}
POD_TEMPLATE_HASHES = {"Latest", "Stable"}
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR, RUNNING = (
    "Successful",
    "Failed",
    "Inconclusive",
    "Error",
    "Running",
)

_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
_EQUALS = re.compile(r'^result\s*==\s*"([^"\\]*)"$')
_IN = re.compile(r"^result\s+in\s+\[(.*)\]$")
_ITEM = re.compile(r'^\s*"([^"\\]*)"\s*$')


def validate_metric(metric: Mapping[str, Any]) -> list[str]:
    """``ValidateMetric``'s rules for the fields a template may set; [] when valid."""
    problems = [f"unknown metric field {k!r}" for k in metric if k not in METRIC_KEYS]
    count = int(metric.get("count", 0))
    failure_limit = int(metric.get("failureLimit", 0))
    success_limit = int(metric.get("consecutiveSuccessLimit", 0))
    inconclusive_limit = int(metric.get("inconclusiveLimit", 0))
    if success_limit < 0:
        problems.append("consecutiveSuccessLimit must be >= 0")
    if failure_limit < -1:
        problems.append("failureLimit must be >= 0, or -1 to be disabled")
    if success_limit == 0 and failure_limit == -1:
        problems.append("failureLimit and consecutiveSuccessLimit cannot both be disabled")
    if inconclusive_limit < 0:
        problems.append("inconclusiveLimit must be >= 0")
    if int(metric.get("consecutiveErrorLimit", 0)) < 0:
        problems.append("consecutiveErrorLimit must be >= 0")
    if count > 0:
        if failure_limit >= 0 and count < failure_limit + success_limit:
            problems.append("count must be >= failureLimit + consecutiveSuccessLimit")
        if count < inconclusive_limit:
            problems.append("count must be >= inconclusiveLimit")
    if count > 1 and not metric.get("interval"):
        problems.append("interval must be specified when count > 1")
    provider = metric.get("provider") or {}
    if len(provider) != 1 or not set(provider) <= PROVIDERS:
        problems.append(f"exactly one provider, got {sorted(provider)}")
    web = provider.get("web")
    if web is not None:
        problems += [f"unknown web field {k!r}" for k in web if k not in WEB_KEYS]
        method = web.get("method", "GET")
        if method not in WEB_METHODS:
            problems.append(f"web method {method!r} is not GET, POST or PUT")
        if "body" in web and "jsonBody" in web:
            problems.append("use either body or jsonBody")
        if method == "GET" and ("body" in web or "jsonBody" in web):
            problems.append("body/jsonBody only with POST or PUT")
        for header in web.get("headers", []):
            if set(header) != {"key", "value"}:
                problems.append(f"a header is {{key, value}}, got {sorted(header)}")
        if not isinstance(web.get("timeoutSeconds", 10), int):
            problems.append("timeoutSeconds is a whole number")
    job = provider.get("job")
    if job is not None:
        problems += [f"unknown job field {k!r}" for k in job if k not in JOB_KEYS]
    return problems


def substitute(metric: Mapping[str, Any], args: Mapping[str, str]) -> dict[str, Any]:
    """The metric with every ``{{args.NAME}}`` replaced, as Argo resolves it; a name
    with no value is an error, as in Argo."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in args:
            raise KeyError(f"args.{name} is not given")
        return json.dumps(args[name])[1:-1]  # inside a JSON string already

    resolved: dict[str, Any] = json.loads(_ARG.sub(value, json.dumps(metric)))
    return resolved


def json_path(document: Any, path: str) -> Any:
    """``{$.a.b}`` (the only form used here) on a decoded JSON answer; KeyError if absent."""
    match = re.fullmatch(r"\{\$((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}", path)
    if match is None:
        raise ValueError(f"jsonPath form not supported here: {path}")
    value = document
    for part in [p for p in match.group(1).split(".") if p]:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(part)
        value = value[part]
    return value


def condition(expression: str, result: Any) -> bool:
    """``result == "x"`` or ``result in ["x", "y"]``; anything else is refused."""
    text = expression.strip()
    equals = _EQUALS.match(text)
    if equals is not None:
        return bool(result == equals.group(1))
    within = _IN.match(text)
    if within is not None:
        items = []
        for item in within.group(1).split(","):
            quoted = _ITEM.match(item)
            if quoted is None:
                raise ValueError(f"condition form not supported here: {expression}")
            items.append(quoted.group(1))
        return result in items
    raise ValueError(f"condition form not supported here: {expression}")


def evaluate(metric: Mapping[str, Any], result: Any) -> str:
    """``EvaluateResult``: the phase of one measurement's value."""
    success_text = metric.get("successCondition", "")
    failure_text = metric.get("failureCondition", "")
    success = condition(success_text, result) if success_text else False
    failure = condition(failure_text, result) if failure_text else False
    if not success_text and not failure_text:
        return SUCCESSFUL
    if success_text and not failure_text:
        failure = not success
    if failure_text and not success_text:
        success = not failure
    if failure:
        return FAILED
    if not success:
        return INCONCLUSIVE
    return SUCCESSFUL


@dataclass
class Measurement:
    phase: str
    value: Any = None
    status: int | None = None
    body: Any = None


@dataclass
class MetricRun:
    """A metric's counters and the phase ``assessMetricStatus`` gives them."""

    metric: Mapping[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    failed: int = 0
    inconclusive: int = 0
    successful: int = 0
    consecutive_errors: int = 0
    consecutive_successes: int = 0

    def record(self, measurement: Measurement) -> str:
        self.measurements.append(measurement)
        if measurement.phase == ERROR:
            self.consecutive_errors += 1
        else:
            self.consecutive_errors = 0
        if measurement.phase == SUCCESSFUL:
            self.successful += 1
            self.consecutive_successes += 1
        else:
            self.consecutive_successes = 0
        if measurement.phase == FAILED:
            self.failed += 1
        if measurement.phase == INCONCLUSIVE:
            self.inconclusive += 1
        return self.phase()

    def phase(self) -> str:
        metric = self.metric
        failure_limit = int(metric.get("failureLimit", 0))
        inconclusive_limit = int(metric.get("inconclusiveLimit", 0))
        error_limit = int(metric.get("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERROR_LIMIT))
        success_limit = int(metric.get("consecutiveSuccessLimit", 0))
        found = ""
        if failure_limit >= 0 and self.failed > failure_limit:
            found = FAILED
        if self.inconclusive > inconclusive_limit:
            found = INCONCLUSIVE
        if self.consecutive_errors > error_limit:
            found = ERROR
        if found:
            return found
        if success_limit > 0 and self.consecutive_successes >= success_limit:
            return SUCCESSFUL
        count = int(metric.get("count", 0)) or (None if metric.get("interval") else 1)
        if count is not None and len(self.measurements) >= count:
            return INCONCLUSIVE if success_limit > 0 else SUCCESSFUL
        return RUNNING


async def measure(client: httpx.AsyncClient, metric: Mapping[str, Any]) -> Measurement:
    """One measurement of a resolved ``web`` metric, as the web provider takes it: the
    URL's scheme and host are the test client's, its path and query the template's."""
    web = metric["provider"]["web"]
    url = urlsplit(web["url"])
    headers: dict[str, str] = {}
    for header in web.get("headers", []):
        headers[header["key"].lower()] = header["value"]  # Header.Set: the last one wins
    content: bytes | None = None
    if "jsonBody" in web:
        content = json.dumps(web["jsonBody"], separators=(",", ":")).encode()
        headers["content-type"] = "application/json"
    elif "body" in web:
        content = web["body"].encode()
    target = url.path + (f"?{url.query}" if url.query else "")
    try:
        response = await client.request(
            web.get("method", "GET"), target, headers=headers, content=content
        )
    except httpx.HTTPError:
        return Measurement(ERROR)
    if not 200 <= response.status_code < 300:
        return Measurement(ERROR, status=response.status_code)
    try:
        body = response.json()
    except ValueError:
        value: Any = response.text
        return Measurement(evaluate(metric, value), value, response.status_code)
    try:
        value = json_path(body, web.get("jsonPath", "{$}"))
    except KeyError:
        return Measurement(ERROR, status=response.status_code, body=body)
    return Measurement(evaluate(metric, value), value, response.status_code, body)
