"""The flow-run process: :func:`load_and_run_flow`, also the CLI's ``headwater execute flow-run``.

An agent starts this process with ``HEADWATER__CONTEXT__FLOW_RUN_ID``,
``HEADWATER__API__URL`` and ``HEADWATER__API__TOKEN`` set (DESIGN.md §1, steps
5–6). It reads the run and its flow version from the API, moves the run
Submitted → Running (with the version lock), rebuilds the flow's storage from
its spec, resolves the storage's secrets (the local setting ``context.secrets``
first, else the API's secret store; ``docs/secrets.md``), loads the flow, checks
it against the registered version, then ``environment.setup(flow)`` and
``environment.execute(flow)``. States, logs and heartbeats go to the API through
``headwater.engine.reporting.ApiReporter``. Any failure to load or run ends the
run Failed, with the reason in its log. ``docs/execution.md`` is the user's view.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.core.run_states import FINISHED, FlowRunState
from headwater.core.state import STATES, Cancelled, Failed, Running, State
from headwater.engine.context import deployed

if TYPE_CHECKING:
    from pydantic import SecretStr

    from headwater.client import Client
    from headwater.config import Settings
    from headwater.core.flow import Flow
    from headwater.engine.reporting import ApiReporter
    from headwater.environments.base import Environment
    from headwater.schemas.flow_runs import FlowRun
    from headwater.schemas.flows import FlowMetadata

logger = logging.getLogger("headwater.execution")

MISSING_RUN_ID = (
    "HEADWATER__CONTEXT__FLOW_RUN_ID is not set: this runs inside a flow-run process started by an agent, "
    "which sets it (with HEADWATER__API__URL and HEADWATER__API__TOKEN). To run a flow here and now use "
    "`headwater run FILE`; to run a registered flow, create a run (`headwater run --project ...`) for an agent"
)


#: Most characters of an exit report (and of the state message written when giving up).
MAX_EXIT_REPORT = 4000
#: Seconds a process that gives up keeps trying to write why into its run.
GIVE_UP_RETRY_FOR = 10.0


class ExecutionError(ValueError):
    """The flow-run process can't run its flow run; the message says why and what to do."""


def load_and_run_flow(client: Client | None = None) -> State:
    """Load the flow of the run this process was started for, run it, and report it to the API.

    Args:
        client: the API client; default ``Client()`` from the settings
            (``HEADWATER__API__URL``, ``HEADWATER__API__TOKEN``).

    Returns:
        The state the run ended in (``Success``, ``Failed``, ``Cancelled``), or
        ``Running`` when the environment handed the run to another process.
        A run found already finished or cancelled returns its state without
        running anything.

    Raises:
        ExecutionError: no flow-run id, or the run is not one this process can
            run (not claimed by an agent, or already run by another process).
        headwater.client.ClientError: the run can't be read or moved to Running
            (then nothing ran and the run is left as it was).
        headwater.client.ApiError: the API did not answer (after the client's retries);
            any other unexpected error too. Before it is raised, :func:`give_up` writes it
            into the run's log and ends the run Failed, if the API answers now.
    """
    from headwater.config import get_settings
    from headwater.engine.logs import ensure_logging

    settings = get_settings()
    flow_run_id = settings.context.flow_run_id
    if not flow_run_id:
        raise ExecutionError(MISSING_RUN_ID)
    ensure_logging()  # the headwater console handler, before the run's handler joins it
    from headwater.client import ApiError, Client, ClientError

    try:
        if client is not None:
            return _run(client, flow_run_id, settings)
        with Client() as api:
            return _run(api, flow_run_id, settings)
    except (ExecutionError, ClientError):
        raise  # not this process's run to run (or the request was wrong): the run is left as it is
    except Exception as exc:
        why = str(exc) if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
        logger.error("the flow-run process gives up: %s", why, exc_info=not isinstance(exc, ApiError))
        give_up(flow_run_id, f"the flow-run process gave up: {why}", settings, client)
        raise


def _run(api: Client, flow_run_id: str, settings: Settings) -> State:
    from headwater.client import Client
    from headwater.engine.reporting import ApiReporter

    second_hop = settings.context.second_hop
    run = api.get_flow_run(flow_run_id)
    started = _start(api, run, second_hop)
    if isinstance(started, State):
        return started
    runner = settings.runner
    token = settings.api.token
    claim = getattr(api, "claim", None) or settings.context.claim
    reporter = ApiReporter(
        api,
        run.id,
        started,
        heartbeat_interval=None if runner.heartbeat_interval == "off" else float(runner.heartbeat_interval),
        cancel_check_interval=runner.cancel_check_interval,
        log_batch_interval=runner.log_batch_interval,
        log_level=logging.getLevelName(settings.logging.level),
        # how worker processes make a client: under the same claim
        connect=functools.partial(Client, api.api_url, token, claim=claim),
        claim=claim,
        on_superseded=functools.partial(_superseded, run.id),
    ).start()
    resumed = _watch_for_resume(reporter)
    try:
        state = _load_and_execute(api, run, reporter, settings)
        final = _finish(reporter, state)
        level = logging.ERROR if final.is_failed() else logging.WARNING if final.is_cancelled() else logging.INFO
        logger.log(level, "flow run %s ended %s: %s", run.run_name, final.name, final.message)
        return final
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: report, then let it go on
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        _finish(reporter, Failed(f"the flow-run process was interrupted ({why})"))
        raise
    finally:
        _stop_watching_for_resume(resumed)
        reporter.close()


#: Whether this process stops itself once its claim is superseded (``headwater execute flow-run`` sets it:
#: the process is the run's own; a caller of load_and_run_flow in its own process only stops the tasks).
STOP_PROCESS_WHEN_SUPERSEDED = False
#: The exit code of a flow-run process that stopped because its run was taken from it.
EXIT_SUPERSEDED = 75


def _superseded(flow_run_id: str, reason: str) -> None:
    """The run was taken from this process's claim (the reporter already stops further tasks and reports).

    A flow-run process of its own stops at once, with the processes it started (its process
    group, when it leads one): a task of this stale attempt must not run on beside the new one.
    """
    import os
    import signal
    import sys

    message = f"headwater: flow run {flow_run_id} was taken from this process ({reason}); it stops now"
    logger.error("%s", message)
    if not STOP_PROCESS_WHEN_SUPERSEDED:
        return
    write_exit_report(message)
    print(message, file=sys.stderr, flush=True)
    if os.name == "posix" and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)  # this process and every process it started
    os._exit(EXIT_SUPERSEDED)


def _watch_for_resume(reporter: ApiReporter) -> Any:
    """In a flow-run process of its own: on SIGCONT (the process was stopped, e.g. its machine froze),
    ask the API whether the run is still this process's before the task in the main thread goes on.

    The handler runs in the main thread, between the task's own statements, and waits up to
    a few seconds for the answer; if the run was taken meanwhile, the process stops there.
    Returns the handler it replaced (for :func:`_stop_watching_for_resume`), or None.
    """
    import signal
    import threading

    if not STOP_PROCESS_WHEN_SUPERSEDED or threading.current_thread() is not threading.main_thread():
        return None
    if not hasattr(signal, "SIGCONT"):
        return None

    def resumed(_signum: int, _frame: object) -> None:
        logger.warning("the flow-run process was stopped and resumed: checking it still holds the run")
        reporter.check_claim(timeout=10.0)

    return signal.signal(signal.SIGCONT, resumed)


def _stop_watching_for_resume(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGCONT, previous)


def _finish(reporter: ApiReporter, state: State) -> State:
    """``reporter.finish(state)``; when the API took no final state, the exit report says so (the
    agent puts it into the failure message of the run it finds left unfinished)."""
    final = reporter.finish(state)
    if reporter.unreported is not None:
        write_exit_report(f"the flow run ended {final.name} here, but {reporter.unreported}")
    return final


def write_exit_report(reason: str) -> None:
    """Write why this flow-run process gave up to the file the setting ``context.exit_report`` names
    (``HEADWATER__CONTEXT__EXIT_REPORT``, set by the LocalAgent, which puts it into the run's failure
    message); nothing without it. Never raises."""
    import os

    from headwater.config import ConfigError, get_settings

    try:
        path = get_settings().context.exit_report
    except ConfigError:  # the settings themselves may be why: the variable alone still names the file
        raw = os.environ.get("HEADWATER__CONTEXT__EXIT_REPORT")
        path = Path(raw) if raw else None
    if path is None:
        return
    try:
        Path(path).write_text(reason[:MAX_EXIT_REPORT])
    except OSError as exc:
        logger.warning("can't write the exit report %s (%s): %s", path, exc, reason)


def give_up(flow_run_id: str, message: str, settings: Settings, client: Client | None = None) -> None:
    """Write ``message`` into the run's log and, if the run is still Submitted, Running or
    Cancelling, end it Failed (Cancelled) with it, if the API answers within a few seconds now.

    ``client`` is used when given; else one from the settings that retries for at most
    ``GIVE_UP_RETRY_FOR`` seconds (the API may be why this process gives up). Never raises.
    """
    from headwater.client import Client

    try:
        api = client or Client(
            settings.api.url,
            settings.api.token,
            timeout=min(settings.api.timeout, GIVE_UP_RETRY_FOR),
            retry_for=min(settings.api.retry_for, GIVE_UP_RETRY_FOR),
            claim=settings.context.claim,
        )
        try:
            run = api.get_flow_run(flow_run_id)
            api.write_logs(flow_run_id, [{"message": message, "level": "ERROR", "name": logger.name}])
            text = message[:MAX_EXIT_REPORT]
            if run.state in (FlowRunState.SUBMITTED, FlowRunState.RUNNING):
                api.set_flow_run_state(flow_run_id, FlowRunState.FAILED, version=run.version, message=text)
            elif run.state == FlowRunState.CANCELLING:
                api.set_flow_run_state(flow_run_id, FlowRunState.CANCELLED, version=run.version, message=text)
        finally:
            if api is not client:
                api.close()
    except Exception as exc:
        logger.warning("can't write why the flow-run process gave up into flow run %s: %s", flow_run_id, exc)


def _start(api: Client, run: FlowRun, second_hop: bool) -> int | State:
    """Move the run to Running; its version, or the State to return without running."""
    from headwater.client import ConflictError

    for _ in range(5):
        if run.state in FINISHED:
            note = f"the flow-run process started, but the run is already {run.state} ({run.state_message}); "
            note += "nothing ran"
            _note(api, run.id, note)
            return STATES[run.state](note)
        if run.state == FlowRunState.CANCELLING:
            note = "the flow run was cancelled before it started; nothing ran"
            try:
                api.set_flow_run_state(run.id, FlowRunState.CANCELLED, version=run.version, message=note)
            except ConflictError:
                run = api.get_flow_run(run.id)
                continue
            _note(api, run.id, note)
            return Cancelled(note)
        if run.state == FlowRunState.RUNNING:
            if second_hop:
                return run.version
            raise ExecutionError(
                f"flow run {run.id} is already Running: another flow-run process runs it. A process of its "
                "own starts only for a Submitted run; the second hop of an environment sets "
                "HEADWATER__CONTEXT__SECOND_HOP=true"
            )
        if run.state != FlowRunState.SUBMITTED:
            raise ExecutionError(
                f"flow run {run.id} is {run.state}, not Submitted: no agent has claimed it. Runs start "
                "through an agent whose labels match the run's (see `headwater explain RUN`)"
            )
        try:
            return api.set_flow_run_state(run.id, FlowRunState.RUNNING, version=run.version).version
        except ConflictError as exc:  # moved meanwhile (e.g. cancelled): look again
            version = run.version
            run = api.get_flow_run(run.id)
            if exc.resent and run.state == FlowRunState.RUNNING and run.version == version + 1:
                return run.version  # a try whose answer was lost moved it: this process's own start
    raise ExecutionError(f"flow run {run.id} kept changing while this process tried to start it; it was left as is")


def _note(api: Client, flow_run_id: str, message: str) -> None:
    """A line in the run's log, written now (best effort), and on the console."""
    logger.info("%s", message)
    try:
        api.write_logs(flow_run_id, [{"message": message, "level": "INFO", "name": logger.name}])
    except Exception as exc:
        logger.warning("can't write to the log of flow run %s: %s", flow_run_id, exc)


def _load_and_execute(api: Client, run: FlowRun, reporter: ApiReporter, settings: Settings) -> State:
    """Load the run's flow and run it with its environment; a failure is a Failed state, logged."""
    from headwater.storage import StorageError, storage_from_spec
    from headwater.storage.secrets import forget as forget_secrets
    from headwater.storage.secrets import provide as provide_secrets

    stage = f"reading flow version {run.flow_id}"
    needed: list[str] = []
    try:
        detail = api.get_flow(run.flow_id)
        metadata = detail.metadata
        stage = f"loading flow {metadata.name!r} (version {detail.version}) from its storage"
        if metadata.storage is None:
            raise ExecutionError("its registered metadata has no storage spec; register it again with a storage")
        storage = storage_from_spec(metadata.storage)
        needed = list(dict.fromkeys([*storage.secrets, *storage.credential_secrets()]))
        resolved = resolve_secrets(needed, settings.context.secrets, api)
        provide_secrets(resolved)  # what the storage's own lookup (storage/secrets.py) finds first
        secrets = {name: resolved[name] for name in storage.secrets}
        flow = storage.get_flow(metadata.name)
        check_tasks(flow, metadata, detail.version)
        environment = flow.environment if flow.environment is not None else _default_environment()
        logger.info("flow %r version %d loaded from %s", flow.name, detail.version, storage.describe())
        runner_kwargs: dict[str, Any] = {
            "parameters": run.parameters,
            "flow_run_id": run.id,
            "run_name": run.run_name,
            "state_handlers": [reporter],
            "context": {"secrets": secrets} if secrets else None,
        }
        # The documented signatures: setup(flow), execute(flow), run(flow). The run's own
        # arguments reach the flow runner through the deployment (engine/context.py).
        with deployed(flow.name, **runner_kwargs) as deployment:
            if settings.context.second_hop:
                stage = f"running flow {flow.name!r} with {environment!r}"
                returned = environment.run(flow)
            else:
                stage = f"setting up {environment!r} for flow {flow.name!r}"
                environment.setup(flow)
                stage = f"running flow {flow.name!r} with {environment!r}"
                returned = environment.execute(flow)
        # execute() may return None (as documented) after running the flow here: the
        # deployment holds the state the flow runner ended in.
        state: State | None = returned if isinstance(returned, State) else deployment.final_state
    except Exception as exc:
        reason = f"{stage} failed: {type(exc).__name__}: {exc}"
        logger.error("%s", reason, exc_info=not isinstance(exc, (StorageError, ExecutionError)))
        return Failed(reason, exc)
    finally:
        forget_secrets(needed)
    if state is None:
        return Running(f"the flow run continues in the process {type(environment).__name__} started")
    return state


def _default_environment() -> Environment:
    """The environment of a flow that has none: chosen here, where its run starts."""
    from headwater.environments.local import LocalEnvironment

    return LocalEnvironment()


def resolve_secrets(
    names: Iterable[str], available: Mapping[str, SecretStr], client: Client | None = None
) -> dict[str, SecretStr]:
    """The values of the secrets ``names``: each from ``available`` (the local setting
    ``context.secrets``) if it is there, else from the API's secret store through ``client``.

    Local names match exactly, else case-insensitively (environment variables
    arrive lower-cased); the API's names are case-insensitive. Values stay
    ``SecretStr``, so they never show in logs or reprs; only names are logged.

    Raises:
        ExecutionError: some are set in neither place (the message names them
            and both ways to set them), or the API can't be asked.
    """
    from headwater.storage.secrets import local_secret

    found: dict[str, SecretStr] = {}
    sources: dict[str, list[str]] = {"the local settings": [], "the API's secret store": []}
    missing: list[str] = []
    for name in dict.fromkeys(names):
        value = local_secret(name, available)
        if value is not None:
            sources["the local settings"].append(name)
        elif client is not None:
            value = _secret_from_api(client, name)
            if value is not None:
                sources["the API's secret store"].append(name)
        if value is None:
            missing.append(name)
        else:
            found[name] = value
    if missing:
        raise ExecutionError(_missing_secrets(missing, asked_api=client is not None))
    if found:
        logger.info(
            "secret(s) of the flow's storage resolved: %s",
            "; ".join(f"{', '.join(map(repr, got))} from {where}" for where, got in sources.items() if got),
        )
    return found


def _secret_from_api(client: Client, name: str) -> SecretStr | None:
    """The secret's value from the API, or None when the store has no secret of that name."""
    from headwater.client import ApiError, NotFoundError
    from headwater.schemas.secrets import secret_name_problem

    if secret_name_problem(name) is not None:
        return None  # a name the store can't hold: only the local setting can have it
    try:
        return client.get_secret(name)
    except NotFoundError:
        return None
    except ApiError as exc:
        raise ExecutionError(f"can't read secret {name!r} from the API's secret store: {exc}") from None


def _missing_secrets(missing: list[str], asked_api: bool) -> str:
    from headwater.schemas.secrets import secret_name_problem

    where = "set neither where the flow runs nor in the API's secret store" if asked_api else "not set here"
    first = missing[0]
    message = (
        f"the flow's storage needs secret(s) {', '.join(map(repr, missing))}, which are {where}; "
        f"set each in the API's secret store (e.g. `headwater create secret {first.upper()}`) or as an "
        f"environment variable where the flow runs (e.g. HEADWATER__CONTEXT__SECRETS__{first.upper()}, or "
        "[context.secrets] in config.toml)"
    )
    unfit = [name for name in missing if secret_name_problem(name) is not None]
    if unfit:
        message += (
            f"; {', '.join(map(repr, unfit))} can't be kept in the API's secret store (names there are letters, "
            "digits and single underscores): set them locally or rename them in the storage"
        )
    return message


def check_tasks(flow: Flow, metadata: FlowMetadata, version: int) -> None:
    """Raise ExecutionError unless the loaded flow has the registered version's task slugs."""
    loaded = {t.slug for t in flow.tasks if t.slug}
    registered = {t.slug for t in metadata.tasks}
    if loaded == registered:
        return
    parts = []
    if registered - loaded:
        parts.append(f"registered but not in storage: {_few(registered - loaded)}")
    if loaded - registered:
        parts.append(f"in storage but not registered: {_few(loaded - registered)}")
    raise ExecutionError(
        f"the flow in storage does not match its registered version {version} ({'; '.join(parts)}); "
        "re-register the flow"
    )


def _few(slugs: set[str], limit: int = 5) -> str:
    shown = sorted(slugs)
    more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(map(repr, shown[:limit])) + more
