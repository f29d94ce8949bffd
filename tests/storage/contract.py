"""The contract every storage passes (STYLE.md rule 4; fsspec's ``tests/abstract`` is the model).

A backend's test module subclasses :class:`StorageContract` as ``Test<Backend>``
and overrides ``make_storage`` (and ``make_flow`` when the flow's code must live
in a file or module the storage reads). Each mode of a backend (Local's pickle
and script modes) is its own subclass. Flows are built from the tasks below,
or from :func:`flow_script`'s source for script and module backends, and every
loaded flow is run to prove it is the real thing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from headwater import Flow, Parameter, task
from headwater.core.state import Success
from headwater.storage import Storage, StorageError, storage_from_spec

FLOW_NAMES = ("etl", "etl-v2")


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def total(values: list[int], offset: int) -> int:
    return sum(values) + offset


def build_flow(name: str) -> Flow:
    """A flow summing ``range(n)`` plus 10: 16 by default, 20 with ``n=5``."""
    with Flow(name) as flow:
        total(numbers(Parameter("n", default=4)), offset=10)
    return flow


def flow_script(names: tuple[str, ...] = FLOW_NAMES) -> str:
    """Source of a flow file (or module) building the flow of :func:`build_flow` once per name."""
    lines = [
        "from headwater import Flow, Parameter, task",
        "",
        "@task",
        "def numbers(n):",
        "    return list(range(n))",
        "",
        "@task",
        "def total(values, offset):",
        "    return sum(values) + offset",
        "",
    ]
    for i, name in enumerate(names):
        lines += [
            f"with Flow({name!r}) as flow_{i}:",
            "    total(numbers(Parameter('n', default=4)), offset=10)",
            "",
        ]
    lines += ["if __name__ == '__main__':", "    raise SystemExit('the __main__ block ran')", ""]
    return "\n".join(lines)


def check_runs(flow: Flow) -> None:
    """The flow runs and its tasks give the right results, with and without a parameter."""
    state = flow.run()
    assert isinstance(state, Success), state.message
    results = {t.name: s.result for t, s in state.result.items()}
    assert results == {"n": 4, "numbers": [0, 1, 2, 3], "total": 16}
    state = flow.run(parameters={"n": 5})
    assert {t.name: s.result for t, s in state.result.items()}["total"] == 20


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: what a failed call must leave alone."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class StorageContract:
    """The tests every storage passes. Subclass it as ``Test<Backend>`` and override the hooks."""

    #: whether this backend (mode) keeps flows as source.
    stored_as_script: ClassVar[bool] = False
    #: whether a storage rebuilt from its spec can load the flows (not Memory's).
    flows_survive_spec: ClassVar[bool] = True

    # -- hooks -----------------------------------------------------------------

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        """A new, empty storage; ``kwargs`` are base arguments (labels, secrets, ...)."""
        raise NotImplementedError

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        """A flow named ``name`` (one of FLOW_NAMES) this storage can hold."""
        return build_flow(name)

    def expected_default_labels(self) -> list[str]:
        return []

    def gettable(self, storage: Storage) -> Storage:
        """The storage once what ``add_flow`` gathered can be read back (Docker: after ``build()``)."""
        return storage

    # -- the contract ------------------------------------------------------------

    def test_add_build_contains_get_round_trip(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        assert "etl" not in storage

        flow = self.make_flow(tmp_path, "etl")
        location = storage.add_flow(flow)

        assert isinstance(location, str) and location
        assert storage.flows == {"etl": location}
        built = storage.build()
        assert isinstance(built, Storage)
        assert "etl" in built
        assert "nope" not in built
        assert 3 not in built
        loaded = built.get_flow("etl")
        assert loaded.name == "etl"
        assert loaded == flow  # flows compare by structure: the one stored comes back equal
        check_runs(loaded)

    def test_get_by_location(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        location = storage.add_flow(self.make_flow(tmp_path, "etl"))

        check_runs(self.gettable(storage).get_flow(location))

    def test_two_flows_in_one_storage(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        for name in FLOW_NAMES:
            storage.add_flow(self.make_flow(tmp_path, name))

        assert sorted(storage.flows) == sorted(FLOW_NAMES)
        for name in FLOW_NAMES:
            loaded = storage.build().get_flow(name)
            assert loaded.name == name
            check_runs(loaded)

    def test_flows_that_carry_the_storage_are_added_after_it_was_used(self, tmp_path: Path) -> None:
        # What registration does: flow.storage is set before add_flow, so the storage (and any
        # client it made while adding the first flow) is pickled with the second flow.
        storage = self.make_storage(tmp_path)
        for name in FLOW_NAMES:
            flow = self.make_flow(tmp_path, name)
            flow.storage = storage
            storage.add_flow(flow)

        loaded = self.gettable(storage).get_flow(FLOW_NAMES[1])
        check_runs(loaded)

    def test_storage_rebuilt_from_its_spec_loads_the_flow(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        storage.add_flow(self.make_flow(tmp_path, "etl"))
        spec = json.loads(json.dumps(storage.build().serialize()))

        rebuilt = storage_from_spec(spec)

        if not self.flows_survive_spec:
            assert "etl" not in rebuilt
            with pytest.raises(StorageError, match="'etl' is not in"):
                rebuilt.get_flow("etl")
            return
        assert "etl" in rebuilt
        check_runs(rebuilt.get_flow("etl"))

    def test_missing_flow_is_a_clear_error(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        storage.add_flow(self.make_flow(tmp_path, "etl"))

        with pytest.raises(StorageError, match=r"'nope' is not in .*storage") as info:
            storage.get_flow("nope")
        assert type(storage).__name__ in str(info.value)

    def test_duplicate_name_is_refused_and_changes_nothing(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)
        location = storage.add_flow(self.make_flow(tmp_path, "etl"))
        before = files_under(tmp_path)

        with pytest.raises(StorageError, match=r"flow 'etl' is already in .*another name"):
            storage.add_flow(self.make_flow(tmp_path, "etl"))

        assert storage.flows == {"etl": location}
        assert files_under(tmp_path) == before
        check_runs(self.gettable(storage).get_flow("etl"))

    def test_add_flow_needs_a_flow(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path)

        with pytest.raises(TypeError, match="needs a headwater Flow, not str"):
            storage.add_flow("etl")
        assert storage.flows == {}

    @pytest.mark.parametrize("with_flow", [False, True], ids=["empty", "with-flow"])
    def test_spec_survives_json_and_rebuilds_the_same(self, tmp_path: Path, with_flow: bool) -> None:
        storage = self.make_storage(tmp_path, labels=["dev"], secrets=["TOKEN"])
        if with_flow:
            storage.add_flow(self.make_flow(tmp_path, "etl"))

        spec = storage.serialize()
        rebuilt = storage_from_spec(json.loads(json.dumps(spec)))

        assert spec["kind"] == storage.kind
        assert type(rebuilt) is type(storage)
        assert rebuilt.serialize() == spec
        assert rebuilt.labels == storage.labels
        assert rebuilt.secrets == ["TOKEN"]
        assert rebuilt.stored_as_script == storage.stored_as_script

    def test_labels_and_default_labels(self, tmp_path: Path) -> None:
        defaults = self.expected_default_labels()

        storage = self.make_storage(tmp_path, labels=["dev", "gpu", "dev"])
        bare = self.make_storage(tmp_path, labels=["dev"], add_default_labels=False)

        assert storage.labels == ["dev", "gpu", *defaults]
        assert bare.labels == ["dev"]
        assert self.make_storage(tmp_path).labels == defaults
        assert storage.serialize()["labels"] == storage.labels
        assert bare.serialize()["labels"] == ["dev"]

    def test_bad_labels_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(StorageError, match="labels must be a list of strings"):
            self.make_storage(tmp_path, labels="dev")
        with pytest.raises(StorageError, match="labels must be non-empty strings"):
            self.make_storage(tmp_path, labels=["dev", ""])

    def test_secrets_are_names_and_travel_in_the_spec(self, tmp_path: Path) -> None:
        storage = self.make_storage(tmp_path, secrets=["AWS_CREDENTIALS"])

        assert storage.secrets == ["AWS_CREDENTIALS"]
        assert storage.serialize()["secrets"] == ["AWS_CREDENTIALS"]
        assert self.make_storage(tmp_path).secrets == []

    def test_stored_as_script(self, tmp_path: Path) -> None:
        assert self.make_storage(tmp_path).stored_as_script is self.stored_as_script
