"""One registry shape for every plugin family: storage, executors, environments, agents.

Each family keeps one :class:`Registry` beside its base class (``storage/registry.py``,
``executors/registry.py``, ``environments/registry.py``, ``agent/registry.py``): a table of
short kinds (``"s3"``, ``"local-dask"``, ``"docker"``) → the dotted path of the class and
the pyproject extra that provides what its module imports. Nothing is imported until a
kind is asked for (fsspec's ``registry.py`` is the model), so listing a cloud kind costs
nothing and ``import headwater`` never touches an SDK.

A spec is JSON ``{"kind": ..., ...}``. The kind is a registered short name, or the
import path of a class that is registered under none (a user's own subclass), so a
plugin written in a user's module round-trips through ``serialize()`` too.
The family's base class owns ``from_spec`` (which arguments a spec may hold); this
module only maps kinds to classes and says what is wrong when it can't.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


#: What each extra of pyproject.toml provides: modules whose absence says the extra is not installed.
#: A kind's entry names its extra; the registry checks these before importing the kind, since a
#: backend imports its SDK only when first used.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "dask": ("dask", "distributed"),
    "aws": ("boto3",),
    "gcp": ("google.cloud.storage",),
    "azure": ("azure.storage.blob",),
    "docker": ("docker",),
    "kubernetes": ("kubernetes",),
    "dask-kubernetes": ("kubernetes", "distributed"),
}


@functools.cache
def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (found, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


class PluginError(ValueError):
    """A plugin kind or spec that can't be used: unknown, not a class of its family, or ill-fitting."""


class PluginNotAvailable(PluginError, ImportError):
    """A known kind that can't be loaded here: its extra isn't installed (the message says which)."""


@dataclass(frozen=True)
class Entry:
    """Where a kind's class lives, and the extra (``pip install headwater[extra]``) its module needs.

    A third-party kind may give its own ``hint`` (``"pip install team-pkg"``) instead of an extra.
    ``extra_to_load=False``: the class loads (and does part of its job) without its extra, so
    the registry does not insist on it (Docker storage reads its flows inside its own image,
    where the Docker SDK is not installed; it needs the SDK only to build).
    """

    path: str
    extra: str | None = None
    hint: str | None = None
    extra_to_load: bool = True

    @property
    def install_hint(self) -> str | None:
        """What to install for this kind: the hint, or ``pip install 'headwater[extra]'``; None if nothing."""
        if self.hint:
            return self.hint
        return f"pip install 'headwater[{self.extra}]'" if self.extra else None

    @property
    def class_name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def module(self) -> str:
        return self.path.rpartition(".")[0]


class Registry(Generic[T]):
    """Kinds of one plugin family → lazily imported classes.

    Args:
        family: how messages name the family (``"storage"``, ``"executor"``).
        base: the family's base class; every class found must subclass it.
        entries: kind → :class:`Entry`.
        register_function: the public function that adds a kind (named in errors).
        error: raised for an unknown kind or a class of another family.
        not_available: raised when a known kind's module can't be imported here.
    """

    def __init__(
        self,
        family: str,
        base: type,
        entries: Mapping[str, Entry],
        register_function: str,
        error: type[Exception] = PluginError,
        not_available: type[Exception] = PluginNotAvailable,
    ) -> None:
        self.family = family
        self.base = base
        self._entries = dict(entries)
        self.register_function = register_function
        self.error = error
        self.not_available = not_available

    def __contains__(self, kind: object) -> bool:
        return isinstance(kind, str) and kind in self._entries

    def known_kinds(self) -> list[str]:
        """Every registered kind, sorted."""
        return sorted(self._entries)

    def entries(self) -> dict[str, Entry]:
        """A copy of the table (kind → entry)."""
        return dict(self._entries)

    def entry(self, kind: str) -> Entry:
        """The entry of a registered kind.

        Raises:
            error: the kind is not registered; the message lists the known kinds.
        """
        found = self._entries.get(kind) if isinstance(kind, str) else None
        if found is None:
            raise self.error(self.unknown_message(kind))
        return found

    def unknown_message(self, kind: object) -> str:
        return (
            f"unknown {self.family} kind {kind!r}; known kinds: {', '.join(self.known_kinds())} "
            f"(a class of your own is named by its import path, e.g. 'my_module.My{self.base.__name__}', "
            f"or registered with {self.register_function})"
        )

    def register(
        self, kind: str, path: str, extra: str | None = None, clobber: bool = False, hint: str | None = None
    ) -> None:
        """Register the class at ``path`` (``"pkg.module.Class"``) under ``kind``.

        ``extra`` names the headwater extra its module needs; ``hint`` says what to
        install in words of its own (for a third-party package).

        Raises:
            error: a bad kind or path, or ``kind`` taken by another path and ``clobber`` False.
        """
        if not isinstance(kind, str) or not kind.strip() or "." in kind:
            raise self.error(f"a {self.family} kind is a short name without dots, like 'mine', not {kind!r}")
        if not isinstance(path, str) or "." not in path:
            raise self.error(
                f"{self.register_function} needs a dotted import path like 'pkg.module.Class', not {path!r}"
            )
        current = self._entries.get(kind)
        if current is not None and current.path != path and not clobber:
            raise self.error(
                f"{self.family} kind {kind!r} is already registered to {current.path}; pass clobber=True to replace it"
            )
        self._entries[kind] = Entry(path, extra, hint)

    def kind_of(self, cls: type) -> str:
        """The kind a spec names ``cls`` by: its registered kind, else its import path."""
        path = f"{cls.__module__}.{cls.__qualname__}"
        for kind, found in self._entries.items():
            if found.path == path:
                return kind
        return path

    def kind_of_class_name(self, name: str) -> str | None:
        """The kind whose class is called ``name`` (``"S3"`` → ``"s3"``), if any."""
        return next((kind for kind, found in self._entries.items() if found.class_name == name), None)

    def get_class(self, kind: str) -> type[T]:
        """Import and return the class of ``kind`` (a registered kind, or an import path).

        Raises:
            error: an unknown kind, or a path naming something that is not a class of this family.
            not_available: the kind's module, or the packages of its extra, can't be imported here.
        """
        if isinstance(kind, str) and kind not in self._entries and "." in kind:
            return self._check(kind, self._import(kind, None, kind), kind)
        found = self.entry(kind)
        wanted = EXTRA_MODULES.get(found.extra or "", ()) if found.extra_to_load else ()
        missing = [m for m in wanted if not installed(m)]
        if missing:
            raise self.not_available(
                f"{self.family} kind {kind!r} ({found.class_name}) needs the {found.extra!r} extra, which is not "
                f"installed here (no module {missing[0]}): {found.install_hint}"
            )
        return self._check(kind, self._import(found.path, found, kind), found.path)

    def _import(self, path: str, found: Entry | None, kind: str) -> Any:
        module_name, _, attr = path.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.not_available(self._not_available_message(kind, module_name, found, exc)) from exc
        try:
            return getattr(module, attr)
        except AttributeError:
            raise self.error(
                f"{self.family} import path {kind!r} does not resolve: "
                f"module {module_name!r} has no attribute {attr!r}"
            ) from None

    def _not_available_message(self, kind: str, module_name: str, found: Entry | None, exc: ImportError) -> str:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if found is None:
            return (
                f"{self.family} import path {kind!r} does not resolve: {exc}; is its module installed "
                "and importable where this runs?"
            )
        what = f"{self.family} kind {kind!r} ({found.class_name})"
        hint = found.install_hint
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            later = f" (when it is: {hint})" if hint else ""
            return f"{what} is not available in this release of headwater: there is no module {module_name}{later}"
        fix = f"; install them with `{hint}`" if hint else ""
        return f"{what} needs packages that are not installed here (importing {module_name} failed: {exc}){fix}"

    def _check(self, kind: str, cls: Any, path: str) -> type[T]:
        if not (isinstance(cls, type) and issubclass(cls, self.base)) or inspect.isabstract(cls):
            raise self.error(
                f"{self.family} kind {kind!r} points to {path}, which is not a concrete headwater "
                f"{self.base.__name__} class"
            )
        return cast("type[T]", cls)

    def spec_kind(self, spec: object) -> str:
        """The ``kind`` of a spec, checked to be a dict holding one.

        Raises:
            error: not a dict, or no string ``kind`` in it.
        """
        if not isinstance(spec, Mapping):
            raise self.error(
                f"a {self.family} spec is a dict like {{'kind': {self.known_kinds()[0]!r}, ...}}, "
                f"not {type(spec).__name__}"
            )
        if "kind" not in spec:
            raise self.error(
                f"{self.family} spec {dict(spec)!r} has no 'kind'; known kinds: {', '.join(self.known_kinds())}"
            )
        kind = spec["kind"]
        if not isinstance(kind, str) or not kind:
            raise self.error(self.unknown_message(kind))
        return kind


def constructor_params(cls: type) -> tuple[set[str] | None, set[str]]:
    """Keyword names ``cls(...)`` takes and those it requires, following ``**kwargs`` up the MRO.

    The first set is None when no class in the chain names its keywords (anything goes).
    """
    accepted: set[str] = set()
    required: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return None, required
        passes_on = False
        for param in list(inspect.signature(init).parameters.values())[1:]:
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                passes_on = True
            elif param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                accepted.add(param.name)
                if param.default is inspect.Parameter.empty:
                    required.add(param.name)
        if not passes_on:
            break
    return accepted, required


def spec_args_problem(cls: type, args: Iterable[str], family: str, kind: str, also: Iterable[str] = ()) -> str | None:
    """What is wrong with building ``cls`` from spec keys ``args``, or None.

    ``also`` names keys the spec may hold beyond the constructor's (e.g. ``flows``).
    """
    given = set(args)
    accepted, required = constructor_params(cls)
    extra = sorted(set(also))
    bad = sorted(given - accepted - set(extra)) if accepted is not None else []
    if bad:
        takes = ", ".join(sorted({*(accepted or ()), *extra}))
        return (
            f"{family} spec of kind {kind!r} has key(s) {', '.join(map(repr, bad))} that {cls.__name__} "
            f"does not take (it takes: kind, {takes})"
        )
    missing = sorted(required - given)
    if missing:
        lacking = ", ".join(map(repr, missing))
        return f"{family} spec of kind {kind!r} lacks required key(s) {lacking} of {cls.__name__}"
    return None


def build_from_spec(cls: type[T], args: dict[str, Any], family: str, kind: str) -> T:
    """``cls(**args)`` for a spec's arguments, checked first by name.

    Raises:
        PluginError: a key ``cls`` does not take, a required one missing, or a value its
            constructor refuses (``TypeError``/``ValueError``); the message names the kind.
    """
    problem = spec_args_problem(cls, args, family, kind)
    if problem:
        raise PluginError(problem)
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{family} spec of kind {kind!r} doesn't fit {cls.__name__}: {exc}") from exc
