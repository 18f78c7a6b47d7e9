"""Fixtures the Flagger and Argo tests import: a gate whose probe answers per version.
The fleet (``version=~".+"``) is healthy, and a canary's health is whatever the test sets
for its version. The front doors must judge the canary, not the fleet."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.base import ProbeConfig, ProbeContext, ProbeQuery
from tests.app.fakes import ProbeBench
from tests.fakeprobe import Answer, FakeProbe

CANARY = """\
interval: 10s
steady_for: 2
rollback_after: 2
timeout: 60s
vars: {version: ".+"}
probes:
  p: {type: constant, value: 1}
criteria:
  - name: availability
    probe: p
    query: 'availability{version=~"${version}"}'
    go: "> 99%"
    rollback: "< 95%"
"""

FLEET = 'availability{version=~".+"}'


class VersionBench(ProbeBench):
    """Builds probes whose answer depends on the version in the filled query."""

    def __init__(self) -> None:
        super().__init__()
        self.by_version: dict[str, Answer] = {}
        self.queries: list[str] = []

    def __call__(self, config: ProbeConfig, name: str) -> FakeProbe:
        probe = FakeProbe(script=self._answer, name=name)
        self.built.append(probe)
        return probe

    def _answer(self, query: ProbeQuery, ctx: ProbeContext) -> Answer:
        text = query.query or ""
        self.queries.append(text)
        if text == FLEET:
            return 1.0
        for version, answer in self.by_version.items():
            if text == f'availability{{version=~"{version}"}}':
                return answer
        return None  # a version nobody set: no data, so inconclusive


@pytest.fixture
def gates_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "gates"
    directory.mkdir()
    (directory / "canary.yaml").write_text(CANARY)
    return directory


@pytest.fixture
def bench() -> VersionBench:
    return VersionBench()
