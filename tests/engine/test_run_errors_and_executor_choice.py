"""What flow.run() refuses before any task runs, and which executor it picks."""

from __future__ import annotations

import threading

import pytest

from headwater import Flow, Parameter, task
from headwater.config import ConfigError
from headwater.core import Edge, FlowValidationError
from headwater.core.errors import ParameterError
from headwater.engine import StateHandler
from headwater.executors import LocalDaskExecutor, LocalExecutor


class Recorder(StateHandler):
    def __init__(self):
        self.events = []

    def on_flow_state(self, context, state):
        self.events.append(("flow", state.name))

    def on_task_state(self, context, task, state):
        self.events.append((task.slug, state.name))


def flow_that_records(ran):
    @task
    def record(x=None):
        ran.append(threading.get_ident())
        return x

    with Flow("record") as flow:
        record(Parameter("x"))
        record(Parameter("y", default=2))
    return flow


# -- refused before anything runs ------------------------------------------------------


def test_missing_required_parameter():
    ran, recorder = [], Recorder()
    flow = flow_that_records(ran)

    with pytest.raises(ParameterError, match=r"needs parameter\(s\) 'x'") as info:
        flow.run(executor=LocalExecutor(), state_handlers=[recorder])

    assert "'record'" in str(info.value)
    assert ran == []
    assert recorder.events == []


def test_unknown_parameter_names_the_known_ones():
    ran = []
    flow = flow_that_records(ran)

    with pytest.raises(ParameterError, match=r"no parameter\(s\) 'z'.*parameters are: x, y"):
        flow.run(parameters={"x": 1, "z": 3}, executor=LocalExecutor())

    assert ran == []


def test_parameter_errors_are_value_errors():
    assert issubclass(ParameterError, ValueError)
    assert issubclass(FlowValidationError, ValueError)


def test_unknown_parameter_on_a_flow_without_parameters():
    with pytest.raises(ParameterError, match="parameters are: none"):
        Flow("empty").run(parameters={"x": 1}, executor=LocalExecutor())


def test_invalid_flow_is_refused_before_any_task_runs():
    ran = []

    @task
    def record():
        ran.append(1)

    with Flow("cyclic") as flow:
        a = record()
        b = record()
        c = record(upstream_tasks=[a, b])
    flow.add_edge(c, b)

    cycle = r"cycle: (record-2 → record-3 → record-2|record-3 → record-2 → record-3)"
    with pytest.raises(FlowValidationError, match=cycle):
        flow.run(executor=LocalExecutor())
    assert ran == []


def test_duplicate_slugs_are_refused_before_any_task_runs():
    ran = []

    @task
    def record():
        ran.append(1)

    with Flow("dupes") as flow:
        a = record()
        b = record(upstream_tasks=[a])
    b.slug = a.slug

    with pytest.raises(FlowValidationError, match="share the slug"):
        flow.run(executor=LocalExecutor())
    assert ran == []


@pytest.mark.parametrize("executor", ["headwater.executors.LocalExecutor", LocalExecutor, object(), 1])
def test_an_executor_that_is_not_an_executor_is_a_type_error(executor):
    ran = []
    flow = flow_that_records(ran)

    with pytest.raises(TypeError, match="executor must be a headwater Executor"):
        flow.run(parameters={"x": 1}, executor=executor)
    assert ran == []


def test_a_bad_flow_executor_is_a_type_error_too():
    ran = []
    flow = flow_that_records(ran)
    flow.executor = "LocalExecutor"

    with pytest.raises(TypeError, match="not str"):
        flow.run(parameters={"x": 1})
    assert ran == []


def test_edges_to_unknown_tasks_never_make_a_flow():
    @task
    def record():
        return 1

    a, b = record.copy(), record.copy()
    with pytest.raises(FlowValidationError):
        Flow("f", tasks=[a], edges=[Edge(a, b)])


# -- which executor ---------------------------------------------------------------------


def test_flow_executor_is_used_when_none_is_passed():
    ran = []
    flow = flow_that_records(ran)
    flow.executor = LocalDaskExecutor("threads", num_workers=2)

    assert flow.run(parameters={"x": 1}).is_successful()

    assert len(ran) == 2
    assert threading.get_ident() not in ran  # ran in Dask's worker threads


def test_passed_executor_wins_over_flow_executor():
    ran = []
    flow = flow_that_records(ran)
    flow.executor = LocalDaskExecutor("threads")

    flow.run(parameters={"x": 1}, executor=LocalExecutor())

    assert ran == [threading.get_ident()] * 2


def test_flow_executor_given_to_the_constructor():
    ran = []

    @task
    def record():
        ran.append(threading.get_ident())

    with Flow("f", executor=LocalDaskExecutor("threads")) as flow:
        record()

    flow.run()
    assert ran and ran[0] != threading.get_ident()


def test_default_executor_is_local(settings_env):
    settings_env()  # no overrides: the defaults
    ran = []

    flow_that_records(ran).run(parameters={"x": 1})

    assert ran == [threading.get_ident()] * 2


def test_default_executor_from_settings(settings_env):
    settings = settings_env(
        ENGINE__EXECUTOR__DEFAULT_CLASS="headwater.executors.LocalDaskExecutor",
        ENGINE__EXECUTOR__DEFAULT_KWARGS='{"scheduler": "threads", "num_workers": 2}',
    )
    assert settings.engine.executor.default_class == "headwater.executors.LocalDaskExecutor"
    ran = []

    assert flow_that_records(ran).run(parameters={"x": 1}).is_successful()

    assert len(ran) == 2
    assert threading.get_ident() not in ran


def test_default_executor_kwargs_from_settings_are_used(settings_env):
    settings_env(
        ENGINE__EXECUTOR__DEFAULT_CLASS="headwater.executors.LocalDaskExecutor",
        ENGINE__EXECUTOR__DEFAULT_KWARGS='{"scheduler": "synchronous"}',
    )
    ran = []

    flow_that_records(ran).run(parameters={"x": 1})

    assert ran == [threading.get_ident()] * 2  # the synchronous scheduler runs here


def test_the_default_executor_setting_may_be_a_kind(settings_env):
    settings_env(ENGINE__EXECUTOR__DEFAULT_CLASS="local-dask", ENGINE__EXECUTOR__DEFAULT_KWARGS='{"scheduler": "sync"}')
    ran = []

    assert flow_that_records(ran).run(parameters={"x": 1}).is_successful()

    assert ran == [threading.get_ident()] * 2


def test_settings_are_back_to_defaults_after_the_fixture():
    from headwater.config import get_settings

    assert get_settings().engine.executor.default_class == "headwater.executors.LocalExecutor"


def test_bad_default_executor_in_settings_is_a_clear_error_before_any_task_runs(settings_env):
    settings_env(ENGINE__EXECUTOR__DEFAULT_CLASS="headwater.executors.NoSuchExecutor")
    ran = []

    with pytest.raises(ValueError, match="NoSuchExecutor"):
        flow_that_records(ran).run(parameters={"x": 1})
    assert ran == []


def test_bad_default_executor_kwargs_in_settings(settings_env):
    settings_env(
        ENGINE__EXECUTOR__DEFAULT_CLASS="headwater.executors.LocalExecutor",
        ENGINE__EXECUTOR__DEFAULT_KWARGS='{"workers": 4}',
    )
    ran = []

    with pytest.raises(ValueError, match="kwargs"):
        flow_that_records(ran).run(parameters={"x": 1})
    assert ran == []


def test_malformed_settings_value_names_the_variable(settings_env):
    with pytest.raises((ConfigError, ValueError), match="HEADWATER__ENGINE__EXECUTOR__DEFAULT_KWARGS"):
        settings_env(ENGINE__EXECUTOR__DEFAULT_KWARGS="[1, 2]")
