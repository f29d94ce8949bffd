"""``LocalAgent``: runs each flow run as a process on this machine.

The process is ``python -m headwater execute flow-run`` (the flow-run entrypoint,
``headwater.environments.execution``) with the agent's environment plus the run's
variables: by default forked from the agent's warm starter (``warm.py``), which
has imported headwater already, else (``--no-warm``, or while the warm starter is
not ready) started fresh with ``subprocess.Popen`` (the cold path). The agent
reaps its processes: one that exits while its run is still Submitted or Running
on the server (it died before reporting a final state) has its run marked Failed
with the exit code. The hooks it implements are ``base.py``; the loop calling them ``loop.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from headwater.agent.base import Agent, logger
from headwater.agent.common import log_to_run
from headwater.agent.loop import DeployLater
from headwater.agent.warm import UNKNOWN_EXIT, WarmStarter, WarmTimeout, WarmUnavailable
from headwater.client.errors import ApiError
from headwater.core.run_states import FINISHED, HELD, FlowRunState

if TYPE_CHECKING:
    from headwater.schemas.flow_runs import FlowRun

#: Seconds a terminated flow-run process gets to exit before it is killed.
TERMINATE_GRACE = 5.0
#: Most characters of a process's exit report put into its run's failure message.
MAX_EXIT_REPORT = 4000
#: Seconds the agent waits, as it starts, for its warm starter's imports (runs start cold meanwhile after).
WARM_READY_TIMEOUT = 15.0
#: Least seconds between two starts of a warm starter (doubling while each ends before it is ready, up to a minute).
WARM_RESTART_BACKOFF = 2.0


class RunProcess(Protocol):
    """A run's process as the agent watches it: ``subprocess.Popen``, or ``warm.WarmProcess``."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, signum: int) -> None: ...


def describe_exit(code: int) -> str:
    """``code 3``, or ``code -9 (killed by SIGKILL)`` for a process ended by a signal."""
    if code == UNKNOWN_EXIT:
        return "an exit code no one saw (the warm starter that started it had ended)"
    if code < 0:
        try:
            return f"code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


def _signal_group(process: RunProcess, signum: signal.Signals) -> None:
    """Signal the process and, on POSIX, the processes it started (its own process group)."""
    if os.name != "posix":
        process.send_signal(signum)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(process.pid, signum)


def _terminate(process: RunProcess, signalled: bool = False) -> int:
    """SIGTERM the group (unless ``signalled`` already), SIGKILL it after ``TERMINATE_GRACE``; the exit code."""
    if not signalled:
        _signal_group(process, signal.SIGTERM)
    try:
        return process.wait(TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        return process.wait()


class LocalAgent(Agent):
    """Deploys flow runs as local processes (``python -m headwater execute flow-run``).

    Args:
        import_paths: folders put first on the processes' ``PYTHONPATH`` (where the flows' modules live).
        show_flow_logs: let the processes write to this agent's stdout/stderr (default: discarded).
        hostname_label: add this machine's hostname to the labels, so flows stored on it
            (``Local`` storage) run here.
        warm: start each run's process as a fork of the warm starter, a process that imported
            headwater once (``warm.py``); False: a fresh interpreter per run (the cold path).
            Default: the ``agent.warm_start`` setting (true).

    The other arguments are :class:`~headwater.agent.Agent`'s. When the agent stops
    (``max_polls`` reached, :meth:`stop`, SIGINT/SIGTERM) it waits up to the
    ``agent.stop_timeout`` setting for its processes to end, then terminates the rest:
    a run not started yet (Submitted) is put back, a Running one is marked Failed.
    """

    kind = "local"

    def __init__(
        self,
        name: str | None = None,
        labels: Iterable[str] | None = None,
        env_vars: Mapping[str, str | None] | None = None,
        max_polls: int | None = None,
        agent_address: str | None = None,
        no_cloud_logs: bool = False,
        import_paths: Iterable[str | Path] | None = None,
        show_flow_logs: bool = False,
        hostname_label: bool = True,
        warm: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, labels, env_vars, max_polls, agent_address, no_cloud_logs, **kwargs)
        if hostname_label:
            self.labels.add(socket.gethostname())
        if isinstance(import_paths, (str, Path)):
            import_paths = [import_paths]
        self.import_paths = [str(path) for path in import_paths or ()]
        self.show_flow_logs = show_flow_logs
        #: the flow-run command (tests swap in a stand-in).
        self._command = [sys.executable, "-m", "headwater", "execute", "flow-run"]
        self.warm = self.settings.warm_start if warm is None else warm
        self._processes: dict[str, RunProcess] = {}
        self._warm: WarmStarter | None = None
        self._warm_lock = threading.Lock()
        self._warm_started = 0.0  # time.monotonic() the last warm starter was started
        self._warm_backoff = WARM_RESTART_BACKOFF
        self._processes_lock = threading.Lock()
        self._reap_lock = threading.Lock()
        self._exit_reports: Path | None = None  # a folder of its own for its processes' exit reports

    @classmethod
    def add_cli_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """``headwater agent local start``'s own options."""
        parser.add_argument("--no-hostname-label", dest="hostname_label", action="store_false",
                            help="don't add this machine's hostname to the labels")  # fmt: skip
        parser.add_argument("--import-path", "-p", dest="import_paths", action="append", default=[], metavar="PATH",
                            help="a folder put first on the flow runs' PYTHONPATH (repeatable)")  # fmt: skip
        parser.add_argument("--show-flow-logs", action="store_true",
                            help="show the flow-run processes' output here (default: discarded)")  # fmt: skip
        parser.add_argument("--no-warm", dest="warm", action="store_false", default=None,
                            help="start each run in a fresh Python process instead of forking it from a warm "
                                 "process that imported headwater once (agent.warm_start)")  # fmt: skip

    def health(self) -> dict[str, Any]:
        """The base health, plus ``processes``: how many flow-run processes are running."""
        return {**super().health(), "processes": len(self._processes)}

    @property
    def warm_status(self) -> str:
        """The warm starter's state: ``ready``, ``starting``, ``lost``, or ``off`` (``warm=False``)."""
        starter = self._warm
        return "off" if not self.warm else starter.status if starter is not None else "starting"

    def process_env(self, flow_run: FlowRun) -> dict[str, str]:
        """This process's environment (less the ``env_vars`` set to None), then :meth:`flow_run_env`,
        with ``import_paths`` first on ``PYTHONPATH``."""
        dropped = {name for name, value in self.env_vars.items() if value is None}
        env = {name: value for name, value in os.environ.items() if name not in dropped}
        env.update(self.flow_run_env(flow_run))
        env["HEADWATER__CONTEXT__EXIT_REPORT"] = str(self._exit_report_path(flow_run.id))
        if self.import_paths:
            env["PYTHONPATH"] = os.pathsep.join([*self.import_paths, *filter(None, [env.get("PYTHONPATH")])])
        return env

    def deploy_flow(self, flow_run: FlowRun) -> None:
        """Start the flow-run process (forked warm, else cold); it reports its own states and logs."""
        env = self.process_env(flow_run)
        process: RunProcess | None = self._start_warm(flow_run, env)
        how = "forked from the warm starter"
        if process is None:
            output = None if self.show_flow_logs else subprocess.DEVNULL
            process = subprocess.Popen(
                self._command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                # its own session: a Ctrl-C in the agent's terminal reaches the agent, which decides
                start_new_session=os.name == "posix",
            )
            how = "started cold"
        with self._processes_lock:
            self._processes[flow_run.id] = process
        logger.info("flow run %s runs as process %d (%s)", flow_run.id, process.pid, how)

    # -- the warm starter ------------------------------------------------------------------

    def _warm_argv(self) -> list[str] | None:
        """The command without its interpreter, if the warm starter can run it (``python -m M …``, ``python F …``)."""
        command = self._command
        if len(command) < 2 or command[0] != sys.executable or not hasattr(os, "fork"):
            return None
        if (command[1] == "-m" and len(command) >= 3) or not command[1].startswith("-"):
            return command[1:]
        return None

    def _start_warm(self, flow_run: FlowRun, env: dict[str, str]) -> RunProcess | None:
        """The run's process forked from the warm starter; None when it should start cold (said in the log)."""
        argv = self._warm_argv() if self.warm else None
        if argv is None:
            return None
        starter = self._ensure_warm()
        if starter is None or not starter.ready.is_set():
            logger.info("flow run %s starts cold: the warm starter is %s", flow_run.id,
                        starter.status if starter is not None else "not there")  # fmt: skip
            return None
        stdin = os.open(os.devnull, os.O_RDONLY)
        quiet = None if self.show_flow_logs else os.open(os.devnull, os.O_WRONLY)
        try:
            stdio = [stdin, 1, 2] if quiet is None else [stdin, quiet, quiet]
            return starter.spawn(argv, env, stdio)
        except WarmTimeout as exc:  # it may have started the process after all: not cold as well
            starter.kill()
            raise DeployLater(f"{exc}; it was stopped, and the run is put back") from None
        except WarmUnavailable as exc:  # nothing was started
            logger.warning("flow run %s starts cold: %s", flow_run.id, exc)
            self._ensure_warm()
            return None
        finally:
            os.close(stdin)
            if quiet is not None:
                os.close(quiet)

    def _ensure_warm(self) -> WarmStarter | None:
        """The warm starter, started again if it ended (at most every ``WARM_RESTART_BACKOFF`` s, doubling while
        it keeps ending before it is ready); None while waiting for the next try."""
        with self._warm_lock:
            starter = self._warm
            if starter is not None and not starter.lost:
                if starter.ready.is_set():
                    self._warm_backoff = WARM_RESTART_BACKOFF
                return starter
            if self._loop.stopping.is_set() and starter is not None:
                return None
            if starter is not None and starter.error is not None:  # it can't import what it must: it never will
                if not starter.retired:
                    logger.warning("agent %r starts runs cold from now on: its warm starter can't start (%s)",
                                   self.name, starter.error)  # fmt: skip
                    self._retire(starter)
                return None
            if time.monotonic() - self._warm_started < self._warm_backoff:
                return None
            if starter is not None:
                code = starter.zygote.poll() if starter.zygote is not None else None
                was_ready = starter.ready.is_set()
                logger.warning("agent %r: its warm starter ended (%s%s); runs start cold until a new one is ready",
                               self.name, describe_exit(code) if code is not None else "still ending",
                               f": {starter.error}" if starter.error else "")  # fmt: skip
                self._warm_backoff = WARM_RESTART_BACKOFF if was_ready else min(self._warm_backoff * 2, 60.0)
                self._retire(starter)
            self._warm_started = time.monotonic()
            try:
                self._warm = WarmStarter(self.settings.warm_preload, on_exit=self._loop.slot_freed).start()
            except OSError as exc:
                logger.warning("agent %r can't start its warm starter (%s); runs start cold", self.name, exc)
                self._warm = None
            return self._warm

    def _retire(self, starter: WarmStarter) -> None:
        """Let go of an ended warm starter; its processes (still in ``_processes``) are watched by pid."""
        starter.retired = True
        threading.Thread(target=starter.close, name="headwater-warm-retire", daemon=True).start()

    def on_startup(self) -> None:
        """Start the warm starter and wait (up to ``WARM_READY_TIMEOUT`` s) for its imports."""
        if not self.warm or self._warm_argv() is None:
            return
        self._warm_started = 0.0
        starter = self._ensure_warm()
        if starter is not None and not starter.wait_ready(WARM_READY_TIMEOUT):
            why = f" ({starter.error})" if starter.error else f" after {WARM_READY_TIMEOUT:g}s"
            logger.warning("agent %r: its warm starter is %s%s; runs start cold until one is ready",
                           self.name, starter.status, why)  # fmt: skip

    def check_deployments(self) -> None:
        """Reap processes that ended; report a run they left unfinished as Failed with the exit code."""
        if self._warm is not None and self._warm.lost and not self._loop.stopping.is_set():
            self._ensure_warm()  # a new one, so the next runs start warm again
        with self._reap_lock:
            with self._processes_lock:
                ended = [(run_id, p) for run_id, p in self._processes.items() if p.poll() is not None]
            if ended:
                self._loop.slot_freed()  # their slots are free: the claim loop may be waiting for one
            for run_id, process in ended:
                assert process.returncode is not None
                if self._report_exit(run_id, process.returncode, f"exited with {describe_exit(process.returncode)}"):
                    with self._processes_lock:
                        self._processes.pop(run_id, None)

    def held_slots(self) -> int:
        """The flow-run processes still running: they share this machine, each holds a slot until it ends."""
        with self._processes_lock:
            return sum(1 for process in self._processes.values() if process.poll() is None)

    def deployed_flow_run_ids(self) -> set[str]:
        with self._processes_lock:
            return {run_id for run_id, process in self._processes.items() if process.poll() is None}

    def stop_flow_run(self, flow_run_id: str, reason: str) -> None:
        """Terminate the run's process group (SIGTERM, then SIGKILL) and settle the run."""
        with self._reap_lock:
            with self._processes_lock:
                process = self._processes.get(flow_run_id)
            if process is None or process.poll() is not None:
                return  # it ended meanwhile: check_deployments settles it
            code = _terminate(process)
            if self._report_exit(flow_run_id, code, self._stopped(reason, code)):
                with self._processes_lock:
                    self._processes.pop(flow_run_id, None)

    def _stopped(self, why: str, code: int) -> str:
        """``was stopped by agent 'NAME' WHY (code -15 (killed by SIGTERM))``: a process this agent stopped."""
        return f"was stopped by agent {self.name!r} {why} ({describe_exit(code)})"

    def _report_exit(self, flow_run_id: str, code: int, how: str, stopping: bool = False) -> bool:
        """Settle the run of an ended process; False if the server could not be asked (try again later)."""
        try:
            run = self.client.get_flow_run(flow_run_id)
        except ApiError as exc:
            logger.warning("could not read flow run %s after its process ended: %s", flow_run_id, exc)
            return False
        if run.state in FINISHED or not self.holds(run) or run.state not in HELD:
            # finished (by the process itself, or cancelled), or recovered meanwhile and maybe claimed again:
            # the run's state is not this agent's to set, but why its process gave up still belongs in its log
            whose = "ended" if run.state in FINISHED else "is not this agent's any more, now"
            logger.info("flow run %s %s %s; its process %s", flow_run_id, whose, run.state, how)
            report = self._exit_report(flow_run_id)
            if report and report[2:] not in (run.state_message or ""):
                log_to_run(self.client, flow_run_id, "WARNING", f"the flow-run process {how}{report}")
            return True
        message = f"the flow-run process {how}"
        if run.state == FlowRunState.SUBMITTED and stopping:
            self.put_back(run, f"its process was stopped before it started the run ({message})")
            return True
        if run.state == FlowRunState.CANCELLING:
            message += " while the run was cancelling" + self._exit_report(flow_run_id)
            state = FlowRunState.CANCELLED
        else:
            if code == 0:
                message += f" but left the run {run.state}"
            message += self._exit_report(flow_run_id)  # why the process gave up, in its own words
            state = FlowRunState.FAILED
        if not self.fail_flow_run(flow_run_id, message, state, run.version):  # then its log line was not written
            log_to_run(self.client, flow_run_id, "ERROR", message, self.claim(flow_run_id))
        return True

    def _exit_report_path(self, flow_run_id: str) -> Path:
        """The file the run's process writes why it gave up to (``context.exit_report``), none there yet."""
        if self._exit_reports is None:
            self._exit_reports = Path(tempfile.mkdtemp(prefix="headwater-agent-"))
        path = self._exit_reports / f"{flow_run_id}.txt"
        path.unlink(missing_ok=True)  # an earlier attempt's, on this agent
        return path

    def _exit_report(self, flow_run_id: str) -> str:
        """``": <why the process gave up>"`` from its exit report (then removed), or ``""`` if it wrote none."""
        if self._exit_reports is None:
            return ""
        path = self._exit_reports / f"{flow_run_id}.txt"
        try:
            text = path.read_text(errors="replace").strip()[:MAX_EXIT_REPORT]
            path.unlink()
        except OSError:
            return ""
        return f": {text}" if text else ""

    def on_shutdown(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the flow-run processes, then terminate the rest and settle their runs."""
        deadline = time.monotonic() + timeout
        if self._processes:
            logger.info("agent %r waits up to %.0fs for %d flow-run process(es) to end",
                        self.name, timeout, len(self._processes))  # fmt: skip
        while self._processes and not self.force_stopping and time.monotonic() < deadline:
            self.check_deployments()
            time.sleep(0.1)
        self.check_deployments()
        with self._reap_lock, self._processes_lock:
            left = dict(self._processes)
            self._processes.clear()
        for process in left.values():
            _signal_group(process, signal.SIGTERM)
        for run_id, process in left.items():
            code = _terminate(process, signalled=True)
            logger.warning("agent %r stopped the process of flow run %s", self.name, run_id)
            how = self._stopped("as it shut down", code)
            self._report_exit(run_id, code, how, stopping=True)
        if self._exit_reports is not None:
            shutil.rmtree(self._exit_reports, ignore_errors=True)
            self._exit_reports = None
        with self._warm_lock:
            starter, self._warm = self._warm, None
        if starter is not None:
            starter.close()
