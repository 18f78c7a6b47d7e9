from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from app.gates.catalog import (
    GateCatalog,
    GateDirInvalid,
    GateReadOnly,
    LoadedGate,
    install_sighup_reload,
)
from gates.errors import GateFileError
from tests.app.fakes import ProbeBench, eventually, gate_yaml


@pytest.fixture
def bench() -> ProbeBench:
    return ProbeBench()


def catalog_for(gates_dir: Path | None, bench: ProbeBench, *, grace: float = 0.0) -> GateCatalog:
    return GateCatalog(gates_dir=gates_dir, probe_builder=bench, close_grace=grace)


def write(gates_dir: Path, name: str, text: str) -> Path:
    path = gates_dir / f"{name}.yaml"
    path.write_text(text)
    return path


class Changes:
    def __init__(self, catalog: GateCatalog) -> None:
        self.seen: list[tuple[str, LoadedGate | None]] = []
        catalog.subscribe(lambda name, loaded: self.seen.append((name, loaded)))

    @property
    def names(self) -> list[tuple[str, bool]]:
        return [(name, loaded is not None) for name, loaded in self.seen]


async def test_load_files_builds_every_gate_with_its_probes(
    tmp_path: Path, bench: ProbeBench
) -> None:
    path = write(tmp_path, "portal", gate_yaml())
    write(tmp_path, "billing", gate_yaml(interval="10s"))
    (tmp_path / "README.md").write_text("not a gate")
    (tmp_path / ".editor-swap.yaml").write_text(": broken")
    catalog = catalog_for(tmp_path, bench)

    catalog.load_files()

    assert [g.name for g in catalog.all()] == ["billing", "portal"]
    portal = catalog.get("portal")
    assert portal is not None
    assert portal.source == "file"
    assert portal.path == str(path)
    assert portal.text == path.read_text()
    assert len(portal.version) == 12
    assert set(portal.probes) == {"p"}
    assert portal.gate.criteria[0].name == "availability"
    await catalog.aclose()
    assert all(p.closed for p in bench.built)


async def test_an_invalid_directory_refuses_to_load_and_names_the_file(
    tmp_path: Path, bench: ProbeBench
) -> None:
    write(tmp_path, "portal", gate_yaml())
    write(tmp_path, "broken", gate_yaml().replace('go: "> 99%"', 'go: "about 99"'))
    catalog = catalog_for(tmp_path, bench)

    with pytest.raises(GateDirInvalid) as invalid:
        catalog.load_files()

    assert any("broken.yaml" in p for p in invalid.value.problems)
    assert "broken.yaml" in str(invalid.value)
    assert catalog.all() == []


async def test_a_missing_directory_is_a_problem(tmp_path: Path, bench: ProbeBench) -> None:
    with pytest.raises(GateDirInvalid, match="not a directory"):
        catalog_for(tmp_path / "nowhere", bench).load_files()


async def test_no_directory_means_api_gates_only(bench: ProbeBench) -> None:
    catalog = catalog_for(None, bench)
    catalog.load_files()
    assert catalog.reload_files().ok
    assert catalog.all() == []


async def test_reload_adds_replaces_and_removes_and_closes_old_probes(
    tmp_path: Path, bench: ProbeBench
) -> None:
    write(tmp_path, "portal", gate_yaml(probe_value=1))
    write(tmp_path, "billing", gate_yaml(probe_value=2))
    write(tmp_path, "steady", gate_yaml(probe_value=3))
    catalog = catalog_for(tmp_path, bench)
    catalog.load_files()
    old_portal = catalog.get("portal")
    old_billing = catalog.get("billing")
    steady = catalog.get("steady")
    assert old_portal and old_billing and steady
    changes = Changes(catalog)

    write(tmp_path, "portal", gate_yaml(steady_for=5, probe_value=4))
    (tmp_path / "billing.yaml").unlink()
    write(tmp_path, "search", gate_yaml(probe_value=5))
    result = catalog.reload_files()

    assert result.ok
    assert (result.added, result.replaced, result.removed) == (
        ("search",),
        ("portal",),
        ("billing",),
    )
    assert sorted(changes.names) == [("billing", False), ("portal", True), ("search", True)]
    new_portal = catalog.get("portal")
    assert new_portal is not None and new_portal.gate.steady_for == 5
    assert new_portal.version != old_portal.version
    assert catalog.get("steady") is steady  # unchanged file: same probes, no event
    await eventually(lambda: old_portal.probes["p"].closed and old_billing.probes["p"].closed)  # type: ignore[attr-defined]
    assert not new_portal.probes["p"].closed  # type: ignore[attr-defined]
    assert not steady.probes["p"].closed  # type: ignore[attr-defined]
    await catalog.aclose()


async def test_a_reload_with_one_bad_file_keeps_every_previous_gate(
    tmp_path: Path, bench: ProbeBench
) -> None:
    write(tmp_path, "portal", gate_yaml())
    write(tmp_path, "billing", gate_yaml())
    catalog = catalog_for(tmp_path, bench)
    catalog.load_files()
    before = {g.name: g for g in catalog.all()}
    changes = Changes(catalog)

    write(tmp_path, "portal", gate_yaml(steady_for=5))  # valid change, must not apply alone
    write(tmp_path, "billing", "criteria: [}")
    write(tmp_path, "extra", gate_yaml())
    result = await catalog.areload_files()

    assert not result.ok
    assert any("billing.yaml" in p for p in result.problems)
    assert {g.name: g for g in catalog.all()} == before
    assert changes.seen == []
    assert not any(p.closed for g in before.values() for p in g.probes.values())  # type: ignore[attr-defined]
    await catalog.aclose()


async def test_a_probe_that_cannot_be_built_fails_the_whole_reload(
    tmp_path: Path, bench: ProbeBench
) -> None:
    write(tmp_path, "portal", gate_yaml())
    catalog = catalog_for(tmp_path, bench)
    catalog.load_files()
    write(tmp_path, "portal", gate_yaml(steady_for=4))
    write(tmp_path, "other", gate_yaml(probe="bad"))
    bench.fail_for.add("bad")

    result = catalog.reload_files()

    assert any("other.yaml" in p and "probe 'bad'" in p for p in result.problems)
    portal = catalog.get("portal")
    assert portal is not None and portal.gate.steady_for == 3
    assert catalog.get("other") is None
    await catalog.aclose()


async def test_api_gates_are_validated_replaced_and_removed(bench: ProbeBench) -> None:
    catalog = catalog_for(None, bench)
    changes = Changes(catalog)

    first = catalog.put_api_gate("checkout", gate_yaml())
    assert first.source == "api" and first.path is None
    assert catalog.put_api_gate("checkout", gate_yaml()) is first  # same text: nothing rebuilt
    second = catalog.put_api_gate("checkout", gate_yaml(steady_for=4))
    assert catalog.get("checkout") is second
    assert changes.names == [("checkout", True), ("checkout", True)]

    with pytest.raises(GateFileError):
        catalog.put_api_gate("checkout", 'criteria: [{name: x, probe: nope, go: "> 1"}]')
    assert catalog.get("checkout") is second

    catalog.remove_api_gate("checkout")
    assert catalog.get("checkout") is None
    assert changes.names[-1] == ("checkout", False)
    with pytest.raises(KeyError):
        catalog.remove_api_gate("checkout")
    assert second.probes["p"] is first.probes["p"]  # same probe config: same client kept
    await eventually(lambda: first.probes["p"].closed)  # type: ignore[attr-defined]


async def test_an_api_gate_whose_probe_cannot_be_built_is_refused(bench: ProbeBench) -> None:
    catalog = catalog_for(None, bench)
    bench.fail_for.add("p")
    with pytest.raises(GateFileError) as refused:
        catalog.put_api_gate("checkout", gate_yaml())
    assert "probe 'p'" in str(refused.value.problems)
    assert catalog.get("checkout") is None


async def test_file_gates_are_read_only_through_the_api(tmp_path: Path, bench: ProbeBench) -> None:
    write(tmp_path, "portal", gate_yaml())
    catalog = catalog_for(tmp_path, bench)
    catalog.load_files()
    with pytest.raises(GateReadOnly, match=r"portal\.yaml"):
        catalog.put_api_gate("portal", gate_yaml(steady_for=9))
    with pytest.raises(GateReadOnly):
        catalog.remove_api_gate("portal")
    portal = catalog.get("portal")
    assert portal is not None and portal.gate.steady_for == 3
    await catalog.aclose()


async def test_replaced_probes_stay_open_during_the_grace_period(bench: ProbeBench) -> None:
    catalog = catalog_for(None, bench, grace=3600)
    old = catalog.put_api_gate("checkout", gate_yaml(probe_value=1))
    catalog.put_api_gate("checkout", gate_yaml(probe_value=2))
    await asyncio.sleep(0)
    assert not old.probes["p"].closed  # type: ignore[attr-defined]
    await catalog.aclose()  # shutting down closes them at once
    assert all(p.closed for p in bench.built)


async def test_a_failing_listener_does_not_stop_the_others(bench: ProbeBench) -> None:
    catalog = catalog_for(None, bench)

    def broken(name: str, loaded: LoadedGate | None) -> None:
        raise RuntimeError("listener bug")

    catalog.subscribe(broken)
    changes = Changes(catalog)
    catalog.put_api_gate("checkout", gate_yaml())
    assert changes.names == [("checkout", True)]


async def test_sighup_reloads_the_directory(tmp_path: Path, bench: ProbeBench) -> None:
    write(tmp_path, "portal", gate_yaml())
    catalog = catalog_for(tmp_path, bench)
    catalog.load_files()
    uninstall = install_sighup_reload(catalog, asyncio.get_running_loop())
    try:
        write(tmp_path, "search", gate_yaml())
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: catalog.get("search") is not None)
    finally:
        uninstall()
    await catalog.aclose()


async def test_gates_with_the_same_probe_share_it_until_the_last_one_goes(
    bench: ProbeBench,
) -> None:
    catalog = catalog_for(None, bench)
    a = catalog.put_api_gate("a", gate_yaml(probe_value=7))
    b = catalog.put_api_gate("b", gate_yaml(probe_value=7, steady_for=5))
    c = catalog.put_api_gate("c", gate_yaml(probe_value=8))
    shared = a.probes["p"]
    assert b.probes["p"] is shared
    assert c.probes["p"] is not shared
    assert len(bench.built) == 2

    catalog.remove_api_gate("a")
    await asyncio.sleep(0)
    assert not shared.closed  # type: ignore[attr-defined]
    catalog.put_api_gate("b", gate_yaml(probe_value=9))
    await eventually(lambda: shared.closed)  # type: ignore[attr-defined]
    assert not c.probes["p"].closed  # type: ignore[attr-defined]
    await catalog.aclose()
    assert all(p.closed for p in bench.built)
