"""A third-party probe type, installed as its own package, works like a built-in one."""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import entry_points

from gates.engine import CriterionOutcome, Decision, decide
from gates.model import Gate
from gates.sampler import take_sample
from probes.registry import ENTRY_POINT_GROUP, probe_type, probe_types


def test_the_plugin_is_registered_by_its_own_distribution() -> None:
    (entry,) = entry_points(group=ENTRY_POINT_GROUP, name="constant")
    assert entry.dist is not None
    assert entry.dist.name == "gonogo-probe-example"
    assert entry.value == "gonogo_probe_example:ConstantProbe"


def test_the_registry_loads_it_alongside_the_built_ins() -> None:
    factory = probe_type("constant")
    assert factory.type_name == "constant"
    assert factory.__module__ == "gonogo_probe_example"
    assert {"constant", "http", "prometheus", "alertmanager", "json"} <= set(probe_types())


async def test_it_measures_through_the_sampler(now: datetime) -> None:
    factory = probe_type("constant")
    config = factory.config_model.model_validate({"type": "constant", "value": 0.004})
    gate = Gate.model_validate(
        {
            "name": "plugin",
            "steady_for": 1,
            "probes": {"fixed": config},
            "criteria": [
                {"name": "low", "probe": "fixed", "go": "< 1%"},
                {"name": "high", "probe": "fixed", "go": "> 1%"},
            ],
        }
    )
    probe = factory(config, name="fixed")
    sample = await take_sample(gate, {"fixed": probe}, now=now, values={})
    await probe.aclose()
    low, high = sample.results
    assert (low.outcome, low.value) == (CriterionOutcome.PASS, 0.004)
    assert high.outcome is CriterionOutcome.FAIL
    assert decide(gate, [sample]).decision is Decision.NO_GO
    only_low = gate.model_copy(update={"criteria": gate.criteria[:1]})
    assert decide(only_low, [sample]).decision is Decision.GO
