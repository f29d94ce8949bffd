"""The LocalAgent's warm starter: runs start as forks of a process that has imported headwater already.

A fresh ``python -m headwater execute flow-run`` spends ≈ 400 ms starting Python and
importing before it reads its run. :class:`WarmStarter` keeps one process, the
zygote (its own half is ``zygote.py``), that did those imports once; each run's
process is forked from it and given what the cold path's ``Popen`` gives one (own
session, environment, working directory, resource limits, umask, stdin/stdout/stderr),
then runs the same command. The agent sees it as a :class:`WarmProcess`: a pid
whose process group it signals, and an exit code the zygote reports.

If the zygote dies, its running runs go on (they are processes of their own): the
agent watches them by pid, though their exit codes are then unknown
(:data:`UNKNOWN_EXIT`); a new zygote is started and runs start cold until it is ready.
The LocalAgent (``local.py``) decides when to use it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from headwater.agent.zygote import MAX_MESSAGE

logger = logging.getLogger("headwater.agent")

#: The exit code of a run whose process ended after its zygote did: no one could learn the real one.
UNKNOWN_EXIT = -256
#: Seconds a spawn waits for the zygote's answer before giving up on it (the LocalAgent then stops it).
SPAWN_TIMEOUT = 30.0


class WarmUnavailable(Exception):
    """The warm starter can't start this run (not ready, gone, or the fork's set-up failed): start it cold."""


class WarmTimeout(Exception):
    """The warm starter did not answer a spawn in time: whether it started the process is unknown."""


class WarmProcess:
    """A run's process forked by the zygote, with the part of ``subprocess.Popen`` the agent uses."""

    def __init__(self, starter: WarmStarter, pid: int, argv: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(argv)
        self.returncode: int | None = None
        self._starter = starter
        self._ended = threading.Event()
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # Linux ≥ 5.3: a handle no reused pid can fool
            self._pidfd = os.pidfd_open(pid)

    def __repr__(self) -> str:
        return f"<WarmProcess {self.pid} returncode={self.returncode}>"

    def poll(self) -> int | None:
        """The exit code once the process ended, else None."""
        if self.returncode is None and self._starter.lost:
            self._check_orphan()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit code. Raises ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.poll() is not None:
                assert self.returncode is not None
                return self.returncode
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._ended.wait(left)

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _exited(self, code: int) -> None:
        self.returncode = code
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._ended.set()

    def _check_orphan(self) -> None:
        """The zygote is gone: the process is watched by its pid; it ended with an exit code no one saw."""
        if self._pidfd is not None:
            ended = bool(select.select([self._pidfd], [], [], 0)[0])
        else:
            try:
                os.kill(self.pid, 0)
                ended = False
            except ProcessLookupError:
                ended = True
            except PermissionError:
                ended = False
        if ended:
            self._exited(UNKNOWN_EXIT)


class WarmStarter:
    """One zygote process and the socket to it; :meth:`spawn` starts a run's process from it.

    Args:
        preload: modules the zygote imports beyond the flow-run path (``agent.warm_preload``).
        on_exit: called (in the reader thread) whenever one of its processes ends.
    """

    def __init__(self, preload: Sequence[str] = (), on_exit: Callable[[], None] | None = None) -> None:
        self.preload = list(preload)
        self.on_exit = on_exit
        self.lost = False  # the zygote ended (or never became ready): its processes are watched by pid
        self.error: str | None = None  # why it is lost, when it said
        self.ready = threading.Event()
        self.retired = False  # the agent let go of it (it ended, or can't start)
        self.zygote: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._processes: dict[int, WarmProcess] = {}
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def status(self) -> str:
        """``starting``, ``ready`` or ``lost``."""
        return "lost" if self.lost else "ready" if self.ready.is_set() else "starting"

    def start(self) -> WarmStarter:
        """Start the zygote (``python -m headwater.agent.zygote``); :meth:`wait_ready` waits for its imports."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.zygote = subprocess.Popen(
                [sys.executable, "-m", "headwater.agent.zygote", str(theirs.fileno()), *self.preload],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the agent's terminal is the agent's to handle
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._reader = threading.Thread(target=self._read, name="headwater-warm-starter", daemon=True)
        self._reader.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Whether the zygote is ready (its imports done) within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.lost or time.monotonic() > deadline:
                return False
        return not self.lost

    def spawn(self, argv: Sequence[str], env: dict[str, str], stdio: Sequence[int]) -> WarmProcess:
        """Fork the run's process from the zygote and run ``python ARGV`` there with ``env``.

        It gets this process's working directory, resource limits and umask as they are now,
        and ``stdio`` (three descriptors) as its stdin, stdout and stderr.

        Raises:
            WarmUnavailable: the zygote is not ready or gone, or the fork's set-up failed: nothing was started.
            WarmTimeout: the zygote did not answer within ``SPAWN_TIMEOUT`` s.
        """
        if self.lost or not self.ready.is_set() or self._sock is None:
            raise WarmUnavailable(f"the warm starter is {self.status}" + (f" ({self.error})" if self.error else ""))
        try:
            cwd = os.getcwd()
        except OSError as exc:
            raise WarmUnavailable(f"this process's working directory is gone ({exc})") from None
        request_id = next(self._ids)
        request = {"op": "spawn", "id": request_id, "argv": list(argv), "env": env, "cwd": cwd,
                   "rlimits": _rlimits(), "umask": _umask()}  # fmt: skip
        data = json.dumps(request).encode()
        if len(data) > MAX_MESSAGE:
            raise WarmUnavailable(f"the run's environment is too large to pass ({len(data)} bytes)")
        answered = threading.Event()
        box: list[dict[str, Any]] = []
        with self._lock:
            self._pending[request_id] = (answered, box)
        try:
            with self._send_lock:
                socket.send_fds(self._sock, [data], list(stdio))
            if not answered.wait(SPAWN_TIMEOUT):
                raise WarmTimeout(f"the warm starter did not answer within {SPAWN_TIMEOUT:g}s")
        except OSError as exc:
            raise WarmUnavailable(f"the warm starter can't be reached ({exc})") from None
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        answer = box[0] if box else {"op": "failed", "error": "the warm starter ended"}
        if answer["op"] != "started":
            raise WarmUnavailable(f"the warm starter could not start the process: {answer.get('error')}")
        process = answer["process"]
        assert isinstance(process, WarmProcess)
        process.args = list(argv)
        return process

    def kill(self) -> None:
        """Kill the zygote (it stopped answering); the processes it started go on."""
        if self.zygote is not None and self.zygote.poll() is None:
            self.zygote.kill()

    def close(self, timeout: float = 5.0) -> None:
        """Close the socket (the zygote then ends; runs it started go on) and wait up to ``timeout`` s for it."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self.zygote is not None:
            try:
                self.zygote.wait(timeout)
            except subprocess.TimeoutExpired:
                self.zygote.kill()
                self.zygote.wait()
        if self._reader is not None:
            self._reader.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- the reader thread ------------------------------------------------------------------

    def _read(self) -> None:
        """Take the zygote's messages until its socket closes; then it is lost."""
        assert self._sock is not None
        sock = self._sock
        try:
            while True:
                try:
                    data = sock.recv(MAX_MESSAGE)
                except OSError:
                    break
                if not data:
                    break
                try:
                    self._dispatch(json.loads(data))
                except Exception:
                    logger.exception("the warm starter's message could not be handled: %r", data[:200])
        finally:
            with self._lock:
                self.lost = True
                pending = list(self._pending.values())
            for answered, _box in pending:
                answered.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready":
            logger.info("the warm starter (process %s) is ready: %s modules imported in %.2fs",
                        message.get("pid"), message.get("modules"), message.get("seconds", 0.0))  # fmt: skip
            self.ready.set()
        elif op == "broken":
            self.error = str(message.get("error"))
            logger.warning("the warm starter can't start runs: %s", self.error)
        elif op in ("started", "failed"):
            if op == "started":  # known before its exit can be reported: the zygote sends in order
                started = WarmProcess(self, int(message["pid"]), ())
                with self._lock:
                    self._processes[started.pid] = started
                message = {**message, "process": started}
            with self._lock:
                waiter = self._pending.get(message.get("id", -1))
            if waiter is not None:
                waiter[1].append(message)
                waiter[0].set()
        elif op == "exit":
            with self._lock:
                ended = self._processes.pop(int(message["pid"]), None)
            if ended is not None:
                ended._exited(int(message["code"]))
                if self.on_exit is not None:
                    self.on_exit()


def _rlimits() -> dict[str, tuple[int, int]]:
    """This process's resource limits by name (``RLIMIT_NOFILE`` …), as the cold path's child inherits them."""
    limits = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            with contextlib.suppress(ValueError, OSError):
                limits[name] = resource.getrlimit(getattr(resource, name))
    return limits


def _umask() -> int | None:
    """This process's umask, read without changing it (Linux ``/proc``); None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return None
