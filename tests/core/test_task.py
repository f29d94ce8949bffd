"""Task, @task and Parameter: options, their checks, and calling tasks."""

from __future__ import annotations

import datetime

import pytest

from headwater import Flow, Parameter, Task, task
from headwater.core import FunctionTask
from headwater.core.triggers import all_successful, any_failed


class Add(Task):
    def run(self, x, y=1):
        return x + y


def test_subclass_overriding_run():
    add = Add()

    assert add.name == "Add"
    assert add.run(2, 3) == 5
    assert str(add.signature()) == "(x, y=1)"


def test_base_task_without_run_says_how_to_give_it_work():
    with pytest.raises(NotImplementedError, match="override run"):
        Task().run()


def test_task_decorator_without_arguments():
    @task
    def double(x):
        """Twice x."""
        return 2 * x

    assert isinstance(double, FunctionTask)
    assert double.name == "double"
    assert double.__doc__ == "Twice x."
    assert double.run(4) == 8
    assert double.max_retries == 0
    assert double.trigger is all_successful
    assert double.slug is None  # slugs come from a flow


def test_task_decorator_with_empty_parentheses():
    @task()
    def one():
        return 1

    assert isinstance(one, FunctionTask)
    assert one.run() == 1


def test_task_decorator_with_every_option():
    @task(
        name="Load rows",
        slug="load",
        tags=["etl", "db"],
        max_retries=3,
        retry_delay=datetime.timedelta(seconds=2),
        timeout=datetime.timedelta(minutes=1),
        trigger=any_failed,
        skip_on_upstream_skip=False,
        nout=2,
        checkpoint=True,
    )
    def load():
        return 1, 2

    assert load.name == "Load rows"
    assert load.slug == "load"
    assert load.tags == {"etl", "db"}
    assert load.max_retries == 3
    assert load.retry_delay == 2.0
    assert load.timeout == 60.0
    assert load.trigger is any_failed
    assert load.skip_on_upstream_skip is False
    assert load.nout == 2
    assert load.checkpoint is True


def test_delays_in_seconds():
    t = Add(retry_delay=1.5, timeout=3)
    assert (t.retry_delay, t.timeout) == (1.5, 3.0)
    assert Add().retry_delay == 0.0
    assert Add().timeout is None


def test_task_called_on_a_function_directly():
    def f():
        return 1

    t = task(f, max_retries=1)
    assert t.max_retries == 1
    assert t.run() == 1


@pytest.mark.parametrize("bad", [42, "not callable", ["a list"]])
def test_task_of_a_non_function(bad):
    with pytest.raises(TypeError, match="needs a function"):
        task(bad)
    with pytest.raises(TypeError, match="needs a function"):
        FunctionTask(bad)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"name": ""}, ValueError, "name must be a non-empty string"),
        ({"name": 42}, ValueError, "name must be a non-empty string"),
        ({"slug": ""}, ValueError, "slug must be a non-empty string"),
        ({"slug": 7}, ValueError, "slug must be a non-empty string"),
        ({"max_retries": -1}, ValueError, "max_retries must be a whole number"),
        ({"max_retries": 1.5}, ValueError, "max_retries must be a whole number"),
        ({"max_retries": "2"}, ValueError, "max_retries must be a whole number"),
        ({"max_retries": True}, ValueError, "max_retries must be a whole number"),
        ({"retry_delay": -1}, ValueError, "retry_delay must not be negative"),
        ({"retry_delay": datetime.timedelta(seconds=-5)}, ValueError, "retry_delay must not be negative"),
        ({"retry_delay": "5s"}, TypeError, "retry_delay must be seconds"),
        ({"retry_delay": True}, TypeError, "retry_delay must be seconds"),
        ({"timeout": 0}, ValueError, "timeout must be more than 0"),
        ({"timeout": 0.0}, ValueError, "timeout must be more than 0"),
        ({"timeout": datetime.timedelta(0)}, ValueError, "timeout must be more than 0"),
        ({"timeout": -2}, ValueError, "timeout must not be negative"),
        ({"timeout": "1m"}, TypeError, "timeout must be seconds"),
        ({"trigger": "all_successful"}, TypeError, "trigger must be a function"),
        ({"trigger": 3}, TypeError, "trigger must be a function"),
        ({"nout": 0}, ValueError, "nout must be a positive int"),
        ({"nout": -1}, ValueError, "nout must be a positive int"),
        ({"nout": 2.0}, ValueError, "nout must be a positive int"),
        ({"nout": "2"}, ValueError, "nout must be a positive int"),
        ({"nout": True}, ValueError, "nout must be a positive int"),
        ({"tags": "etl"}, TypeError, "tags must be"),
        ({"tags": ["etl", 3]}, TypeError, "tags must be"),
    ],
)
def test_bad_options_are_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        Add(**options)
    with pytest.raises(error, match=match):
        task(**options)(lambda: None)


def test_bad_option_errors_name_the_task():
    with pytest.raises(ValueError, match="'fetch'"):
        task(name="fetch", max_retries=-1)(lambda: None)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError):
        task(retries=3)(lambda: None)


def test_calling_a_task_outside_a_flow_is_a_clear_error():
    @task
    def extract():
        return 1

    with pytest.raises(ValueError, match=r"outside a `with Flow\(...\)` block") as info:
        extract()
    assert "'extract'" in str(info.value)
    with pytest.raises(ValueError, match="no flow"):
        Add().set_upstream(Add())


def test_unpacking_needs_nout():
    @task
    def pair():
        return 1, 2

    with Flow("f"), pytest.raises(TypeError, match="pass nout=N"):
        _first, _second = pair()


def test_arguments_that_do_not_fit_the_signature():
    with Flow("f"):
        with pytest.raises(TypeError, match=r"'Add'.*run\(x, y=1\)"):
            Add()(1, 2, 3)
        with pytest.raises(TypeError, match="'Add'"):
            Add()(z=1)


def test_var_positional_arguments_cannot_be_bound():
    @task
    def many(*values):
        return values

    with Flow("f"), pytest.raises(TypeError, match="give each value a keyword"):
        many(1, 2)


def test_var_keyword_arguments_become_arguments():
    @task
    def kw(**values):
        return values

    with Flow("f") as flow:
        t = kw(a=1, b=2)
    assert flow.constants[t] == {"a": 1, "b": 2}


def test_copy_replaces_options_and_refuses_unknown_ones():
    t = Add(name="a", max_retries=1)
    c = t.copy(max_retries=2)

    assert c is not t
    assert (c.name, c.max_retries, t.max_retries) == ("a", 2, 1)
    with pytest.raises(TypeError, match="no option 'retries'"):
        t.copy(retries=2)


@pytest.mark.parametrize(
    ("task_args", "error"),
    [
        ({"max_retries": -1}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"trigger": "any_failed"}, TypeError),
        ({"nout": 0}, ValueError),
        ({"name": ""}, ValueError),
    ],
)
def test_task_args_are_checked_like_constructor_options(task_args, error):
    with Flow("f"), pytest.raises(error):
        Add()(1, task_args=task_args)


def test_task_args_delays_are_normalised_to_seconds():
    with Flow("f"):
        t = Add()(1, task_args={"timeout": datetime.timedelta(seconds=3), "retry_delay": 2})
    assert t.timeout == 3.0
    assert t.retry_delay == 2.0


# -- Parameter ---------------------------------------------------------------------


def test_parameter_without_default_is_required():
    p = Parameter("x")
    assert p.required is True
    assert p.default is None
    assert p.slug == "x"
    assert repr(p) == "<Parameter: x>"


def test_parameter_with_default_is_optional():
    p = Parameter("x", default=5)
    assert p.required is False
    assert p.run() == 5
    assert p.run(7) == 7


def test_parameter_required_explicitly():
    assert Parameter("x", default=5, required=True).required is True
    optional_none = Parameter("x", default=None, required=False)
    assert optional_none.required is False
    assert optional_none.run() is None


def test_required_parameter_without_value_raises_naming_it():
    with pytest.raises(ValueError, match="parameter 'x' is required"):
        Parameter("x").run()


@pytest.mark.parametrize("name", ["", None, 3])
def test_parameter_needs_a_name(name):
    with pytest.raises(ValueError, match="Parameter's name"):
        Parameter(name)


def test_parameter_is_not_called():
    with Flow("f"), pytest.raises(TypeError, match="pass it to a task"):
        Parameter("x")()


def test_parameter_name_and_slug_cannot_change():
    p = Parameter("x")
    with pytest.raises(ValueError, match="can't change"):
        p.copy(name="y")
    with pytest.raises(ValueError, match="can't change"):
        p.copy(slug="y")
    assert p.copy(tags=["a"]).tags == {"a"}


def test_two_parameters_with_one_name_are_refused():
    with Flow("f") as flow:
        Add()(Parameter("x"))
        with pytest.raises(Exception, match="slug 'x'") as info:
            Add()(Parameter("x"))
    assert "parameter" in str(info.value)
    assert len(flow.parameters()) == 1
