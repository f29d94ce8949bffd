"""Tasks: the units of work in a flow, and Parameters, the flow's inputs.

A task is a subclass of :class:`Task` overriding ``run()``, or a function
wrapped with :func:`task`. Calling a task inside ``with Flow(...)`` does not
run it: it adds a copy of the task to the flow, with an edge from each task
passed as an argument (see ``headwater.core.flow``). Running is the engine's
job (``headwater.engine``).
"""

from __future__ import annotations

import copy
import copyreg
import datetime
import inspect
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, overload

from headwater.core import building
from headwater.core.binding import binder_for
from headwater.core.triggers import Trigger, all_successful

if TYPE_CHECKING:
    from headwater.core.flow import Flow


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


#: Marks an argument that was not given.
NOTSET: Any = _NoDefault()


def _seconds(value: float | datetime.timedelta | None, what: str, task_name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"task {task_name!r}: {what} must be seconds (a number) or a timedelta, "
            f"not {type(value).__name__}"
        )
    if value < 0:
        raise ValueError(f"task {task_name!r}: {what} must not be negative (got {value})")
    return float(value)


#: The options of Task.__init__, which ``copy(**task_args)`` checks the same way.
_OPTIONS = frozenset(
    ("name", "slug", "tags", "max_retries", "retry_delay", "timeout", "trigger",
     "skip_on_upstream_skip", "nout", "checkpoint")
)


_plain_classes: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _no_class() -> type | None:
    return None


_last_plain: Callable[[], type | None] = _no_class  # the plain class copied last (a weak reference)
#: what ``copy.copy`` uses to copy an object; a class that overrides none of them is plain.
_COPY_HOOKS = ("__reduce_ex__", "__reduce__", "__getstate__", "__new__")

_T = TypeVar("_T")


def _shallow_copy(obj: _T) -> _T:
    """``copy.copy(obj)``, done directly for a plain class (its ``__dict__`` copied into a new instance).

    ``copy.copy`` goes through ``__reduce_ex__`` and ``copyreg`` for every task call in a flow
    block; a class that customises none of that gets the same result this way, for less.
    """
    global _last_plain
    cls = type(obj)
    plain = _last_plain() is cls or _plain_classes.get(cls)
    if plain is None:
        plain = _plain_classes[cls] = (
            getattr(cls, "__copy__", None) is None
            and getattr(cls, "__setstate__", None) is None
            and all(getattr(cls, hook) is getattr(object, hook) for hook in _COPY_HOOKS)
            and not copyreg._slotnames(cls)  # type: ignore[attr-defined]
        )
    if not plain:
        return copy.copy(obj)
    _last_plain = weakref.ref(cls)
    new: _T = object.__new__(cls)
    new.__dict__.update(obj.__dict__)
    return new


class Task:
    """A unit of work. Subclass it and override :meth:`run`, or use :func:`task`.

    Args:
        name: shown in logs and the UI; defaults to the class name.
        slug: the task's stable id within a flow; assigned as ``name-N`` when the
            task is added to a flow, unless given.
        tags: free-form strings for grouping and filtering.
        max_retries: how many more times to run it after a failure.
        retry_delay: seconds (or a timedelta) to wait before each retry.
        timeout: seconds (or a timedelta) an attempt may run before it ends TimedOut.
        trigger: when it may run given its upstream states (``headwater.core.triggers``).
        skip_on_upstream_skip: end Skipped, without running, when an upstream task
            was skipped.
        nout: how many values ``run()`` returns, so ``a, b = t()`` works in a flow.
        checkpoint: keep the result for restarts (recorded; used by later releases).
    """

    def __init__(
        self,
        name: str | None = None,
        slug: str | None = None,
        tags: Iterable[str] | None = None,
        max_retries: int = 0,
        retry_delay: float | datetime.timedelta | None = None,
        timeout: float | datetime.timedelta | None = None,
        trigger: Trigger | None = None,
        skip_on_upstream_skip: bool = True,
        nout: int | None = None,
        checkpoint: bool | None = None,
    ) -> None:
        self.name = name if name is not None else type(self).__name__
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a task's name must be a non-empty string, not {self.name!r}")
        if slug is not None and (not isinstance(slug, str) or not slug):
            raise ValueError(f"task {self.name!r}: slug must be a non-empty string, not {slug!r}")
        self.slug = slug
        if isinstance(tags, str):
            raise TypeError(f"task {self.name!r}: tags must be a list of strings, not the string {tags!r}")
        self.tags = frozenset(tags or ())
        if not all(isinstance(tag, str) for tag in self.tags):
            raise TypeError(f"task {self.name!r}: tags must be strings, not {sorted(map(repr, self.tags))}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(
                f"task {self.name!r}: max_retries must be a whole number ≥ 0, not {max_retries!r}"
            )
        self.max_retries = max_retries
        self.retry_delay = _seconds(retry_delay, "retry_delay", self.name) or 0.0
        self.timeout = _seconds(timeout, "timeout", self.name)
        if self.timeout == 0:
            raise ValueError(f"task {self.name!r}: timeout must be more than 0 seconds")
        if trigger is not None and not callable(trigger):
            raise TypeError(f"task {self.name!r}: trigger must be a function of upstream states")
        self.trigger: Trigger = trigger or all_successful
        self.skip_on_upstream_skip = skip_on_upstream_skip
        if nout is not None and (isinstance(nout, bool) or not isinstance(nout, int) or nout < 1):
            raise ValueError(f"task {self.name!r}: nout must be a positive int, not {nout!r}")
        self.nout = nout
        self.checkpoint = checkpoint

    def __repr__(self) -> str:
        return f"<Task: {self.name}>"

    # -- hooks for subclasses ------------------------------------------------

    def run(self) -> Any:
        """The task's work. Override it; upstream results arrive as arguments."""
        raise NotImplementedError(
            f"task {self.name!r} has no work: subclass Task and override run(), "
            "or decorate a function with @task"
        )

    # -- building flows --------------------------------------------------------

    def copy(self, **task_args: Any) -> Task:
        """A shallow copy, with any of the constructor's options replaced."""
        new = _shallow_copy(self)
        if not task_args:
            return new
        for key in task_args:
            if not hasattr(new, key):
                raise TypeError(f"task {self.name!r} has no option {key!r} to set in task_args")
        options = {k: v for k, v in task_args.items() if k in _OPTIONS}
        if options:
            # checked and normalised (timedelta → seconds, ...) as the constructor does
            checked = Task(**{"name": self.name, **options})
            task_args = {**task_args, **{k: getattr(checked, k) for k in options}}
        for key, value in task_args.items():
            setattr(new, key, value)
        return new

    def signature(self) -> inspect.Signature:
        """The signature ``run()`` is called with."""
        return inspect.signature(self.run)

    def _signature_key(self) -> Any:
        """What :meth:`signature` depends on alone (its binder is kept by it), or None: work it out each time."""
        cls = type(self)
        if cls.signature is not Task.signature or "run" in vars(self):
            return None
        return cls

    def __call__(
        self,
        *args: Any,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Flow | None = None,
        task_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Task:
        """Add a copy of this task to the active flow, bound to these arguments.

        Arguments that are tasks become data edges; other values are constants.
        ``upstream_tasks`` adds edges that carry state only.
        """
        cls = type(self)
        if task_args or cls.copy is not Task.copy or cls.bind is not Task.bind:
            new = self.copy(**(task_args or {}))
            return new.bind(*args, upstream_tasks=upstream_tasks, flow=flow, **kwargs)
        # the same, without repacking the arguments: this runs once per task of a flow being built
        return _shallow_copy(self)._bind(args, kwargs, upstream_tasks, flow)

    def bind(
        self,
        *args: Any,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Task:
        """Bind this task (not a copy) to arguments in ``flow`` or the active flow."""
        return self._bind(args, kwargs, upstream_tasks, flow)

    def _bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], upstream_tasks: Iterable[Any] | None, flow: Flow | None
    ) -> Task:
        flow = flow if flow is not None else building.active_flow()
        if flow is None:
            raise ValueError(
                f"task {self.name!r} was called outside a `with Flow(...)` block, so there "
                "is no flow to add it to: call it inside one, or pass flow=... "
                "(to run its code directly, call .run())"
            )
        keyword_tasks = self._bind_arguments(args, kwargs)
        flow.set_dependencies(self, upstream_tasks=upstream_tasks, keyword_tasks=keyword_tasks)
        return self

    def _bind_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not args and not kwargs:
            return {}  # nothing to bind: bind_partial accepts this for any signature
        key = self._signature_key()
        if key is not None:
            binder = binder_for(key, self.signature)
            fast = binder.bind(args, kwargs)
            if fast is not None:
                return fast
            signature = binder.signature
        else:
            signature = self.signature()
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc} (signature: run{signature})") from None
        result: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            kind = bound.signature.parameters[key].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(
                        f"task {self.name!r}: positional arguments to *{key} can't be bound in "
                        "a flow; give each value a keyword"
                    )
            elif kind is inspect.Parameter.VAR_KEYWORD:
                result.update(value)
            else:
                result[key] = value
        return result

    def set_upstream(self, task: Task, key: str | None = None, flow: Flow | None = None) -> None:
        """Add an edge from ``task`` to this task in ``flow`` or the active flow."""
        self._flow_or_active(flow).add_edge(task, self, key=key)

    def set_downstream(self, task: Task, key: str | None = None, flow: Flow | None = None) -> None:
        """Add an edge from this task to ``task`` in ``flow`` or the active flow."""
        self._flow_or_active(flow).add_edge(self, task, key=key)

    def _flow_or_active(self, flow: Flow | None) -> Flow:
        flow = flow if flow is not None else building.active_flow()
        if flow is None:
            raise ValueError(f"task {self.name!r}: no flow given and no `with Flow(...)` block open")
        return flow

    def __getitem__(self, key: Any) -> Task:
        """In a flow, a task whose result is ``this_task_result[key]``."""
        return GetItem(name=f"{self.name}[{key!r}]")(self, key)

    def __iter__(self) -> Iterator[Task]:
        if self.nout is None:
            raise TypeError(
                f"task {self.name!r} can't be unpacked: its number of results is unknown; "
                "pass nout=N to the task"
            )
        return (self[i] for i in range(self.nout))


class FunctionTask(Task):
    """A task whose work is a plain function (what :func:`task` makes)."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, **task_kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"@task needs a function, not {type(fn).__name__}")
        self.fn = fn
        if name is None:
            name = getattr(fn, "__name__", type(self).__name__)
        super().__init__(name=name, **task_kwargs)
        self.__doc__ = getattr(fn, "__doc__", None)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    def _signature_key(self) -> Any:
        return self.fn if type(self).signature is FunctionTask.signature else None


class GetItem(Task):
    """Indexes an upstream result: ``task[key]`` in a flow."""

    def run(self, task_result: Any, key: Any) -> Any:  # type: ignore[override]
        return task_result[key]


F = TypeVar("F", bound=Callable[..., Any])


@overload
def task(fn: Callable[..., Any], /) -> FunctionTask: ...
@overload
def task(
    fn: None = None, /, **task_kwargs: Any
) -> Callable[[Callable[..., Any]], FunctionTask]: ...


def task(
    fn: Callable[..., Any] | None = None, /, **task_kwargs: Any
) -> FunctionTask | Callable[[Callable[..., Any]], FunctionTask]:
    """Make a task from a function: ``@task`` or ``@task(max_retries=2, ...)``.

    Keyword arguments are :class:`Task`'s options.
    """
    if fn is None:
        return lambda f: FunctionTask(f, **task_kwargs)
    return FunctionTask(fn, **task_kwargs)


class Parameter(Task):
    """An input of the flow, given when it runs: ``flow.run(parameters={...})``.

    Args:
        name: the parameter's name; also its slug, so it is unique in a flow.
        default: the value when a run does not give one.
        required: a run must give it. Defaults to True when there is no default.
    """

    def __init__(
        self,
        name: str,
        default: Any = None,
        required: bool | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a Parameter's name must be a non-empty string, not {name!r}")
        super().__init__(name=name, slug=name, tags=tags)
        self.default = default
        self.required = default is None if required is None else bool(required)
        flow = building.active_flow()
        if flow is not None:  # declared inside `with Flow(...)`: part of that flow, used or not
            flow.add_task(self)

    def __repr__(self) -> str:
        return f"<Parameter: {self.name}>"

    def copy(self, **task_args: Any) -> Task:
        if "slug" in task_args or "name" in task_args:
            raise ValueError(f"parameter {self.name!r}: a Parameter's name and slug can't change")
        return super().copy(**task_args)

    def __call__(self, *args: Any, **kwargs: Any) -> Task:
        raise TypeError(
            f"parameter {self.name!r} is not called: pass it to a task as an argument"
        )

    def run(self, value: Any = NOTSET) -> Any:
        """The value a run gave, else the default (the engine passes ``value``)."""
        if value is NOTSET:
            if self.required:
                raise ValueError(f"parameter {self.name!r} is required and no value was given")
            return self.default
        return value
