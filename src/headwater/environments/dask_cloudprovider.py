"""DaskCloudProviderEnvironment: per run, a Dask cluster from a cluster class (dask-cloudprovider's, or any).

``execute(flow)`` runs in the flow-run process (no second hop): it reads the run's parameters
from the deployment (``headwater.engine.context``), lets ``on_execute`` change the provider's
keyword arguments, makes ``provider_class(**kwargs)`` (adaptive when asked), runs the flow
through :meth:`Environment.run` with a ``DaskExecutor`` on the cluster's scheduler, and closes
the cluster when the run ends, also when it fails. The class is kept in the spec as an import
path, imported only where the run starts (never where a spec is read: the server, agents).
Users' docs: ``docs/environments.md``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.environments.base import Environment

if TYPE_CHECKING:
    from headwater.core.flow import Flow
    from headwater.core.state import State
    from headwater.executors.dask import DaskExecutor

logger = logging.getLogger("headwater.environment")

#: What the spec says for a ``distributed.security.Security`` object: that one was given, never its keys.
SECURITY_IN_SPEC = "Security"
#: DaskExecutor arguments that are this environment's to set (the cluster's address), not executor_kwargs'.
_OWN_EXECUTOR_ARGS = ("address", "cluster_class", "cluster_kwargs", "adapt_kwargs")
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_CREDENTIAL_NAME = re.compile(r"secret|password|token|credential|private_key|api_key", re.IGNORECASE)


class DaskCloudProviderEnvironment(Environment):
    """Runs the flow on a Dask cluster made for each run by ``provider_class(**kwargs)``.

    Args:
        provider_class: the cluster class (e.g. ``dask_cloudprovider.aws.FargateCluster``) or its
            import path; a path is imported only where the run starts, so it may name a class
            that exists only in the flow's image.
        adaptive_min_workers: when given, ``cluster.adapt(minimum=..., maximum=adaptive_max_workers)``
            (no maximum: unbounded); when None the cluster keeps the size its kwargs give.
        adaptive_max_workers: the most workers while adapting (at least 1 and ``adaptive_min_workers``);
            alone, without a minimum, it makes nothing adaptive (as in the documented system).
        security: a ``distributed.security.Security``, or True for the temporary credentials the
            cluster generates; passed to the provider class (``security=``) and to the executor's
            client. Its keys never enter the spec, which records only that one was given.
        executor_kwargs: more arguments of the run's ``DaskExecutor`` (``client_kwargs``, ``debug``).
        labels, on_start, on_exit, metadata: as for :class:`Environment`.
        on_execute: ``on_execute(parameters, provider_kwargs)``, called per run before the cluster is
            made, with the run's parameters (defaults filled in) and a copy of the provider's kwargs,
            which it may change in place (e.g. size the cluster by a parameter, add a credential).
        **kwargs: the provider class's arguments; JSON, since the spec holds them.

    Raises:
        TypeError: a ``provider_class`` that is neither a class nor a string, a ``security`` of
            another type, an ``on_execute`` that is not a function, or a kwarg that is not JSON.
        ValueError: a string that is not a dotted import path, worker counts out of range, a
            kwarg named like a credential, or ``executor_kwargs`` the run's DaskExecutor can't take.
    """

    kind = "dask-cloudprovider"
    dependencies: ClassVar[tuple[str, ...]] = ("distributed",)

    def __init__(
        self,
        provider_class: type | str,
        adaptive_min_workers: int | None = None,
        adaptive_max_workers: int | None = None,
        security: Any = None,
        executor_kwargs: dict[str, Any] | None = None,
        labels: Iterable[str] | None = None,
        on_execute: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(labels=labels, on_start=on_start, on_exit=on_exit, metadata=metadata)
        name = type(self).__name__
        if isinstance(provider_class, str):
            if not _IMPORT_PATH.fullmatch(provider_class):
                raise ValueError(
                    f"{name} provider_class {provider_class!r} is not an import path like "
                    "'dask_cloudprovider.aws.FargateCluster'"
                )
            self._provider: type | None = None
            self.provider_class = provider_class
        elif isinstance(provider_class, type):
            self._provider = provider_class
            self.provider_class = f"{provider_class.__module__}.{provider_class.__qualname__}"
        else:
            raise TypeError(
                f"{name} provider_class must be a cluster class (e.g. dask_cloudprovider.aws.FargateCluster) "
                f"or its import path, not {type(provider_class).__name__}"
            )
        self.adaptive_min_workers, self.adaptive_max_workers = _worker_counts(
            name, adaptive_min_workers, adaptive_max_workers
        )
        security_class = getattr(sys.modules.get("distributed.security"), "Security", None)
        if not (
            security is None or isinstance(security, bool) or (security_class and isinstance(security, security_class))
        ):
            raise TypeError(
                f"{name} security must be a distributed.security.Security, or True for the cluster's temporary "
                f"credentials, not {type(security).__name__}"
            )
        self.security = security
        if on_execute is not None and not callable(on_execute):
            raise TypeError(f"{name}: on_execute must be a function, not {type(on_execute).__name__}")
        self.on_execute = on_execute
        for key in kwargs:
            if _CREDENTIAL_NAME.search(key):
                raise ValueError(
                    f"{name} provider kwarg {key!r} looks like a credential, and the spec (JSON the server keeps "
                    "and shows) holds every kwarg: set it per run in on_execute (e.g. from os.environ), or let the "
                    "provider find its credentials where the run starts (an IAM role, the image's variables)"
                )
        self.provider_kwargs = _json_values(name, "provider kwarg", kwargs)
        self.executor_kwargs = _json_values(name, "executor_kwargs key", executor_kwargs or {})
        _check_executor_kwargs(name, self.executor_kwargs)
        #: rebuilt from a spec that recorded a Security object: the object (its keys) is not here.
        self._security_withheld = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.provider_class}, labels {sorted(self.labels)}>"

    # -- one run ----------------------------------------------------------------------------

    def execute(self, flow: Flow, **runner_kwargs: Any) -> State:
        """Make the run's cluster, run the flow on it (``on_start``/``on_exit`` around), close the cluster.

        ``runner_kwargs`` are the flow runner's (``parameters``, ...), for runs by hand; in a
        flow-run process the run's own come from the deployment. When ``on_execute`` or the
        provider class raises, nothing runs and no cluster is left.
        """
        parameters = runner_kwargs.get("parameters")
        if parameters is None:
            parameters = _deployed_parameters(flow.name)
        defaults = {p.name: p.default for p in flow.parameters() if not p.required}
        kwargs = self.cluster_kwargs({**defaults, **(parameters or {})})
        cluster = self.load_provider_class()(**kwargs)
        try:
            address = getattr(cluster, "scheduler_address", None)
            if not isinstance(address, str) or "://" not in address:
                raise TypeError(
                    f"{type(self).__name__} provider_class {self.provider_class} made {type(cluster).__name__} "
                    f"whose scheduler_address is {address!r}: it is not a Dask cluster (give a class like "
                    "distributed.LocalCluster or dask_cloudprovider.aws.FargateCluster)"
                )
            if self.adaptive_min_workers is not None:
                limits = {"maximum": self.adaptive_max_workers} if self.adaptive_max_workers is not None else {}
                cluster.adapt(minimum=self.adaptive_min_workers, **limits)
            logger.info("the run's Dask cluster (%s) is up; its scheduler is at %s, its dashboard at %s",
                        self.provider_class, address, getattr(cluster, "dashboard_link", None))  # fmt: skip
            return self.run(flow, **{**runner_kwargs, "executor": self.executor_for(cluster, kwargs)})
        finally:
            _close(cluster, self.provider_class)

    def cluster_kwargs(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """The provider class's arguments for a run with ``parameters``: the kwargs, ``skip_cleanup=True``
        when the class takes it and it isn't given, ``security`` when given, then ``on_execute``'s changes."""
        from headwater.plugins import constructor_params

        if self._security_withheld:
            raise ValueError(
                f"this {type(self).__name__} was rebuilt from its spec, which records that a Security object was "
                "given but never holds its keys: run the flow from its storage (where the environment travels "
                "whole), or give security= again"
            )
        kwargs: dict[str, Any] = json.loads(json.dumps(self.provider_kwargs))  # a deep copy for on_execute to change
        accepted, _ = constructor_params(self.load_provider_class())
        if "skip_cleanup" not in kwargs and accepted is not None and "skip_cleanup" in accepted:
            kwargs["skip_cleanup"] = True  # the documented system's default: no sweep of stale resources per run
        if self.security:
            kwargs["security"] = self.security
        if self.on_execute is not None:
            self.on_execute(dict(parameters), kwargs)
        return kwargs

    def executor_for(self, cluster: Any, cluster_kwargs: Mapping[str, Any]) -> DaskExecutor:
        """The run's DaskExecutor: ``cluster``'s scheduler, ``executor_kwargs``, and the security the
        cluster was made with (``True``: the credentials it generated, ``cluster.security``)."""
        from headwater.executors.dask import DaskExecutor

        security = cluster_kwargs.get("security")
        if security is True:
            security = getattr(cluster, "security", None)
            if not security or isinstance(security, bool):
                raise ValueError(
                    f"{type(self).__name__}: {type(cluster).__name__} was given security=True but keeps no "
                    "generated credentials (cluster.security); give a distributed.security.Security instead"
                )
        options = dict(self.executor_kwargs)
        if security:
            options["client_kwargs"] = {**(options.get("client_kwargs") or {}), "security": security}
        return DaskExecutor(address=cluster.scheduler_address, **options)

    def load_provider_class(self) -> type:
        """The provider class: as given, or imported from its path here (where the run starts).

        Raises:
            ImportError: the path does not import here; the message names it and the fix.
            TypeError: the path names something that is not a class.
        """
        if self._provider is None:
            found = _import_path(self.provider_class)
            if not isinstance(found, type):
                raise TypeError(
                    f"{type(self).__name__} provider_class {self.provider_class!r} is {type(found).__name__}, "
                    "not a cluster class"
                )
            self._provider = found
        return self._provider

    # -- the spec ---------------------------------------------------------------------------

    def spec_args(self) -> dict[str, Any]:
        """The class's import path and the kwargs; of ``security`` only True/False, or that one was given."""
        security = self.security
        if self._security_withheld or not (security is None or isinstance(security, bool)):
            security = SECURITY_IN_SPEC
        return {
            "provider_class": self.provider_class,
            "adaptive_min_workers": self.adaptive_min_workers,
            "adaptive_max_workers": self.adaptive_max_workers,
            "security": security,
            "executor_kwargs": self.executor_kwargs,
            "provider_kwargs": self.provider_kwargs,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DaskCloudProviderEnvironment:
        """Build it again from :meth:`serialize`'s output; the provider's kwargs come back as ``**kwargs``.

        A spec that records a Security object gives an environment that refuses to run (the keys
        are not in the spec): the flow-run process runs the environment that travels with the flow.
        """
        from headwater.plugins import PluginError, spec_args_problem

        kind = str(spec.get("kind", cls.__name__))
        args = cls.spec_to_args(spec)
        provider_kwargs = args.pop("provider_kwargs", None) or {}
        withheld = args.get("security") == SECURITY_IN_SPEC
        if withheld:
            args["security"] = None
        problem = spec_args_problem(cls, args, "environment", kind, also=("provider_kwargs",))
        if problem is None and not isinstance(provider_kwargs, Mapping):
            problem = f"environment spec of kind {kind!r} has provider_kwargs that are not a dict: {provider_kwargs!r}"
        if problem:
            raise PluginError(problem)
        try:
            environment = cls(**args, **provider_kwargs)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"environment spec of kind {kind!r} doesn't fit {cls.__name__}: {exc}") from exc
        environment._security_withheld = withheld
        return environment


def _worker_counts(name: str, minimum: int | None, maximum: int | None) -> tuple[int | None, int | None]:
    for arg, value, least in (("adaptive_min_workers", minimum, 0), ("adaptive_max_workers", maximum, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"{name} {arg} must be a whole number ≥ {least} or None, not {value!r}")
    if minimum is not None and maximum is not None and maximum < minimum:
        raise ValueError(
            f"{name} adaptive_max_workers ({maximum}) is less than adaptive_min_workers ({minimum}); "
            "the cluster adapts between them"
        )
    if minimum is None and maximum is not None:
        warnings.warn(
            f"{name} adaptive_max_workers without adaptive_min_workers makes nothing adaptive (the cluster keeps "
            f"the size its kwargs give); give adaptive_min_workers=0 to adapt between 0 and {maximum} workers",
            UserWarning,
            stacklevel=3,
        )
    return minimum, maximum


def _json_values(name: str, what: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as they come back from JSON (tuples as lists); a TypeError naming a key that is not JSON."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} {what.split()[0]} must be a dict, not {type(values).__name__}")
    found = {}
    for key, value in values.items():
        try:
            found[key] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} {what} {key!r} is not JSON ({exc}): the spec holds it; set values that aren't JSON per "
                "run in on_execute, which stays out of the spec"
            ) from None
    return found


def _check_executor_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    from headwater.executors.dask import DaskExecutor

    takes = [p for p in inspect.signature(DaskExecutor).parameters if p not in _OWN_EXECUTOR_ARGS]
    bad = sorted(set(kwargs) - set(takes))
    if bad:
        raise ValueError(
            f"{name} executor_kwargs {', '.join(map(repr, bad))} can't be given: the run's DaskExecutor connects "
            f"to the cluster this environment makes (executor_kwargs takes: {', '.join(takes)})"
        )


def _import_path(path: str) -> Any:
    """The object at ``path`` (``module.Class``, or ``module.Outer.Inner``), imported here."""
    parts = path.split(".")
    split = len(parts) - 1
    while True:
        module = ".".join(parts[:split])
        try:
            found: Any = importlib.import_module(module)
            for attr in parts[split:]:
                found = getattr(found, attr)
            return found
        except ModuleNotFoundError as exc:
            if exc.name == module and split > 1:  # maybe a class inside a module named by fewer parts
                split -= 1
                continue
            error: Exception = exc
        except (ImportError, AttributeError) as exc:
            error = exc
        raise ImportError(
            f"DaskCloudProviderEnvironment can't import provider_class {path!r} where the run starts "
            f"({type(error).__name__}: {error}): install the package that provides it in the flow's image"
        ) from error


def _deployed_parameters(flow_name: str) -> dict[str, Any] | None:
    """The parameters of the run this process deploys for ``flow_name``: read, never taken (the flow
    runner takes the deployment); None outside a deployment. The same look-up as ``take_deployment``."""
    from headwater.engine import context

    if context.current() is not None:  # a flow run inside a task is never the deployment
        return None
    deployment = context._deployment.get() or (context._process_deployment[-1] if context._process_deployment else None)
    if deployment is None or deployment.taken or deployment.flow_name != flow_name:
        return None
    parameters = deployment.runner_kwargs.get("parameters")
    return dict(parameters) if parameters else None


def _close(cluster: Any, provider: str) -> None:
    """Close the run's cluster; a failure to close is logged, never put in place of the run's state."""
    try:
        cluster.close()
    except Exception as exc:
        logger.warning("closing the run's Dask cluster (%s) failed: %s: %s", provider, type(exc).__name__, exc)
