"""The Environment contract: how and where a deployed flow run runs.

``execute(flow)`` runs the flow here, or starts the next hop (a Kubernetes Job,
a Fargate task) whose entrypoint calls ``load_and_run_flow()`` again, which calls
``run(flow)``: ``on_start()`` → the flow runner with this environment's executor
→ ``on_exit()`` (also when the flow or ``on_start`` fails). The flow-run process
calls ``setup(flow)``, ``execute(flow)`` and ``run(flow)`` with the flow alone, as
documented; the run's own arguments (parameters, run id, the API reporter) reach
the flow runner through ``headwater.engine.context.deployed``. ``serialize()`` is the
complete JSON spec an agent acts on without unpickling (DESIGN.md §4); callables
(``on_start``, ``on_exit``) are not in it — they travel with the flow's code.
One environment per module; ``registry.py`` finds them by kind and rebuilds them
from specs; ``tests/environments/contract.py`` is the contract every one passes.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.core.labels import check_labels

if TYPE_CHECKING:
    from headwater.core.flow import Flow
    from headwater.core.state import State
    from headwater.executors.base import Executor
    from headwater.storage.base import Storage

logger = logging.getLogger("headwater.environment")


class Environment(abc.ABC):  # noqa: B024 (every hook has a default; see the docstring)
    """Base environment: runs the flow in this process with ``executor``.

    Every hook has a default, so the base itself runs a flow in place (as the
    documented system's did) and a subclass overrides only what differs: usually
    :meth:`execute` (start the next hop) and :meth:`setup`.

    Args:
        labels: labels agents must carry to run this flow.
        on_start: called in the flow-run process before the flow runs.
        on_exit: called after the flow runs, also when it (or ``on_start``) fails.
        metadata: free-form JSON recorded in the spec (e.g. an image name).
    """

    #: spec keys that are not constructor arguments (what the spec reports, e.g. ``built``).
    spec_only: ClassVar[tuple[str, ...]] = ()
    #: modules this environment imports where the flow runs; a flow image's healthcheck
    #: imports them (and its executor's ``dependencies``).
    dependencies: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        labels: Iterable[str] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        name = type(self).__name__
        self.labels: set[str] = set(check_labels(labels, name))
        for hook, value in (("on_start", on_start), ("on_exit", on_exit)):
            if value is not None and not callable(value):
                raise TypeError(f"{name}: {hook} must be a function, not {type(value).__name__}")
        self.on_start = on_start
        self.on_exit = on_exit
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: labels {sorted(self.labels)}>"

    # -- hooks for subclasses --------------------------------------------------------

    @property
    def executor(self) -> Executor | None:
        """The executor deployed runs use (None: the settings' default)."""
        return None

    def setup(self, flow: Flow) -> None:
        """Prepare infrastructure for the flow (a cluster, a job spec). Default: nothing."""

    def execute(self, flow: Flow, **runner_kwargs: Any) -> State | None:
        """Run the flow, here (the default, through :meth:`run`) or by starting the next hop (return None).

        The flow-run process calls ``execute(flow)``; ``runner_kwargs`` are for
        callers that run a flow by hand (``parameters``, ``flow_run_id``, ...).
        """
        return self.run(flow, **runner_kwargs)

    def spec_args(self) -> dict[str, Any]:
        """This environment's own constructor arguments, as JSON (beyond labels and metadata)."""
        return {}

    # Registration's hooks (``headwater/client/registration.py``), in the order it calls them.

    def default_storage(self, **storage_kwargs: Any) -> Storage | None:
        """The storage a flow without one is registered with; None: registration's own default (Local)."""
        return None

    def storage_problem(self, storage: Storage) -> str | None:
        """Why a flow of this environment can't be registered with ``storage`` (checked before
        anything is stored), or None."""
        return None

    def adopt_storage(self, storage: Storage) -> None:
        """Take what this environment needs from ``storage`` once it is built (e.g. its image)."""

    # -- machinery -----------------------------------------------------------------------

    def run(self, flow: Flow, **runner_kwargs: Any) -> State:
        """``on_start()`` → the flow with this environment's executor → ``on_exit()``.

        In a flow-run process the run's arguments come from the deployment
        (``headwater.engine.context.deployed``); ``runner_kwargs`` (``parameters``,
        ``flow_run_id``, ``run_name``, ``state_handlers``, ``context``, ``executor``)
        add to or override them. A callback's exception is logged and fails the run
        with its message.
        """
        from headwater.core.state import Failed
        from headwater.engine.flow_runner import run_flow

        state: State
        try:
            self._call("on_start")
        except Exception as exc:
            state = Failed(f"on_start failed: {type(exc).__name__}: {exc}", exc)
            self._exit_after(state)
            return state
        try:
            state = run_flow(flow, executor=runner_kwargs.pop("executor", None) or self.executor, **runner_kwargs)
        except Exception:
            try:
                self._call("on_exit")  # it runs, and the flow runner's error is the one raised
            except Exception:
                logger.warning("on_exit of %s failed after the flow runner raised", type(self).__name__)
            raise
        return self._exit_after(state)

    def _exit_after(self, state: State) -> State:
        from headwater.core.state import Failed

        try:
            self._call("on_exit")
        except Exception as exc:
            message = f"on_exit failed: {type(exc).__name__}: {exc}"
            if state.is_successful():
                return Failed(message, state.result)
            state.message = f"{state.message}; {message}"
        return state

    def _call(self, hook: str) -> None:
        callback = getattr(self, hook)
        if callback is None:
            return
        try:
            callback()
        except Exception:
            logger.exception("%s callback %r of %s raised", hook, callback, type(self).__name__)
            raise

    def serialize(self) -> dict[str, Any]:
        """The complete JSON spec: kind, labels, metadata, executor, and the environment's own args.

        The kind is the registered one, or the class's import path for a class of
        the user's own (``registry.py``); :meth:`from_spec` builds it again.
        """
        from headwater.environments.registry import registry

        executor = self.executor
        return {
            "kind": registry.kind_of(type(self)),
            "labels": sorted(self.labels),
            "metadata": self.metadata,
            "executor": executor.serialize() if executor is not None else None,
            **self.spec_args(),
        }

    @classmethod
    def spec_to_args(cls, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments in a spec: its keys but ``kind`` and :attr:`spec_only`, the
        executor's spec built into an executor when the constructor takes one (else left out)."""
        from headwater.plugins import constructor_params

        args = {k: v for k, v in spec.items() if k != "kind" and k not in cls.spec_only}
        executor = args.pop("executor", None)
        accepted, _ = constructor_params(cls)
        if executor is not None and (accepted is None or "executor" in accepted):
            from headwater.executors.registry import executor_from_spec

            args["executor"] = executor_from_spec(executor)
        return args

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Environment:
        """Build an environment of this class from :meth:`serialize`'s output (no callables, no flow).

        Raises:
            PluginError: the spec has keys the constructor doesn't take, lacks required
                ones, or its values don't fit; the message names them.
        """
        from headwater.plugins import build_from_spec

        return build_from_spec(cls, cls.spec_to_args(spec), "environment", str(spec.get("kind", cls.__name__)))
