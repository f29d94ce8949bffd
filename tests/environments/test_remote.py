"""RemoteEnvironment: an executor by import path; tasks run on a real Dask scheduler's workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headwater import Flow, task
from headwater.environments import RemoteEnvironment, environment_class, environment_from_spec

from .contract import InPlaceEnvironmentContract


class TestRemoteEnvironment(InPlaceEnvironmentContract):
    def make_environment(self, tmp_path: Path, **kwargs: Any) -> RemoteEnvironment:
        return RemoteEnvironment("headwater.executors.LocalDaskExecutor", {"scheduler": "threads"}, **kwargs)


@task
def where() -> str:
    from distributed import get_worker

    return str(get_worker().address)


def test_tasks_run_on_the_dask_workers(dask_scheduler_address: str) -> None:
    from distributed import Client

    with Flow("remote") as flow:
        spots = [where() for _ in range(4)]
    env = RemoteEnvironment("headwater.executors.DaskExecutor", {"address": dask_scheduler_address})
    state = env.run(flow)
    assert state.is_successful()
    with Client(dask_scheduler_address) as client:
        workers = set(client.scheduler_info()["workers"])
    assert {state.result[s].result for s in spots} <= workers


def test_bad_import_paths_fail_before_any_run() -> None:
    with pytest.raises(ValueError, match="does not resolve"):
        RemoteEnvironment("headwater.executors.NoSuchExecutor")
    with pytest.raises(ValueError, match="not a concrete headwater Executor"):
        RemoteEnvironment("headwater.core.Flow")
    with pytest.raises(ValueError, match="does not take these kwargs"):
        RemoteEnvironment("headwater.executors.LocalExecutor", {"threads": 3})
    with pytest.raises(TypeError, match="import path string"):
        RemoteEnvironment(object())  # type: ignore[arg-type]


def test_spec_round_trip() -> None:
    env = RemoteEnvironment("headwater.executors.LocalDaskExecutor", {"num_workers": 2}, labels=["x"])
    again = environment_from_spec(env.serialize())
    assert isinstance(again, RemoteEnvironment)
    assert again.serialize() == env.serialize()


def test_registry_errors_name_the_kind_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown environment kind 'nope'; known kinds: .*local"):
        environment_class("nope")
    # only kinds whose modules exist are listed: a later release's kind is simply unknown
    unknown = "unknown environment kind 'ecs-service'; known kinds: dask-cloudprovider, dask-kubernetes, docker, " \
        "fargate-task, kubernetes-job, local, remote"
    with pytest.raises(ValueError, match=unknown):
        environment_class("ecs-service")
    with pytest.raises(ValueError, match="has no 'kind'"):
        environment_from_spec({"labels": []})
    with pytest.raises(ValueError, match=r"has key\(s\) 'surprise' that LocalEnvironment does not take"):
        environment_from_spec({"kind": "local", "surprise": 1})
