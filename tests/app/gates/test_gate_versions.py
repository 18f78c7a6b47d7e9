"""Gate versions (docs/decisions.md, "Gate versions and pinning"): a version is a hash of
the resolved definition, and the catalog hands a check the definition of its pinned
version with probes of its own, closing them once no gate or check uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.gates.catalog import GateCatalog, PinnedVersionUnavailable, definition_version
from gates.loader import load_gate_text
from tests.app.fakes import ProbeBench, eventually, gate_yaml

BASE = gate_yaml(interval="10s", steady_for=2)


def version_of(text: str) -> str:
    return definition_version(load_gate_text(text, name="portal", source="test"))


def test_the_version_hashes_the_resolved_definition_not_the_text() -> None:
    same_meaning = [
        "# a comment changes nothing\n" + BASE,
        BASE.replace("interval: 10s", "interval: 10000ms"),
        BASE.replace("steady_for: 2\n", "").replace(
            "interval: 10s", "interval: 10s\nsteady_for: 2"
        ),
        BASE + "signoffs: []\nvars: {}\n",  # the defaults, spelled out
    ]
    for text in same_meaning:
        assert version_of(text) == version_of(BASE), text
    assert version_of(BASE.replace('"> 99%"', '"> 98%"')) != version_of(BASE)
    assert version_of(BASE.replace("steady_for: 2", "steady_for: 3")) != version_of(BASE)


@given(
    steady=st.integers(min_value=1, max_value=1000),
    other=st.integers(min_value=1, max_value=1000),
    seconds=st.integers(min_value=1, max_value=10_000),
)
def test_versions_differ_exactly_when_the_definitions_differ(
    steady: int, other: int, seconds: int
) -> None:
    one = gate_yaml(interval=f"{seconds}s", steady_for=steady)
    two = gate_yaml(interval=f"{seconds * 1000}ms", steady_for=other)
    assert (version_of(one) == version_of(two)) == (steady == other)


async def test_a_same_meaning_file_edit_keeps_the_gate_and_shows_the_new_text(
    tmp_path: Path,
) -> None:
    bench = ProbeBench()
    catalog = GateCatalog(gates_dir=tmp_path, probe_builder=bench, close_grace=0.0)
    (tmp_path / "portal.yaml").write_text(BASE)
    catalog.load_files()
    changes: list[str] = []
    catalog.subscribe(lambda name, _loaded: changes.append(name))
    before = catalog.get("portal")
    assert before is not None
    (tmp_path / "portal.yaml").write_text("# reviewed\n" + BASE)
    result = catalog.reload_files()
    after = catalog.get("portal")
    assert after is not None
    assert result.replaced == () and changes == []  # no redefinition: history is kept
    assert after.version == before.version
    assert after.text.startswith("# reviewed")
    assert after.probes["p"] is before.probes["p"]
    await catalog.aclose()


async def test_a_pinned_version_keeps_its_probes_until_released(tmp_path: Path) -> None:
    bench = ProbeBench()
    catalog = GateCatalog(gates_dir=None, probe_builder=bench, close_grace=0.0)
    old = catalog.put_api_gate("api", BASE)
    pinned = await catalog.pin("api", old.version, None)
    assert pinned.probes["p"] is old.probes["p"]  # same configuration, one instance
    assert pinned.version == old.version

    new_text = gate_yaml(interval="10s", steady_for=2, probe_value=2)
    new = catalog.put_api_gate("api", new_text)
    assert new.version != old.version
    assert new.probes["p"] is not old.probes["p"]
    old_probe = old.probes["p"]
    assert not old_probe.closed  # the check still measures with it

    again = await catalog.pin("api", old.version, None)  # a second check, from the cache
    assert again is pinned
    assert catalog.pinned_versions() == {("api", old.version): 2}
    catalog.unpin("api", old.version)
    assert not old_probe.closed
    catalog.unpin("api", old.version)
    assert catalog.pinned_versions() == {}
    await eventually(lambda: old_probe.closed)
    assert not new.probes["p"].closed
    await catalog.aclose()


async def test_an_old_version_is_rebuilt_from_its_stored_text() -> None:
    bench = ProbeBench()
    catalog = GateCatalog(gates_dir=None, probe_builder=bench, close_grace=0.0)
    old = catalog.put_api_gate("api", BASE)
    catalog.put_api_gate("api", BASE.replace('"> 99%"', '"< 50%"'))
    with pytest.raises(PinnedVersionUnavailable, match="not stored"):
        await catalog.pin("api", old.version, None)
    pinned = await catalog.pin("api", old.version, BASE)
    assert pinned.version == old.version
    assert str(pinned.gate.criteria[0].go[0]) == str(old.gate.criteria[0].go[0])
    catalog.unpin("api", old.version)
    await catalog.aclose()


@pytest.mark.parametrize(
    ("stored", "cause"),
    [
        ("criteria: 5\n", "no longer loads"),
        (BASE.replace("steady_for: 2", "steady_for: 3"), "reads differently"),
    ],
)
async def test_a_version_that_no_longer_loads_is_refused_with_its_cause(
    stored: str, cause: str
) -> None:
    catalog = GateCatalog(gates_dir=None, probe_builder=ProbeBench(), close_grace=0.0)
    old = catalog.put_api_gate("api", BASE)
    catalog.put_api_gate("api", BASE.replace('"> 99%"', '"< 50%"'))
    with pytest.raises(PinnedVersionUnavailable, match=cause) as refused:
        await catalog.pin("api", old.version, stored)
    assert old.version in str(refused.value)
    assert catalog.pinned_versions() == {}
    await catalog.aclose()


async def test_a_version_whose_probe_cannot_be_built_is_refused() -> None:
    bench = ProbeBench()
    catalog = GateCatalog(gates_dir=None, probe_builder=bench, close_grace=0.0)
    old = catalog.put_api_gate("api", BASE)
    catalog.put_api_gate("api", gate_yaml(interval="10s", probe="q"))
    bench.fail_for.add("p")
    with pytest.raises(PinnedVersionUnavailable, match="cannot be built"):
        await catalog.pin("api", old.version, BASE)
    await catalog.aclose()
