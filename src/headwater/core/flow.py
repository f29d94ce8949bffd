"""The Flow: a graph of tasks and edges, and its checks. No I/O here.

Running (``headwater.engine``), serializing (``headwater.serialization``) and
drawing (``headwater.visualize``) are functions in their own modules that take
a flow; the methods of the same names below forward to them, importing them
only when called so ``headwater.core`` stays a pure model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from headwater.core import building
from headwater.core import collection_tasks as coll
from headwater.core.edge import Edge
from headwater.core.errors import FlowValidationError
from headwater.core.task import Parameter, Task

if TYPE_CHECKING:
    from headwater.core.state import State


def _holds_task(value: Any) -> bool:
    """Whether ``value`` is a task, or a list/tuple/set/dict holding one at any depth."""
    if isinstance(value, Task):
        return True
    if isinstance(value, (list, tuple, set)):
        return any(_holds_task(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_task(v) for v in (*value.keys(), *value.values()))
    return False


#: the edges of a task that has none: shared, and a tuple so that nothing can append to it.
_NO_EDGES: list[Edge] = cast("list[Edge]", ())


class Flow:
    """A named graph of tasks.

    Args:
        name: the flow's name; registration keeps versions of it by this name.
        tasks: tasks to add.
        edges: edges to add. When ``tasks`` is given, every edge must join tasks in it.
        storage: where the flow's code is kept (``headwater.storage``).
        environment: how and where deployed runs run (``headwater.environments``); None
            (the default) means a ``LocalEnvironment()``, chosen where a run starts.
        executor: the executor ``flow.run()`` uses when none is passed.
        schedule: when runs are created (recorded in the metadata).
    """

    def __init__(
        self,
        name: str,
        tasks: Iterable[Task] | None = None,
        edges: Iterable[Edge] | None = None,
        storage: Any = None,
        environment: Any = None,
        executor: Any = None,
        schedule: Any = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a flow's name must be a non-empty string, not {name!r}")
        self.name = name
        self.storage = storage
        #: how deployed runs run; None until set (the flow-run process then uses a LocalEnvironment).
        self.environment = environment
        self.executor = executor
        self.schedule = schedule
        self._tasks: dict[Task, None] = {}
        #: every edge, by its ends and key (tuples of tasks hash in C; an Edge's hash is Python code).
        self._edges: dict[tuple[Task, Task, str | None], Edge] = {}
        self._upstream: dict[Task, list[Edge]] = {}
        self._downstream: dict[Task, list[Edge]] = {}
        self._slugs: dict[str, Task] = {}
        self._slug_counters: dict[str, int] = {}
        self._reference_tasks: set[Task] = set()
        self._sorted: tuple[Task, ...] | None = None
        #: constant (non-task) arguments of each task, by argument name.
        self.constants: dict[Task, dict[str, Any]] = {}
        given = list(tasks) if tasks is not None else None
        for t in given or ():
            self.add_task(t)
        for edge in edges or ():
            if given is not None:
                for end in (edge.upstream_task, edge.downstream_task):
                    if end not in self._tasks:
                        raise FlowValidationError(
                            f"flow {name!r}: {edge} refers to task {end.name!r}, which is not "
                            "in tasks=[...]; add it to tasks, or leave tasks out to add "
                            "tasks from the edges"
                        )
            self.add_edge(edge.upstream_task, edge.downstream_task, key=edge.key)

    def __repr__(self) -> str:
        return f"<Flow: {self.name!r}, {len(self._tasks)} tasks>"

    def __eq__(self, other: object) -> bool:
        """Flows are equal when their structure is: name, tasks, edges and reference tasks, by task slug.

        So a flow loaded back from storage equals the flow that was stored. Each task
        is compared by slug, class and name; storage, environment and executor are not
        part of a flow's structure.
        """
        if not isinstance(other, Flow):
            return NotImplemented
        return type(self) is type(other) and self._structure() == other._structure()

    def __hash__(self) -> int:
        # consistent with __eq__ (equal flows share a name); a flow stays usable in sets and as a key
        return hash((type(self).__name__, self.name))

    def _structure(self) -> tuple[Any, ...]:
        tasks = {t.slug: (type(t).__qualname__, t.name) for t in self._tasks}
        edges = {(e.upstream_task.slug, e.downstream_task.slug, e.key) for e in self._edges.values()}
        reference = {t.slug for t in self.reference_tasks()}
        return self.name, tasks, edges, reference

    def __enter__(self) -> Flow:
        building.push(self)
        return self

    def __exit__(self, *exc: object) -> None:
        building.pop(self)

    # -- the graph -------------------------------------------------------------

    @property
    def tasks(self) -> frozenset[Task]:
        """Every task in the flow."""
        return frozenset(self._tasks)

    @property
    def edges(self) -> frozenset[Edge]:
        """Every edge in the flow."""
        return frozenset(self._edges.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    def add_task(self, task: Task) -> Task:
        """Add a task (once; adding it again does nothing). Gives it a slug if it has none."""
        if not isinstance(task, Task):
            raise TypeError(f"flow {self.name!r}: add_task needs a Task, not {type(task).__name__}")
        if task in self._tasks:
            return task
        if task.slug is None:
            task.slug = self._next_slug(task.name)
        elif task.slug in self._slugs:
            what = "parameter" if isinstance(task, Parameter) else "task"
            raise FlowValidationError(
                f"flow {self.name!r} already has a task with slug {task.slug!r}: give this "
                f"{what} another {'name' if what == 'parameter' else 'slug'} "
                "(e.g. task_args={'slug': ...})"
            )
        self._slugs[task.slug] = task
        self._tasks[task] = None
        self._upstream[task] = _NO_EDGES  # a list of its own once it has an edge (add_edge)
        self._downstream[task] = _NO_EDGES
        self._sorted = None
        return task

    def _next_slug(self, name: str) -> str:
        n = self._slug_counters.get(name, 0)
        while True:
            n += 1
            slug = f"{name}-{n}"
            if slug not in self._slugs:
                self._slug_counters[name] = n
                return slug

    def add_edge(self, upstream_task: Task, downstream_task: Task, key: str | None = None) -> Edge:
        """Add an edge (and either task, if missing). ``key`` passes data as that argument."""
        if upstream_task is downstream_task:
            raise FlowValidationError(
                f"flow {self.name!r}: task {upstream_task.name!r} can't depend on itself"
            )
        edge = Edge(upstream_task, downstream_task, key=key)
        ends = (upstream_task, downstream_task, key)
        known = self._edges.get(ends)
        if known is not None:
            return known
        into = self._upstream.get(downstream_task)
        if key is not None:
            # checked before adding either task, so a refused edge changes nothing
            for other in into or ():
                if other.key == key:
                    raise FlowValidationError(
                        f"flow {self.name!r}: task {downstream_task.name!r} already gets argument "
                        f"{key!r} from {other.upstream_task.name!r}; one argument, one upstream task"
                    )
            constants = self.constants.get(downstream_task)
            if constants and key in constants:
                raise FlowValidationError(
                    f"flow {self.name!r}: task {downstream_task.name!r} already has a constant "
                    f"for argument {key!r}"
                )
        out = self._downstream.get(upstream_task)
        if out is None:
            self.add_task(upstream_task)
            out = self._downstream[upstream_task]
        if into is None:
            self.add_task(downstream_task)
            into = self._upstream[downstream_task]
        self._edges[ends] = edge
        if into:
            into.append(edge)
        else:
            self._upstream[downstream_task] = [edge]
        if out:
            out.append(edge)
        else:
            self._downstream[upstream_task] = [edge]
        self._sorted = None
        return edge

    def set_dependencies(
        self,
        task: Task,
        upstream_tasks: Iterable[Any] | None = None,
        downstream_tasks: Iterable[Any] | None = None,
        keyword_tasks: dict[str, Any] | None = None,
    ) -> None:
        """Add ``task`` with state edges from/to the given tasks and data edges by keyword.

        A keyword value that is not a task is kept as a constant argument; a list,
        tuple, set or dict holding tasks becomes a collection task.
        """
        fresh = task not in self._tasks
        self.add_task(task)
        if fresh and not upstream_tasks and not downstream_tasks and keyword_tasks:
            # a task just called in a flow block: the usual case, once per task of a flow being built
            self._bind_new(task, keyword_tasks)
            return
        for up in upstream_tasks or ():
            self.add_edge(self._as_task(up, task, "upstream_tasks"), task)
        for down in downstream_tasks or ():
            self.add_edge(task, self._as_task(down, task, "downstream_tasks"))
        for key, value in (keyword_tasks or {}).items():
            if not isinstance(value, Task):
                value = self._collect(value)
            if isinstance(value, Task):
                self.add_edge(value, task, key=key)
            else:
                into = self._upstream[task]
                if into and any(edge.key == key for edge in into):
                    raise FlowValidationError(
                        f"flow {self.name!r}: task {task.name!r} already gets argument {key!r} "
                        "from an upstream task"
                    )
                self.constants.setdefault(task, {})[key] = value

    def _bind_new(self, task: Task, keyword_tasks: dict[str, Any]) -> None:
        """``set_dependencies`` for a task just added, with nothing but keyword arguments.

        What else ``add_edge`` checks can't fail here: the task has no edges and no constants
        yet, and each keyword comes once.
        """
        into: list[Edge] | None = None
        constants: dict[str, Any] | None = None
        for key, value in keyword_tasks.items():
            if not isinstance(value, Task):
                value = self._collect(value)
                if not isinstance(value, Task):
                    if constants is None:
                        constants = self.constants[task] = {}
                    constants[key] = value
                    continue
            if value is task:  # task.bind(x=task)
                self.add_edge(value, task, key=key)  # raises, naming it
            edge = Edge(value, task, key=key)  # checks the key before anything changes
            out = self._downstream.get(value)
            if out is None:
                self.add_task(value)
                out = self._downstream[value]
            self._edges[(value, task, key)] = edge
            if into is None:
                into = self._upstream[task] = [edge]
            else:
                into.append(edge)
            if out:
                out.append(edge)
            else:
                self._downstream[value] = [edge]
        self._sorted = None

    def _as_task(self, value: Any, task: Task, where: str) -> Task:
        value = self._collect(value)
        if not isinstance(value, Task):
            raise TypeError(
                f"flow {self.name!r}: {where} of task {task.name!r} must be tasks, "
                f"not {type(value).__name__} {value!r}"
            )
        return value

    def _collect(self, value: Any) -> Any:
        """Turn a list/tuple/set/dict holding tasks into a collection task."""
        if isinstance(value, (list, tuple, set)) and any(_holds_task(v) for v in value):
            cls = {list: coll.List, tuple: coll.Tuple, set: coll.Set}[
                next(c for c in (list, tuple, set) if isinstance(value, c))
            ]
            gather = cls(name=cls.__name__)
            self.set_dependencies(
                gather, keyword_tasks={f"arg_{i}": v for i, v in enumerate(value)}
            )
            return gather
        if isinstance(value, dict) and any(
            _holds_task(v) for v in (*value.keys(), *value.values())
        ):
            gather_dict = coll.Dict(name="Dict")
            self.set_dependencies(
                gather_dict,
                keyword_tasks={"keys": list(value.keys()), "values": list(value.values())},
            )
            return gather_dict
        return value

    def upstream_tasks(self, task: Task) -> set[Task]:
        """Tasks with an edge into ``task``."""
        return {e.upstream_task for e in self._edges_of(self._upstream, task)}

    def downstream_tasks(self, task: Task) -> set[Task]:
        """Tasks with an edge from ``task``."""
        return {e.downstream_task for e in self._edges_of(self._downstream, task)}

    def edges_to(self, task: Task) -> list[Edge]:
        """Edges into ``task``, in the order they were added."""
        return list(self._edges_of(self._upstream, task))

    def edges_into(self) -> Mapping[Task, Sequence[Edge]]:
        """Every task's incoming edges, in the order they were added: a read-only view, for code
        that walks the whole graph once (the engine's plan) without a copy per task."""
        return MappingProxyType(self._upstream)

    def edges_from(self, task: Task) -> list[Edge]:
        """Edges from ``task``, in the order they were added."""
        return list(self._edges_of(self._downstream, task))

    def _edges_of(self, index: dict[Task, list[Edge]], task: Task) -> list[Edge]:
        try:
            return index[task]
        except KeyError:
            raise ValueError(f"task {task.name!r} is not in flow {self.name!r}") from None

    def root_tasks(self) -> set[Task]:
        """Tasks with no upstream tasks."""
        return {t for t, edges in self._upstream.items() if not edges}

    def terminal_tasks(self) -> set[Task]:
        """Tasks with no downstream tasks."""
        return {t for t, edges in self._downstream.items() if not edges}

    def reference_tasks(self) -> set[Task]:
        """The tasks whose states decide the flow's state: the terminal tasks, unless set."""
        return set(self._reference_tasks) or self.terminal_tasks()

    def set_reference_tasks(self, tasks: Iterable[Task]) -> None:
        """Decide the flow's state by these tasks instead of the terminal ones."""
        tasks = set(tasks)
        missing = [t.name for t in tasks if t not in self._tasks]
        if missing:
            raise ValueError(f"reference tasks {missing} are not in flow {self.name!r}")
        self._reference_tasks = tasks

    def parameters(self) -> set[Parameter]:
        """The flow's parameters."""
        return {t for t in self._tasks if isinstance(t, Parameter)}

    def get_tasks(
        self, name: str | None = None, slug: str | None = None, tags: Iterable[str] | None = None
    ) -> list[Task]:
        """Tasks matching all of the given name, slug and tags."""
        wanted = set(tags or ())
        return [
            t
            for t in self._tasks
            if (name is None or t.name == name)
            and (slug is None or t.slug == slug)
            and wanted <= t.tags
        ]

    def sorted_tasks(self) -> tuple[Task, ...]:
        """Every task, upstream before downstream (linear time; ties in insertion order)."""
        if self._sorted is None:
            indegree = {t: len(edges) for t, edges in self._upstream.items()}
            ready = deque(t for t, n in indegree.items() if n == 0)
            order: list[Task] = []
            while ready:
                t = ready.popleft()
                order.append(t)
                for edge in self._downstream[t]:
                    down = edge.downstream_task
                    indegree[down] -= 1
                    if indegree[down] == 0:
                        ready.append(down)
            if len(order) != len(self._tasks):
                raise FlowValidationError(
                    f"flow {self.name!r} has a cycle: {self._describe_cycle(indegree)}; "
                    "remove one of those edges"
                )
            self._sorted = tuple(order)
        return self._sorted

    def _describe_cycle(self, indegree: dict[Task, int]) -> str:
        """Name one cycle among the tasks a topological sort could not place."""
        left = {t for t, n in indegree.items() if n > 0}
        task = next(iter(left))
        path: list[Task] = []
        seen: dict[Task, int] = {}
        while task not in seen:
            seen[task] = len(path)
            path.append(task)
            task = next(e.upstream_task for e in self._upstream[task] if e.upstream_task in left)
        cycle = path[seen[task]:][::-1]
        return " → ".join(t.slug or t.name for t in [*cycle, cycle[0]])

    def validate(self) -> None:
        """Check the graph; raise FlowValidationError naming the first problem found."""
        for edge in self._edges.values():
            for end in (edge.upstream_task, edge.downstream_task):
                if end not in self._tasks:
                    raise FlowValidationError(
                        f"flow {self.name!r}: {edge} refers to task {end.name!r}, which is "
                        "not in the flow; add it with flow.add_task"
                    )
        seen: dict[str, Task] = {}
        for t in self._tasks:
            if t.slug is None:
                raise FlowValidationError(f"flow {self.name!r}: task {t.name!r} has no slug")
            if t.slug in seen:
                raise FlowValidationError(
                    f"flow {self.name!r}: tasks {seen[t.slug].name!r} and {t.name!r} share the "
                    f"slug {t.slug!r}; slugs must be unique in a flow"
                )
            seen[t.slug] = t
        missing = [t.name for t in self._reference_tasks if t not in self._tasks]
        if missing:
            raise FlowValidationError(f"flow {self.name!r}: reference tasks {missing} are not in it")
        self._sorted = None
        self.sorted_tasks()

    def copy(self) -> Flow:
        """A new flow with the same tasks, edges and settings, changeable on its own."""
        new = Flow.__new__(Flow)
        new.__dict__.update(self.__dict__)
        new._tasks = dict(self._tasks)
        new._edges = dict(self._edges)
        new._upstream = {t: list(e) for t, e in self._upstream.items()}
        new._downstream = {t: list(e) for t, e in self._downstream.items()}
        new._slugs = dict(self._slugs)
        new._slug_counters = dict(self._slug_counters)
        new._reference_tasks = set(self._reference_tasks)
        new.constants = {t: dict(c) for t, c in self.constants.items()}
        return new

    # -- forwards to the modules that act on flows -------------------------------

    def run(
        self, parameters: dict[str, Any] | None = None, executor: Any = None, **kwargs: Any
    ) -> State:
        """Run the flow here and now; see ``headwater.engine.run_flow``."""
        from headwater.engine import run_flow

        return run_flow(self, parameters=parameters, executor=executor, **kwargs)

    def serialize(self) -> dict[str, Any]:
        """The flow's metadata as a JSON-able dict; see ``headwater.serialization``."""
        from headwater.serialization import serialize_flow

        return serialize_flow(self)

    def register(
        self,
        project_name: str,
        build: bool = True,
        labels: Iterable[str] | None = None,
        idempotency_key: str | None = None,
        **storage_kwargs: Any,
    ) -> str:
        """Store the flow and register it with the API; returns its id. See ``headwater.registration``."""
        from headwater.registration import register_flow

        return register_flow(
            self, project_name, build=build, labels=labels, idempotency_key=idempotency_key, **storage_kwargs
        )

    def visualize(self, filename: str | None = None) -> str:
        """The graph in Graphviz DOT; written to ``filename`` when given."""
        from headwater.visualize import flow_to_dot

        return flow_to_dot(self, filename=filename)
