"""The warm starter's own process: imports the flow-run path once, then forks one process per run.

``python -m headwater.agent.zygote FD [MODULE ...]`` is started by the LocalAgent
(its other half, the agent's side, is ``warm.py``). It imports what a flow-run
process imports before its first task (:data:`PRELOAD`, plus the agent's
``agent.warm_preload`` modules), checks that it has no thread but its own (a
process with threads can't be forked safely), says ``ready`` and serves the agent
on the Unix socket ``FD`` (``SOCK_SEQPACKET``, one JSON message per packet):

- ``spawn`` (with the run's stdin, stdout and stderr as passed descriptors): fork a
  process that takes, before running anything, what the cold path's ``Popen`` gives
  one: its own session and process group, those three descriptors, the working
  directory, resource limits and umask, the environment (as ``os.environ``, with
  ``sys.path`` rebuilt from its ``PYTHONPATH``), default signal handlers; then it
  runs the command as ``python -m MODULE ARGS`` / ``python SCRIPT ARGS`` would and
  exits with the same exit code, after what a normal exit does (threads joined,
  ``atexit`` handlers, streams flushed; :func:`finish`).
  Answers ``started`` with the pid once the set-up succeeded, else ``failed``;
- when a process ends, ``exit`` with its pid and code (negative: the signal that ended it).

The zygote is single-threaded and never runs a flow itself; a crash of one run is
an exit status here. It ends when the agent closes the socket (the runs it
started go on, as the cold path's do when their agent dies).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import importlib.util
import io
import json
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

#: What ``headwater execute flow-run`` imports before the flow's first task (measured with ``sys.modules``).
PRELOAD = (
    "headwater.cli.main",
    "headwater.cli.execute",
    "headwater.environments.execution",
    "headwater.environments.local",
    "headwater.environments.remote",
    "headwater.client",
    "headwater.config",
    "headwater.engine.reporting",
    "headwater.engine.flow_runner",
    "headwater.engine.task_runner",
    "headwater.engine.heartbeat",
    "headwater.engine.shipping",
    "headwater.executors.local",
    "headwater.storage",
    "headwater.storage.local",
    "headwater.storage.memory",
    "headwater.storage.module",
    "headwater.storage.script",
    "headwater.storage.secrets",
    "headwater.storage.payload",
    "cloudpickle",
    # httpx imports its transport's modules when a client is made
    "httpcore",
    "h11",
    "anyio",
    "certifi",
    "encodings.idna",
    "stringprep",
)
#: Calls made once after the imports, as ``module:function`` with its arguments: the command line the
#: flow-run process parses imports every command's module.
WARM_UP = (
    ("headwater.cli.main:build_parser", (["execute", "flow-run"],)),
    # the API client's TLS context (loading the CA bundle: 35-50 ms of CPU per run otherwise)
    ("headwater.client.http:ssl_context", ()),
)
#: Largest message (a run's environment) the socket carries.
MAX_MESSAGE = 1 << 20
#: The exit code of a forked process whose set-up failed (it ran nothing).
EXIT_SETUP_FAILED = 127


#: Commands whose work is one function: the forked process calls it instead of parsing its command line
#: (``module:function`` returning the exit code, as the command's ``main`` would).
ENTRY_POINTS: dict[tuple[str, ...], str] = {
    ("-m", "headwater", "execute", "flow-run"): "headwater.cli.execute:flow_run_main",
}


class ChildJob:
    """What a forked process runs once it is set up: the command, as the interpreter would."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def run(self) -> None:
        """Run ``-m MODULE ARGS`` or ``SCRIPT ARGS`` as ``__main__`` (its ``SystemExit`` or uncaught
        exception is :func:`finish`'s to turn into the exit code)."""
        import runpy

        entry = ENTRY_POINTS.get(tuple(self.argv))
        if entry is not None:
            module, _, function = entry.partition(":")
            spec = importlib.util.find_spec(f"{self.argv[1]}.__main__")
            sys.argv = [spec.origin if spec is not None and spec.origin else self.argv[1], *self.argv[2:]]
            sys.exit(getattr(importlib.import_module(module), function)())
        if self.argv[0] == "-m":
            sys.argv = [self.argv[1], *self.argv[2:]]
            runpy.run_module(self.argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(self.argv)
            runpy.run_path(self.argv[0], run_name="__main__")


class Zygote:
    """The serving loop: spawn requests on the socket, process exits on SIGCHLD."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.wake_r, self.wake_w = os.pipe()
        self.base_path: list[str] = []

    def prepare(self, extra: list[str]) -> None:
        """Import the flow-run path; raise if that left a thread running (forking would be unsafe)."""
        began = time.monotonic()
        startup_path = list(sys.path)
        for name in (*PRELOAD, *extra):
            importlib.import_module(name)
        for target, args in WARM_UP:
            module, _, function = target.partition(":")
            getattr(importlib.import_module(module), function)(*args)
        threads = _thread_count()
        if threads != 1 or threading.active_count() != 1:
            names = [t.name for t in threading.enumerate()]
            raise RuntimeError(
                f"importing {', '.join(extra) or 'the flow-run path'} started threads ({threads} in the "
                f"process: {names}); a process with threads can't be forked safely. Remove the module from "
                "agent.warm_preload, or start runs cold (--no-warm)"
            )
        gc.collect()
        gc.freeze()  # the imported objects: a collection in a forked run then won't touch (and copy) their pages
        # sys.path less what this process's start added (its cwd, its PYTHONPATH): each run gets its own
        own = {os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
        self.base_path = [p for p in startup_path[1:] if os.path.abspath(p) not in own]
        self.send({"op": "ready", "pid": os.getpid(), "seconds": round(time.monotonic() - began, 3),
                   "modules": len(sys.modules)})  # fmt: skip

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the agent is gone: the loop ends at its next read
            self.sock.send(json.dumps(message).encode())

    def serve(self) -> ChildJob | None:
        """Serve until the agent closes the socket (None); in a forked process, its job."""
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup fd hears of it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent decides when this process ends
        while True:
            readable, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
            self.reap()
            if self.sock.fileno() in readable:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 3)
                except OSError:
                    return None
                if not data:
                    for fd in fds:
                        os.close(fd)
                    return None  # the agent closed its end
                job = self.spawn(json.loads(data), fds)
                if job is not None:
                    return job

    def reap(self) -> None:
        """Report every ended process: its pid and exit code (negative: the signal that ended it)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"op": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def spawn(self, request: dict[str, Any], fds: list[int]) -> ChildJob | None:
        """Fork the run's process; in the parent answer started/failed and return None, in the child its job."""
        request_id = request.get("id")
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            self.send({"op": "failed", "id": request_id, "error": f"a spawn needs 3 descriptors, got {len(fds)}"})
            return None
        ready_r, ready_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(ready_r)
            os.close(ready_w)
            for fd in fds:
                os.close(fd)
            self.send({"op": "failed", "id": request_id, "error": f"fork failed: {exc}"})
            return None
        if pid == 0:  # the run's process
            os.close(ready_r)
            try:
                job = self._become(request, fds)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.write(ready_w, f"{type(exc).__name__}: {exc}".encode()[:4000])
                os._exit(EXIT_SETUP_FAILED)
            os.write(ready_w, b"\0")
            os.close(ready_w)
            return job
        os.close(ready_w)
        for fd in fds:
            os.close(fd)
        answer = _read_all(ready_r)
        os.close(ready_r)
        if answer == b"\0":
            self.send({"op": "started", "id": request_id, "pid": pid})
        else:
            why = answer.decode(errors="replace") or "the process ended while it was being set up"
            self.send({"op": "failed", "id": request_id, "pid": pid, "error": why})
        return None

    def _become(self, request: dict[str, Any], fds: list[int]) -> ChildJob:
        """In the forked process: take the run's session, descriptors, cwd, limits, environment."""
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        for name, (soft, hard) in request.get("rlimits", {}).items():
            which = getattr(resource, name)
            if resource.getrlimit(which) != (soft, hard):
                resource.setrlimit(which, (soft, hard))
        if request.get("umask") is not None:
            os.umask(request["umask"])
        env: dict[str, str] = request["env"]
        os.environ.clear()
        os.environ.update(env)
        entries = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        first = request["cwd"] if request["argv"][0] == "-m" else os.path.dirname(os.path.abspath(request["argv"][0]))
        sys.path[:] = [first, *entries, *self.base_path]
        sys.path_importer_cache.clear()
        importlib.invalidate_caches()
        _reopen_stdio(env)
        _forget_settings()
        return ChildJob(list(request["argv"]))


def _reopen_stdio(env: dict[str, str]) -> None:
    """sys.stdin/stdout/stderr on the run's descriptors, buffered as a new interpreter would."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    encoding = env.get("PYTHONIOENCODING") or None

    def text(fd: int, mode: str, errors: str, line: bool) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        buffered: Any = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=line,
                                write_through=unbuffered and mode == "w")  # fmt: skip

    sys.stdin = text(0, "r", "strict", False)
    sys.stdout = text(1, "w", "strict", os.isatty(1))
    sys.stderr = text(2, "w", "backslashreplace", True)
    # what a new interpreter's sys.__stdout__ etc. would be (typeshed calls them final)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr  # type: ignore[misc]


def _forget_settings() -> None:
    """Settings are loaded once per process from its environment: a forked run loads its own."""
    settings = sys.modules.get("headwater.config.settings")
    if settings is not None:
        settings.get_settings.cache_clear()


def _thread_count() -> int:
    """Threads of this process, native ones included (``/proc``); Python's count elsewhere."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    """``FD [MODULE ...]``: serve the agent on socket FD; in a forked run's process, run its command."""
    sock = socket.socket(fileno=int(argv[0]))
    zygote = Zygote(sock)
    try:
        zygote.prepare(argv[1:])
    except BaseException as exc:
        zygote.send({"op": "broken", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    job = zygote.serve()
    if job is None:
        return 0
    os._exit(finish(job))


def finish(job: ChildJob) -> int:
    """Run the job and end as the interpreter would, less tearing down every module.

    Exit code, traceback, non-daemon threads joined, ``atexit`` handlers, streams flushed:
    as ``python`` does. Not the teardown of the modules the zygote imported: that would
    touch (and so copy) every page this process shares with the zygote, for nothing.
    """
    try:
        job.run()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code = -signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # What the interpreter does first at exit: the threading module's exit hooks (which tell a
    # ThreadPoolExecutor's idle workers to end: joined before them, a run with an executor
    # never ended), then a join of every non-daemon thread.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()  # what a normal exit runs: logging.shutdown, the user's handlers
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code == -signal.SIGINT:  # as Python does after an uncaught KeyboardInterrupt: end by the signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    return code & 0xFF


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` gives: None → 0, an int as is, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
