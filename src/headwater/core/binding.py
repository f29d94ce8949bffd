"""Binding a task call's arguments to ``run()``'s parameters, cheaply and the same way each time.

Calling a task in a flow block binds the call's arguments to the parameters of
its ``run()`` (``task.py``'s ``Task.bind``). ``inspect.signature`` and
``Signature.bind_partial`` cost about half of building a flow, repeated for
every call of the same task; a :class:`Binder` is made once per function (or
``Task`` subclass) and binds the usual calls itself: positional arguments that
fit, and keywords the function takes. Anything else — too many positional
arguments, a keyword given twice, a keyword the function does not take — goes
to ``bind_partial``, which gives the error (or, for ``*args``/``**kwargs``, the
binding) it always gave.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class Binder:
    """Binds arguments to one signature as ``bind_partial`` does, for the calls it can."""

    __slots__ = ("keyword", "order", "positional", "signature", "var_keyword")

    def __init__(self, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        self.signature = signature
        self.positional = tuple(p.name for p in params if p.kind in _POSITIONAL)
        self.keyword = frozenset(p.name for p in params if p.kind in _KEYWORD)
        self.order = tuple(p.name for p in params if p.kind not in _VARIADIC)
        self.var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The arguments by parameter name, in the order ``bind_partial`` gives them (keywords
        that ``**kwargs`` takes last); None when the call needs ``bind_partial`` itself."""
        if len(args) > len(self.positional):
            return None
        if not kwargs:
            if len(args) == 1:  # the commonest call in a flow block: t(upstream)
                return {self.positional[0]: args[0]}
            return dict(zip(self.positional, args, strict=False))  # fewer arguments than parameters
        given = dict(zip(self.positional, args, strict=False))
        extra = False
        for name in kwargs:
            if name in given:
                return None
            if name not in self.keyword:
                if not self.var_keyword:
                    return None
                extra = True
        bound = {name: given[name] if name in given else kwargs[name] for name in self.order
                 if name in given or name in kwargs}  # fmt: skip
        if extra:
            bound.update((k, v) for k, v in kwargs.items() if k not in self.keyword)
        return bound


_binders: weakref.WeakKeyDictionary[Any, Binder] = weakref.WeakKeyDictionary()


#: the binder found last, by a weak reference to its key: a flow block calls the same task many times.
_last: tuple[weakref.ref[Any], Binder] | None = None


def binder_for(key: Any, signature: Callable[[], inspect.Signature]) -> Binder:
    """The binder of ``key`` (a function, or a Task class), made from ``signature()`` the first time.

    A key that can't be kept (not hashable, no weak references) gets a new binder each time.
    """
    global _last
    last = _last
    if last is not None and last[0]() is key:
        return last[1]
    try:
        binder = _binders.get(key)
        if binder is None:
            binder = _binders[key] = Binder(signature())
        _last = (weakref.ref(key), binder)
        return binder
    except TypeError:
        return Binder(signature())
