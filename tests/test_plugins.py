"""The one registry shape every plugin family shares (``headwater.plugins``): storage, executors,
environments and agents.

For each family: every kind listed has a module that exists and a class that names
itself by that kind; an extra named in an entry is an extra of pyproject.toml, and
without its packages the kind fails with an error naming ``pip install
'headwater[extra]'``; an unknown kind lists the known ones; a spec with a key the
class does not take names the key; a class of the user's own is named by its import
path. The families' own behaviour is in their contract suites.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from headwater.agent.registry import registry as agents
from headwater.environments import environment_from_spec
from headwater.environments.registry import registry as environments
from headwater.executors import executor_from_spec
from headwater.executors.registry import registry as executors
from headwater.plugins import EXTRA_MODULES, PluginError, PluginNotAvailable, Registry
from headwater.storage import StorageError, StorageNotAvailable, storage_from_spec
from headwater.storage.registry import registry as storages

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

FAMILIES: dict[str, Registry[Any]] = {
    "storage": storages,
    "executor": executors,
    "environment": environments,
    "agent": agents,
}
KINDS = [(family, kind) for family, registry in FAMILIES.items() for kind in registry.known_kinds()]
#: how each family builds from a spec (agents have no spec: they are started, not stored).
FROM_SPEC: dict[str, Callable[[dict[str, Any]], Any]] = {
    "storage": storage_from_spec,
    "executor": executor_from_spec,
    "environment": environment_from_spec,
}
#: the errors each family raises (storage keeps its own, which are PluginError's siblings).
UNKNOWN: dict[str, type[Exception]] = {
    "storage": StorageError,
    "executor": PluginError,
    "environment": PluginError,
    "agent": PluginError,
}
MISSING: dict[str, type[Exception]] = {
    "storage": StorageNotAvailable,
    "executor": PluginNotAvailable,
    "environment": PluginNotAvailable,
    "agent": PluginNotAvailable,
}


@pytest.mark.parametrize(("family", "kind"), KINDS, ids=[f"{f}-{k}" for f, k in KINDS])
def test_every_listed_kind_has_a_class_that_names_itself_by_that_kind(family: str, kind: str) -> None:
    registry = FAMILIES[family]
    cls = registry.get_class(kind)
    assert issubclass(cls, registry.base)
    assert registry.kind_of(cls) == kind
    entry = registry.entry(kind)
    assert f"{cls.__module__}.{cls.__qualname__}" == entry.path


@pytest.mark.parametrize(("family", "kind"), KINDS, ids=[f"{f}-{k}" for f, k in KINDS])
def test_an_entrys_extra_is_a_real_extra_that_provides_its_packages(family: str, kind: str) -> None:
    extra = FAMILIES[family].entry(kind).extra
    if extra is None:
        return
    assert extra in EXTRAS, f"{family} kind {kind!r} names extra {extra!r}, which pyproject.toml does not have"
    assert EXTRAS[extra], f"extra {extra!r} installs nothing"
    assert extra in EXTRA_MODULES, f"headwater.plugins.EXTRA_MODULES does not say what extra {extra!r} provides"


def test_every_extra_the_registries_know_is_in_pyproject() -> None:
    assert set(EXTRA_MODULES) <= set(EXTRAS)


# Runs in a fresh interpreter where the packages of one extra can't be imported.
_WITHOUT = """
import importlib.abc, json, sys
blocked = set(json.loads(sys.argv[1]))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
import importlib
from headwater.plugins import PluginNotAvailable
family = importlib.import_module("{module}")
try:
    family.registry.get_class(sys.argv[2])
except PluginNotAvailable as exc:
    print(type(exc).__name__, exc)
else:
    print("loaded")
"""

REGISTRY_MODULES = {
    "storage": "headwater.storage.registry",
    "executor": "headwater.executors.registry",
    "environment": "headwater.environments.registry",
    "agent": "headwater.agent.registry",
}
WITH_EXTRAS = [(f, k) for f, k in KINDS if FAMILIES[f].entry(k).extra]


@pytest.mark.parametrize(("family", "kind"), WITH_EXTRAS, ids=[f"{f}-{k}" for f, k in WITH_EXTRAS])
def test_a_kind_whose_extra_is_not_installed_names_the_extra_to_install(family: str, kind: str) -> None:
    extra = FAMILIES[family].entry(kind).extra
    assert extra is not None
    blocked = sorted({module.split(".")[0] for module in EXTRA_MODULES[extra]})
    program = _WITHOUT.replace("{module}", REGISTRY_MODULES[family])

    done = subprocess.run(
        [sys.executable, "-c", program, __import__("json").dumps(blocked), kind],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    if not FAMILIES[family].entry(kind).extra_to_load:  # it loads without its extra, and says so when used
        assert done.stdout.strip() == "loaded"
        return
    assert done.stdout.startswith(MISSING[family].__name__), done.stdout
    assert f"{family} kind {kind!r}" in done.stdout
    assert f"pip install 'headwater[{extra}]'" in done.stdout


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_unknown_kind_lists_the_known_ones(family: str) -> None:
    registry = FAMILIES[family]
    with pytest.raises(UNKNOWN[family]) as info:
        registry.get_class("ftp")
    message = str(info.value)
    assert f"unknown {family} kind 'ftp'; known kinds: {', '.join(registry.known_kinds())}" in message
    assert "import path" in message  # how to name a class of your own


@pytest.mark.parametrize(
    ("family", "spec"),
    [
        ("storage", {"kind": "memory", "bucket": "x"}),
        ("executor", {"kind": "local-dask", "workers": 2}),
        ("environment", {"kind": "local", "cluster": "big"}),
    ],
)
def test_a_spec_with_a_key_its_class_does_not_take_names_the_key(family: str, spec: dict[str, Any]) -> None:
    wrong = next(key for key in spec if key != "kind")
    with pytest.raises(UNKNOWN[family], match=rf"has key\(s\) '{wrong}' that \w+ does not take \(it takes: kind, "):
        FROM_SPEC[family](spec)


@pytest.mark.parametrize("family", list(FROM_SPEC))
@pytest.mark.parametrize(
    ("spec", "message"), [([], "spec is a dict like"), ({}, "has no 'kind'"), ({"kind": 3}, "kind 3")]
)
def test_a_spec_that_is_no_spec_is_a_clear_error(family: str, spec: Any, message: str) -> None:
    with pytest.raises(UNKNOWN[family], match=message):
        FROM_SPEC[family](spec)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_import_path_names_a_class_of_the_users_own_and_must_be_one_of_the_family(family: str) -> None:
    registry = FAMILIES[family]
    own = next(iter(registry.entries().values())).path  # a class of the family, by its path
    assert registry.get_class(own).__name__ == own.rpartition(".")[2]
    with pytest.raises(UNKNOWN[family], match=rf"not a concrete headwater {registry.base.__name__} class"):
        registry.get_class("headwater.core.flow.Flow")
    with pytest.raises(UNKNOWN[family], match="does not resolve"):
        registry.get_class("headwater.core.flow.NoSuchThing")


def test_register_adds_a_kind_and_refuses_to_clobber_silently() -> None:
    registry: Registry[Any] = Registry("thing", object, {}, register_function="register_thing")
    registry.register("mine", "collections.OrderedDict", extra=None)
    assert registry.known_kinds() == ["mine"] and registry.get_class("mine").__name__ == "OrderedDict"
    with pytest.raises(PluginError, match=r"'mine' is already registered to collections\.OrderedDict"):
        registry.register("mine", "collections.Counter")
    with pytest.raises(PluginError, match="a short name without dots"):
        registry.register("my.kind", "collections.Counter")
    registry.register("mine", "collections.Counter", clobber=True)
    assert registry.get_class("mine").__name__ == "Counter"
