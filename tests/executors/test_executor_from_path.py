"""Building executors from an import path and kwargs (how flow metadata names them)."""

from __future__ import annotations

import pytest

from headwater.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor, executor_from_path


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("headwater.executors.LocalExecutor", LocalExecutor),
        ("headwater.executors.local.LocalExecutor", LocalExecutor),
        ("headwater.executors.LocalDaskExecutor", LocalDaskExecutor),
        ("headwater.executors.local_dask.LocalDaskExecutor", LocalDaskExecutor),
        ("headwater.executors.DaskExecutor", DaskExecutor),
        ("headwater.executors.dask.DaskExecutor", DaskExecutor),
    ],
)
def test_paths_resolve(path, cls):
    assert type(executor_from_path(path)) is cls
    assert type(executor_from_path(path, {})) is cls


def test_kwargs_are_passed():
    dask = executor_from_path("headwater.executors.DaskExecutor", {"address": "tcp://127.0.0.1:8786"})
    local = executor_from_path("headwater.executors.LocalDaskExecutor", {"scheduler": "processes"})

    assert dask.address == "tcp://127.0.0.1:8786"
    assert local.scheduler == "processes"


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("headwater.executors.NoSuchExecutor", "does not resolve"),
        ("headwater.executors.nosuchmodule.Executor", "does not resolve"),
        ("no_such_package_hw.Executor", "does not resolve"),
        ("LocalExecutor", "dotted path"),
        ("", "dotted path"),
        (None, "dotted path"),
        (42, "dotted path"),
        ("os.path.join", "not a concrete headwater Executor"),
        ("headwater.core.Flow", "not a concrete headwater Executor"),
        ("headwater.utilities.logging.configure_logging", "not a concrete headwater Executor"),
    ],
)
def test_bad_paths_are_clear_value_errors(path, match):
    with pytest.raises(ValueError, match=match) as info:
        executor_from_path(path)
    assert repr(path) in str(info.value)


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("headwater.executors.LocalExecutor", {"workers": 2}),
        ("headwater.executors.DaskExecutor", {"adress": "tcp://127.0.0.1:8786"}),
        ("headwater.executors.LocalDaskExecutor", {"scheduler": "threads", "n": 1}),
        ("headwater.executors.LocalExecutor", ["not", "a", "dict"]),
    ],
)
def test_bad_kwargs_are_clear_value_errors(path, kwargs):
    with pytest.raises(ValueError, match="kwargs") as info:
        executor_from_path(path, kwargs)
    assert path in str(info.value)


@pytest.mark.parametrize(
    ("path", "kwargs", "match"),
    [
        ("headwater.executors.LocalDaskExecutor", {"scheduler": "gpu"}, "scheduler"),
        ("headwater.executors.DaskExecutor", {"address": "tcp://h:1", "cluster_kwargs": {"n": 1}}, "either"),
    ],
)
def test_kwargs_the_executor_refuses_are_value_errors(path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        executor_from_path(path, kwargs)


def test_abstract_base_executor_is_refused() -> None:
    import pytest

    from headwater.executors import executor_from_path

    with pytest.raises(ValueError, match="not a concrete headwater Executor"):
        executor_from_path("headwater.executors.base.Executor")
