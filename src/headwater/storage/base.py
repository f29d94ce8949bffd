"""The Storage contract: where a flow's code is kept between registering and running it.

A backend implements two hooks, :meth:`Storage.save_flow` and
:meth:`Storage.load_flow`; the public ``add_flow``/``get_flow``, the ``flows``
mapping, labels and ``serialize`` are machinery here, so every backend checks
names and reports errors the same way. Secret values (``credential_secrets``)
come from ``secrets.py``. Backends live one per module (``memory.py``,
``local.py``, ``module.py``, ``s3.py`` and ``gcs.py`` on the bucket-and-key base
``objects.py``, ``azure.py``, ``git.py``, ``github.py``, ``docker.py``) and are
found by kind through ``registry.py``, which also rebuilds a storage from its spec. Pickled flows are
``payload.py``'s business; flows kept as ``.py`` files are ``script.py``'s.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from headwater.core.flow import Flow
from headwater.core.labels import check_labels, check_strings
from headwater.storage.errors import StorageError


class Storage(abc.ABC):
    """Keeps flows' code by name; ``get_flow`` loads a flow back, here or in another process.

    Args:
        secrets: names of the secrets the storage needs where flows are loaded
            (never their values).
        labels: labels a flow kept here gives its runs, so only agents with them run it.
        add_default_labels: also carry the backend's default labels (Local storage
            adds the machine's hostname).
        stored_as_script: the flow is kept as its source file rather than a pickle.
    """

    #: the registry key, and ``serialize()["kind"]``.
    kind: ClassVar[str] = ""
    #: whether ``flows`` goes into the spec (Memory's flow objects can't travel).
    flows_in_spec: ClassVar[bool] = True
    #: the fix suggested when a flow is not in the storage.
    missing_hint: ClassVar[str] = "add it with storage.add_flow(flow) (flow.register() does this)"

    def __init__(
        self,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
        stored_as_script: bool = False,
    ) -> None:
        self.secrets: list[str] = check_strings(secrets, "secrets", type(self).__name__, StorageError)
        self._labels = check_labels(labels, type(self).__name__, StorageError)
        self.add_default_labels = bool(add_default_labels)
        self.stored_as_script = bool(stored_as_script)
        #: each flow's name → its location (a path, a key, a module), set by add_flow.
        self.flows: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<{self.describe()}: {len(self.flows)} flow(s)>"

    # -- hooks for subclasses ----------------------------------------------------

    @abc.abstractmethod
    def save_flow(self, flow: Flow) -> str:
        """Keep ``flow``'s code and return its location. Called once per flow name.

        On failure raise StorageError and leave nothing behind (no partial file).
        """

    @abc.abstractmethod
    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        """Load the flow kept at ``location``.

        ``flow_name`` picks it when the location may hold several flows; None
        means the location was asked for directly and should hold just one.
        """

    def build(self) -> Storage:
        """Push what ``add_flow`` gathered to where runs will read it; returns the storage."""
        return self

    def default_labels(self) -> list[str]:
        """Labels added unless ``add_default_labels=False``."""
        return []

    def locate(self, key: str) -> str | None:
        """A location for ``key`` (a name or location not in ``flows``), or None if missing.

        Returning ``key`` itself means it was a location; anything else means it
        was a flow name found at that location.
        """
        return None

    def spec_args(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this storage (JSON values, no credential).

        Labels are kept as computed here, so a storage rebuilt on another machine
        does not relabel itself with that machine's defaults.
        """
        return {"secrets": list(self.secrets), "labels": self.labels, "add_default_labels": False}

    def describe(self) -> str:
        """How errors name this storage, e.g. ``"Local storage /x/flows"``."""
        return f"{type(self).__name__} storage"

    def for_new_version(self, rebuild: bool) -> Storage:
        """A storage like this one but holding no flows, for the next version of a flow already here.

        Registration uses it when a flow is registered again from the same storage
        (a storage holds one flow per name). ``rebuild``: the copy will be built, so
        what only a build decided (an image tag) may be decided anew. Default: this
        storage rebuilt from its spec, without its flows.
        """
        from headwater.storage.registry import storage_from_spec

        return storage_from_spec({k: v for k, v in self.serialize().items() if k != "flows"})

    def credential_secrets(self) -> list[str]:
        """Names of the secrets this backend's own arguments refer to (a token, a connection string).

        The flow-run process resolves these with ``secrets`` before ``get_flow``;
        the backend reads them through ``storage/secrets.py``.
        """
        return []

    # -- machinery -----------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """The user's labels, then the default labels (unless ``add_default_labels=False``)."""
        labels = list(self._labels)
        if self.add_default_labels:
            labels += [label for label in self.default_labels() if label not in labels]
        return labels

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.flows

    def add_flow(self, flow: Flow) -> str:
        """Keep ``flow`` here under its name and return its location.

        Raises:
            StorageError: a flow of that name is already here, or it can't be kept;
                the storage is left as it was.
        """
        if not isinstance(flow, Flow):
            raise TypeError(f"add_flow needs a headwater Flow, not {type(flow).__name__}")
        if flow.name in self.flows:
            raise StorageError(
                f"flow {flow.name!r} is already in {self.describe()} (at {self.flows[flow.name]}); "
                "one storage holds one flow per name: give the flow another name, or use a new "
                "storage object for a new version"
            )
        location = self.save_flow(flow)
        self.flows[flow.name] = location
        return location

    def get_flow(self, name_or_location: str) -> Flow:
        """The flow kept here under that name (or at that location).

        Raises:
            StorageError: it is not here, or can't be read or loaded; the message says why.
        """
        key = name_or_location
        if not isinstance(key, str) or not key:
            raise StorageError(f"get_flow needs a flow name or location (a string), not {key!r}")
        name: str | None
        if key in self.flows:
            name, location = key, self.flows[key]
        else:
            names = sorted(n for n, loc in self.flows.items() if loc == key)
            if len(names) > 1:
                raise StorageError(
                    f"{key} holds several flows of {self.describe()} ({_quoted(names)}); ask for one by name"
                )
            if names:
                name, location = names[0], key
            else:
                found = self.locate(key)
                if found is None:
                    raise StorageError(
                        f"flow {key!r} is not in {self.describe()} (known: {_quoted(self.flows)}); {self.missing_hint}"
                    )
                name, location = (None if found == key else key), found
        flow = self.load_flow(location, name)
        if name is not None and flow.name != name:
            raise StorageError(
                f"{location} in {self.describe()} holds flow {flow.name!r}, not {name!r}; "
                f"was it replaced since? register flow {name!r} again"
            )
        return flow

    def serialize(self) -> dict[str, Any]:
        """A JSON-able spec, ``{"kind": ..., **constructor args, "flows": {...}}``.

        ``headwater.storage.storage_from_spec`` rebuilds the storage from it.
        It holds names of secrets, never credentials.
        """
        from headwater.storage.registry import registry

        spec: dict[str, Any] = {"kind": registry.kind_of(type(self)), **self.spec_args()}
        if self.flows_in_spec:
            spec["flows"] = dict(self.flows)
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Storage:
        """Rebuild a storage of this class from :meth:`serialize`'s output.

        Raises:
            StorageError: the spec has keys the constructor doesn't take, lacks
                required ones, or has bad values; the message names them.
        """
        from headwater.plugins import spec_args_problem

        kind = spec.get("kind", cls.kind)
        args = {k: v for k, v in spec.items() if k not in ("kind", "flows")}
        problem = spec_args_problem(cls, args, "storage", kind, also=("flows",) if cls.flows_in_spec else ())
        if problem is None and "flows" in spec and not cls.flows_in_spec:
            problem = f"storage spec of kind {kind!r} has key(s) 'flows' that {cls.__name__} does not take"
        if problem:
            raise StorageError(problem)
        flows = spec.get("flows") or {}
        if not isinstance(flows, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in flows.items()
        ):
            raise StorageError(f"storage spec of kind {kind!r}: 'flows' must map names to locations")
        try:
            storage = cls(**args)
        except TypeError as exc:
            raise StorageError(f"storage spec of kind {kind!r} doesn't fit {cls.__name__}: {exc}") from exc
        storage.flows = dict(flows)
        return storage


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names) or "none"
