"""The Executor contract: ``start``, ``submit``, ``wait``. One backend per module.

The flow runner (``headwater.engine.flow_runner``) submits every task in run
order, passing the futures of upstream tasks as arguments, then waits on all
of them. An executor resolves those futures before calling the function.
Backends are found by kind through ``registry.py`` (``{"kind": "dask", ...}``);
the contract every backend passes is ``tests/executors/contract.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar


class Executor(abc.ABC):
    """Where a flow's tasks run. A backend implements :meth:`submit` and :meth:`wait`.

    Constructor arguments are recorded by :meth:`_record`, so :meth:`serialize`
    describes the executor as JSON (``{"kind": ..., **arguments}``) and
    :meth:`from_spec` builds it again.
    """

    _spec_kwargs: dict[str, Any]
    #: whether tasks run in other processes (their results must be picklable).
    crosses_processes: bool = False
    #: modules this executor imports when it runs; a flow image's healthcheck imports them.
    dependencies: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    # -- hooks for subclasses ------------------------------------------------

    @contextmanager
    def start(self) -> Iterator[None]:
        """Set up what the executor needs for one flow run and tear it down after. Default: nothing."""
        yield

    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        """Schedule ``fn(*args, **kwargs)``; futures in ``args`` are resolved first.

        ``key`` names the call for the executor's own dashboards and logs.
        Returns a future (or, for in-process executors, the result itself).
        Submitted work runs once, however often :meth:`wait` is called.
        """

    @abc.abstractmethod
    def wait(self, futures: Any) -> Any:
        """The results of ``futures``, in the same shape and type.

        ``futures`` is any structure: one future, a value that is no future
        (returned unchanged), or lists, tuples, dicts and sets of them, nested.
        """

    # -- machinery -------------------------------------------------------------

    def _record(self, **kwargs: Any) -> None:
        """Remember the constructor arguments that :meth:`serialize` reports (None ones are left out)."""
        self._spec_kwargs = {k: v for k, v in kwargs.items() if v is not None}

    def serialize(self) -> dict[str, Any]:
        """The JSON spec: ``{"kind": ..., **constructor arguments}``; ``executor_from_spec`` rebuilds it."""
        from headwater.executors.registry import registry

        return {"kind": registry.kind_of(type(self)), **getattr(self, "_spec_kwargs", {})}

    def spec(self) -> dict[str, Any]:
        """The same as :meth:`serialize` (the name environments and metadata use for it)."""
        return self.serialize()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Executor:
        """Build an executor of this class from :meth:`serialize`'s output.

        Raises:
            PluginError: the spec has keys the constructor doesn't take, or the values don't fit.
        """
        from headwater.plugins import build_from_spec

        args = {k: v for k, v in spec.items() if k != "kind"}
        return build_from_spec(cls, args, "executor", str(spec.get("kind", cls.__name__)))


def map_structure(fn: Callable[[Any], Any], value: Any, is_leaf: Callable[[Any], bool]) -> Any:
    """``value`` with every leaf (``is_leaf``) replaced by ``fn(leaf)``, keeping each container's type.

    Lists, tuples (named ones too), dicts and sets are walked, nested; anything
    else that is no leaf is returned as it is.
    """
    if is_leaf(value):
        return fn(value)
    kind = type(value)
    if isinstance(value, list):
        items = [map_structure(fn, v, is_leaf) for v in value]
        return items if kind is list else kind(items)
    if isinstance(value, tuple):
        parts = [map_structure(fn, v, is_leaf) for v in value]
        if hasattr(value, "_fields"):  # a namedtuple takes its fields as arguments
            return kind(*parts)
        return tuple(parts) if kind is tuple else kind(parts)
    if isinstance(value, dict):
        mapped = {k: map_structure(fn, v, is_leaf) for k, v in value.items()}
        if kind is dict:
            return mapped
        try:
            return kind(mapped)
        except TypeError:  # e.g. a defaultdict, which wants its factory first
            copy = value.copy()
            copy.update(mapped)
            return copy
    if isinstance(value, (set, frozenset)):
        return kind(map_structure(fn, v, is_leaf) for v in value)
    return value


def leaves(value: Any, is_leaf: Callable[[Any], bool]) -> list[Any]:
    """Every leaf in ``value`` (walked as :func:`map_structure` walks it), in order."""
    found: list[Any] = []
    map_structure(lambda leaf: found.append(leaf), value, is_leaf)
    return found


def executor_from_path(path: str, kwargs: dict[str, Any] | None = None) -> Executor:
    """Build an executor from an import path (``"pkg.mod.Class"``) or a kind (``"dask"``), and kwargs.

    Raises:
        ValueError: the path does not resolve, names something that is not an
            Executor, or the kwargs don't fit (a ``PluginError``).
    """
    from headwater.executors.registry import registry
    from headwater.plugins import PluginError

    if not isinstance(path, str) or ("." not in path and path not in registry):
        raise PluginError(
            f"executor import path {path!r} is not a dotted path like 'headwater.executors.DaskExecutor' "
            f"or a kind ({', '.join(registry.known_kinds())})"
        )
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise PluginError(f"executor {path!r}: kwargs must be a dict, not {type(kwargs).__name__}")
    cls = registry.get_class(path)
    try:
        return cls(**(kwargs or {}))
    except TypeError as exc:
        raise PluginError(f"executor {path!r} does not take these kwargs {kwargs!r}: {exc}") from exc
