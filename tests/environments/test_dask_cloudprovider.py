"""DaskCloudProviderEnvironment: the contract, and runs on real Dask clusters it makes per run.

The clusters are distributed's own, in this process: ``LocalCluster(processes=False)`` (a
subclass that keeps what it was made with), and for adapting a ``SpecCluster`` of in-process
``Worker``s. dask-cloudprovider's ``FargateCluster`` is only inspected, and subclassed by one
that refuses to start: nothing here reaches AWS.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle
import pytest

from headwater import Flow, Parameter, task
from headwater.core.errors import ParameterError
from headwater.core.state import State
from headwater.engine.context import deployed
from headwater.engine.handlers import StateHandler
from headwater.environments import environment_class, environment_from_spec
from headwater.plugins import PluginError

from .contract import InPlaceEnvironmentContract, Recorder, add, failing_flow, small_flow

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed")

import dask  # noqa: E402
from distributed import LocalCluster, Scheduler, SpecCluster, Worker  # noqa: E402
from distributed.core import Status  # noqa: E402
from distributed.security import Security  # noqa: E402

from headwater.environments.dask_cloudprovider import DaskCloudProviderEnvironment  # noqa: E402

#: A small, quick cluster: one in-process worker with one thread, no dashboard port of its own.
SMALL: dict[str, Any] = {"n_workers": 1, "threads_per_worker": 1, "processes": False, "dashboard_address": ":0"}


class RecordedCluster(LocalCluster):
    """A LocalCluster that keeps the kwargs it was made with, its workers' addresses and its adapt calls."""

    made: ClassVar[list[RecordedCluster]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.given = dict(kwargs)
        self.adapted: list[dict[str, Any]] = []
        super().__init__(**kwargs)
        self.worker_addresses = {w.address for w in self.workers.values()}
        RecordedCluster.made.append(self)

    def adapt(self, **kwargs: Any) -> Any:
        self.adapted.append(kwargs)
        return super().adapt(**kwargs)


class InProcessCluster(SpecCluster):
    """A scheduler and workers (one thread each) as objects in this process, so adapting is quick."""

    made: ClassVar[list[InProcessCluster]] = []

    def __init__(self, n_workers: int = 0) -> None:
        worker = {"cls": Worker, "options": {"nthreads": 1, "dashboard": False}}
        scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0, "dashboard_address": ":0"}}
        super().__init__(scheduler=scheduler, worker=worker, workers={i: worker for i in range(n_workers)})
        InProcessCluster.made.append(self)


class NotACluster:
    """Callable with kwargs and closable, but no Dask cluster: it has no scheduler_address."""

    closed: ClassVar[list[NotACluster]] = []

    def __init__(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        NotACluster.closed.append(self)


@pytest.fixture(autouse=True)
def every_cluster_is_closed() -> Iterator[None]:
    RecordedCluster.made.clear()
    InProcessCluster.made.clear()
    yield
    clusters = [*RecordedCluster.made, *InProcessCluster.made]
    assert all(c.status == Status.closed for c in clusters), [c.status for c in clusters]


def make(**kwargs: Any) -> DaskCloudProviderEnvironment:
    return DaskCloudProviderEnvironment(RecordedCluster, **{**SMALL, **kwargs})


class FlowStates(StateHandler):
    """Keeps the flow states it is told of. A class of a module: dask's tokenizing pickles the run's
    context and loads it back in this process, which redefines a class local to a function (with a
    copy of its closure), so the contract's own local handler would miss the final state."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_flow_state(self, context: Any, state: State) -> None:
        self.seen.append(f"{context.flow_run_id} {state.name}")


class TestDaskCloudProviderEnvironment(InPlaceEnvironmentContract):
    """``execute`` makes a LocalCluster per run; ``run`` alone runs with the executor it is given."""

    def make_environment(self, tmp_path: Path, **kwargs: Any) -> DaskCloudProviderEnvironment:
        return DaskCloudProviderEnvironment(LocalCluster, **{**SMALL, **kwargs})

    def test_setup_and_execute_take_the_flow_alone_as_documented(self, tmp_path: Path) -> None:
        """The contract's test, with a module's handler (see :class:`FlowStates`)."""
        record = Recorder(tmp_path / "record.txt")
        env = self.make_environment(tmp_path, on_start=record.on_start, on_exit=record.on_exit)
        flow = small_flow()
        handler = FlowStates()

        with deployed(flow.name, flow_run_id="run-1", run_name="r", state_handlers=[handler]) as deployment:
            env.setup(flow)
            returned = env.execute(flow)

        assert returned is deployment.final_state and returned.is_successful()
        assert handler.seen == ["run-1 Running", "run-1 Success"]
        assert record.lines() == ["on_start", "on_exit"]


# -- runs on the cluster -----------------------------------------------------------------------------


@task
def where() -> str:
    return str(distributed.get_worker().address)


@task
def nap(i: int) -> int:
    time.sleep(0.6)
    return i


def test_the_flows_tasks_run_on_the_clusters_workers() -> None:
    with Flow("where") as flow:
        for _ in range(4):
            where()

    state = make(n_workers=2).execute(flow)

    assert state.is_successful(), state
    (cluster,) = RecordedCluster.made
    ran_on = {s.result for s in state.result.values()}
    assert ran_on and ran_on <= cluster.worker_addresses and len(cluster.worker_addresses) == 2
    assert cluster.adapted == []  # no adaptive_min_workers: the size its kwargs give


def test_the_cluster_adapts_between_min_and_max_under_load_and_back() -> None:
    counts: list[int] = []
    settled: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not InProcessCluster.made and not stop.is_set():
            time.sleep(0.01)
        while not stop.is_set():
            counts.append(len(InProcessCluster.made[-1].scheduler.workers))
            time.sleep(0.02)

    def back_to_min() -> None:  # on_exit: after the flow, before the cluster is closed
        workers = InProcessCluster.made[-1].scheduler.workers
        deadline = time.monotonic() + 15
        while len(workers) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        settled.append(len(workers))
        stop.set()

    with Flow("load") as flow:
        for i in range(6):
            nap(i)
    env = DaskCloudProviderEnvironment(InProcessCluster, adaptive_min_workers=1, adaptive_max_workers=3,
                                       on_exit=back_to_min)  # fmt: skip
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # Adaptive's pace is Dask's configuration (DASK_DISTRIBUTED__ADAPTIVE__* where the run starts)
    adaptive = {"interval": "100ms", "wait-count": 2, "target-duration": "100ms"}
    with dask.config.set({f"distributed.adaptive.{k}": v for k, v in adaptive.items()}):
        state = env.execute(flow)
    stop.set()
    watcher.join(5)

    assert state.is_successful(), state
    assert sorted(s.result for s in state.result.values()) == list(range(6))
    assert 1 < max(counts) <= 3, counts
    assert settled == [1]
    assert InProcessCluster.made[-1].status == Status.closed


def test_on_execute_gets_the_runs_parameters_and_its_changes_reach_the_provider_class() -> None:
    seen: list[dict[str, Any]] = []

    def size(parameters: dict[str, Any], kwargs: dict[str, Any]) -> None:
        seen.append(dict(parameters))
        kwargs["n_workers"] = parameters["workers"]

    with Flow("sized") as flow:
        add(Parameter("workers", default=1), Parameter("more", default=10))
    env = make(on_execute=size)

    with deployed(flow.name, flow_run_id="run-1", parameters={"workers": 2}) as deployment:
        assert env.execute(flow).is_successful()
    state = env.execute(flow, parameters={"workers": 3})

    assert seen == [{"workers": 2, "more": 10}, {"workers": 3, "more": 10}]  # given, defaults filled in
    assert [len(c.worker_addresses) for c in RecordedCluster.made] == [2, 3]
    assert [c.given["n_workers"] for c in RecordedCluster.made] == [2, 3]
    assert env.provider_kwargs["n_workers"] == 1  # its own kwargs stay as given: on_execute has a copy
    assert deployment.taken and deployment.final_state.is_successful()  # the flow runner took the run
    assert state.is_successful() and 13 in {s.result for s in state.result.values()}  # 3 workers + 10 more


def test_adapt_is_called_with_the_minimum_and_the_maximum_when_given() -> None:
    make(adaptive_min_workers=1, adaptive_max_workers=2).execute(small_flow())
    make(adaptive_min_workers=0).execute(small_flow())
    assert [c.adapted for c in RecordedCluster.made] == [[{"minimum": 1, "maximum": 2}], [{"minimum": 0}]]


def test_a_maximum_without_a_minimum_adapts_nothing_and_says_so() -> None:
    with pytest.warns(UserWarning, match="without adaptive_min_workers makes nothing adaptive"):
        env = make(adaptive_max_workers=3)
    assert env.execute(small_flow()).is_successful()
    assert RecordedCluster.made[0].adapted == []


@pytest.mark.parametrize("ending", ["success", "failing flow", "failing on_start", "unknown parameter"])
def test_the_cluster_is_closed_when_the_run_ends(ending: str, tmp_path: Path) -> None:
    record = Recorder(tmp_path / "record.txt")

    def refuse() -> None:
        raise RuntimeError("no capacity")

    env = make(on_start=refuse if ending == "failing on_start" else record.on_start, on_exit=record.on_exit)
    flow = failing_flow() if ending == "failing flow" else small_flow()

    if ending == "unknown parameter":  # the flow runner raises before any task runs
        with pytest.raises(ParameterError):
            env.execute(flow, parameters={"nope": 1})
    else:
        state = env.execute(flow)
        assert state.is_successful() is (ending == "success"), state
        assert record.lines()[-1] == "on_exit"

    (cluster,) = RecordedCluster.made
    assert cluster.status == Status.closed


def test_when_on_execute_raises_no_cluster_is_made_and_nothing_runs(tmp_path: Path) -> None:
    record = Recorder(tmp_path / "record.txt")

    def broken(parameters: dict[str, Any], kwargs: dict[str, Any]) -> None:
        raise KeyError("workers")

    env = make(on_execute=broken, on_start=record.on_start, on_exit=record.on_exit)
    with pytest.raises(KeyError, match="workers"):
        env.execute(small_flow())
    assert RecordedCluster.made == [] and record.lines() == []


# -- security ------------------------------------------------------------------------------------------


def key_material(security: Security) -> list[str]:
    return [v for k in dir(security) if k.startswith("tls") and isinstance(v := getattr(security, k), str) and v]


def test_a_security_object_reaches_the_provider_and_the_client_and_never_the_spec() -> None:
    security = Security.temporary()
    env = make(security=security)

    spec = env.serialize()
    text = json.dumps(spec)
    assert spec["security"] == "Security"
    assert "BEGIN" not in text and not any(pem in text for pem in key_material(security))
    state = env.execute(small_flow())  # the client can only connect with the cluster's TLS credentials

    assert state.is_successful(), state
    (cluster,) = RecordedCluster.made
    assert cluster.given["security"] is security and cluster.scheduler_address.startswith("tls://")
    executor = env.executor_for(cluster, cluster.given)
    assert executor.client_kwargs["security"] is security and executor.address == cluster.scheduler_address
    again = cloudpickle.loads(cloudpickle.dumps(env))  # it travels with the pickled flow, keys and all
    assert key_material(again.security) == key_material(security)


def test_security_true_uses_the_credentials_the_cluster_generates() -> None:
    env = make(security=True)
    assert env.serialize()["security"] is True

    state = env.execute(small_flow())

    assert state.is_successful(), state
    (cluster,) = RecordedCluster.made
    assert cluster.given["security"] is True and cluster.scheduler_address.startswith("tls://")
    assert env.executor_for(cluster, cluster.given).client_kwargs["security"] is cluster.security
    off = make(security=False)  # the same as None: nothing passed on
    assert off.serialize()["security"] is False and "security" not in off.cluster_kwargs({})


def test_an_environment_rebuilt_from_a_spec_without_its_security_object_refuses_to_run() -> None:
    spec = make(security=Security.temporary(), labels=["tls"]).serialize()
    again = environment_from_spec(spec)

    assert again.serialize() == spec  # still says a Security object was given
    with pytest.raises(ValueError, match="never holds its keys: run the flow from its storage"):
        again.execute(small_flow())
    assert RecordedCluster.made == []


# -- the spec ------------------------------------------------------------------------------------------


def test_the_spec_keeps_the_provider_class_as_its_import_path_and_round_trips() -> None:
    env = DaskCloudProviderEnvironment(
        LocalCluster, adaptive_min_workers=1, adaptive_max_workers=2, executor_kwargs={"debug": True},
        labels=["dask"], metadata={"image": "flows:1"}, **SMALL,
    )  # fmt: skip
    spec = env.serialize()

    assert spec == {
        "kind": "dask-cloudprovider", "labels": ["dask"], "metadata": {"image": "flows:1"}, "executor": None,
        "provider_class": "distributed.deploy.local.LocalCluster", "adaptive_min_workers": 1,
        "adaptive_max_workers": 2, "security": None, "executor_kwargs": {"debug": True}, "provider_kwargs": SMALL,
    }  # fmt: skip
    again = environment_from_spec(spec)
    assert isinstance(again, DaskCloudProviderEnvironment) and again.serialize() == spec
    assert again.provider_class == "distributed.deploy.local.LocalCluster"
    assert again.load_provider_class() is LocalCluster
    assert environment_class("dask-cloudprovider") is DaskCloudProviderEnvironment


def test_a_provider_class_given_as_a_path_is_imported_where_the_run_starts() -> None:
    path = f"{RecordedCluster.__module__}.RecordedCluster"
    env = DaskCloudProviderEnvironment(path, **SMALL)
    assert env.serialize()["provider_class"] == path

    assert env.execute(small_flow()).is_successful()
    assert len(RecordedCluster.made) == 1


def test_a_spec_whose_provider_kwargs_are_not_a_dict_is_refused() -> None:
    spec = {**make().serialize(), "provider_kwargs": ["n_workers", 1]}
    with pytest.raises(PluginError, match="provider_kwargs that are not a dict"):
        environment_from_spec(spec)
    spec = {**make().serialize(), "provider_kwargs": {"labels": ["x"]}}
    with pytest.raises(PluginError, match="doesn't fit DaskCloudProviderEnvironment"):
        environment_from_spec(spec)


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"adaptive_min_workers": 3, "adaptive_max_workers": 2}, ValueError,
         r"adaptive_max_workers \(2\) is less than adaptive_min_workers \(3\)"),
        ({"adaptive_min_workers": -1}, ValueError, "adaptive_min_workers must be a whole number ≥ 0 or None, not -1"),
        ({"adaptive_min_workers": 0, "adaptive_max_workers": 0}, ValueError,
         "adaptive_max_workers must be a whole number ≥ 1"),
        ({"adaptive_min_workers": True}, ValueError, "adaptive_min_workers must be a whole number"),
        ({"adaptive_min_workers": 1.5}, ValueError, "adaptive_min_workers must be a whole number"),
        ({"provider_class": LocalCluster.__new__(LocalCluster)}, TypeError,
         "provider_class must be a cluster class .* or its import path, not LocalCluster"),
        ({"provider_class": 42}, TypeError, "provider_class must be a cluster class"),
        ({"provider_class": "LocalCluster"}, ValueError, "'LocalCluster' is not an import path like"),
        ({"provider_class": "distributed..LocalCluster"}, ValueError, "is not an import path"),
        ({"provider_class": "distributed.LocalCluster()"}, ValueError, "is not an import path"),
        ({"loop": object()}, TypeError, "provider kwarg 'loop' is not JSON .*set values that aren't JSON per run in "
         "on_execute"),
        ({"memory_limit": float("nan")}, TypeError, "provider kwarg 'memory_limit' is not JSON"),
        ({"executor_kwargs": {"client_kwargs": {"x": object()}}}, TypeError,
         "executor_kwargs key 'client_kwargs' is not JSON"),
        ({"executor_kwargs": ["debug"]}, TypeError, "executor_kwargs must be a dict"),
        ({"executor_kwargs": {"address": "tcp://10.0.0.1:8786"}}, ValueError,
         "executor_kwargs 'address' can't be given: the run's DaskExecutor connects to the cluster this "
         "environment makes"),
        ({"aws_secret_access_key": "abc"}, ValueError,
         "provider kwarg 'aws_secret_access_key' looks like a credential.*set it per run in on_execute"),
        ({"on_execute": "size"}, TypeError, "on_execute must be a function, not str"),
        ({"security": "tls"}, TypeError, "security must be a distributed.security.Security, or True"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_at_construction(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        DaskCloudProviderEnvironment(**{"provider_class": LocalCluster, **kwargs})


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("no_such_package.clusters.Cluster", ImportError,
         r"can't import provider_class 'no_such_package.clusters.Cluster' where the run starts \(ModuleNotFoundError: "
         r"No module named 'no_such_package'\): install the package that provides it in the flow's image"),
        ("distributed.NoSuchCluster", ImportError,
         "can't import provider_class 'distributed.NoSuchCluster' .*install the package that provides it"),
        ("json.dumps", TypeError, "provider_class 'json.dumps' is function, not a cluster class"),
    ],
)  # fmt: skip
def test_a_path_that_does_not_import_is_accepted_and_named_when_the_run_starts(
    path: str, error: type[Exception], message: str, tmp_path: Path
) -> None:
    record = Recorder(tmp_path / "record.txt")
    env = DaskCloudProviderEnvironment(path, on_start=record.on_start, on_exit=record.on_exit)  # the image may have it
    with pytest.raises(error, match=message):
        env.execute(small_flow())
    assert record.lines() == []


def test_a_class_that_makes_no_dask_cluster_is_named_and_closed() -> None:
    NotACluster.closed.clear()
    env = DaskCloudProviderEnvironment(NotACluster, n_workers=1)
    with pytest.raises(TypeError, match="made NotACluster whose scheduler_address is None: it is not a Dask cluster"):
        env.execute(small_flow())
    assert len(NotACluster.closed) == 1


# -- dask-cloudprovider's FargateCluster, never started --------------------------------------------------


def fargate_cluster() -> type:
    aws = pytest.importorskip("dask_cloudprovider.aws", reason="dask-cloudprovider[aws] is not installed")
    return aws.FargateCluster  # type: ignore[no-any-return]


def test_a_fargate_cluster_is_kept_as_its_path_and_gets_security_and_skip_cleanup() -> None:
    fargate = fargate_cluster()
    env = DaskCloudProviderEnvironment(fargate, security=True, image="ghcr.io/acme/flows:1", n_workers=2,
                                       adaptive_min_workers=1, adaptive_max_workers=4)  # fmt: skip

    spec = env.serialize()
    assert spec["provider_class"] == f"{fargate.__module__}.FargateCluster"
    assert fargate.__module__ == "dask_cloudprovider.aws.ecs"
    assert spec["provider_kwargs"] == {"image": "ghcr.io/acme/flows:1", "n_workers": 2} and spec["security"] is True
    assert environment_from_spec(spec).serialize() == spec
    assert env.cluster_kwargs({}) == {"image": "ghcr.io/acme/flows:1", "n_workers": 2, "skip_cleanup": True,
                                      "security": True}  # fmt: skip
    assert DaskCloudProviderEnvironment(fargate, skip_cleanup=False).cluster_kwargs({}) == {"skip_cleanup": False}
    assert "skip_cleanup" not in make().cluster_kwargs({})  # LocalCluster takes no skip_cleanup: none is added


def test_a_fargate_cluster_is_made_with_those_kwargs(tmp_path: Path) -> None:
    given: list[dict[str, Any]] = []

    class FargateThatStaysHome(fargate_cluster()):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            given.append(kwargs)
            raise RuntimeError("not started: no AWS in these tests")

    record = Recorder(tmp_path / "record.txt")
    env = DaskCloudProviderEnvironment(FargateThatStaysHome, security=True, image="ghcr.io/acme/flows:1",
                                       n_workers=2, on_start=record.on_start)  # fmt: skip
    with pytest.raises(RuntimeError, match="no AWS"):
        env.execute(small_flow())
    assert given == [{"image": "ghcr.io/acme/flows:1", "n_workers": 2, "skip_cleanup": True, "security": True}]
    assert record.lines() == []
