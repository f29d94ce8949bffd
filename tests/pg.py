"""A throwaway PostgreSQL cluster for the tests: initdb into a temp folder, start on a free port.

The fixtures that use it (``postgres_cluster``, ``postgres_url``) are at the end of
``tests/conftest.py``; ``scripts/ensure-system-deps.sh`` installs the server binaries.

As root (CI, this machine) initdb and the server run as the ``postgres`` OS user, since
PostgreSQL refuses to run as root; as anyone else they run as that user. The cluster is
tuned for tests, not durability: trust authentication, no fsync, no synchronous commit.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "run `bash scripts/ensure-system-deps.sh` as root (it installs Debian's `postgresql`)"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def find_bin_dir(pattern: str = PG_BIN_GLOB, path: str | None = None) -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: the highest version matching ``pattern``, else on PATH."""

    def version(folder: str) -> tuple[int, ...]:
        # /usr/lib/postgresql/<version>/bin; "9.6" < "15" < "16"
        return tuple(int(part) for part in re.findall(r"\d+", Path(folder).parent.name))

    for folder in sorted(glob.glob(pattern), key=version, reverse=True):
        if _has_tools(Path(folder)):
            return Path(folder)
    initdb = shutil.which("initdb", path=path)
    if initdb and _has_tools(Path(initdb).parent):
        return Path(initdb).parent
    return None


def _has_tools(folder: Path) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl"))


def _as_postgres_user() -> list[str] | None:
    """The command prefix that runs a command as the ``postgres`` user; None if there is none."""
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", "postgres", "--"]
    if su := shutil.which("su"):
        return [su, "postgres", "-s", "/bin/sh", "-c"]  # the command follows as one quoted string
    return None


def postgres_available() -> tuple[bool, str]:
    """Whether a cluster can be started here, and why not (or where the binaries are)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return False, f"no PostgreSQL server (initdb, pg_ctl) in {PG_BIN_GLOB} or on PATH; {INSTALL_HINT}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False, f"running as root but there is no `postgres` OS user to run {bin_dir}/initdb as"
        if _as_postgres_user() is None:
            return False, "running as root but neither `runuser` nor `su` exists to run PostgreSQL as `postgres`"
    return True, f"PostgreSQL server binaries in {bin_dir}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One PostgreSQL server on 127.0.0.1 in a temp folder: ``start()``, ``create_database()``, ``stop()``.

    Also a context manager. Everything lives in one folder (data, socket, log), removed by
    ``stop()``; a cluster still running when the interpreter exits is stopped then.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise RuntimeError(f"no PostgreSQL server binaries in {PG_BIN_GLOB} or on PATH; {INSTALL_HINT}")
        self.bin_dir = found
        self.port = 0
        self.folder: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self._folder / "data"

    @property
    def log_file(self) -> Path:
        return self._folder / "postgres.log"

    @property
    def _folder(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the PostgreSQL cluster is not started")
        return self.folder

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, attempts: int = 3) -> PostgresCluster:
        """initdb and start the server; retries on a new port if the free one was taken meanwhile."""
        root = os.geteuid() == 0
        # As root, /tmp explicitly: $TMPDIR may be a folder the postgres user can't reach.
        self.folder = Path(tempfile.mkdtemp(prefix="headwater-pg-", dir="/tmp" if root else None))
        if root:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.folder, postgres.pw_uid, postgres.pw_gid)
        atexit.register(self.stop)
        try:
            self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8", "--locale=C")
            for attempt in range(1, attempts + 1):
                if self._start_server(may_retry=attempt < attempts):
                    return self
        except BaseException:
            self.stop()
            raise
        raise AssertionError("the last attempt raises instead of returning False")

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name`` and return its URL, ``postgresql://postgres@127.0.0.1:<port>/<name>``."""
        import psycopg

        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must be lower-case letters, digits and _ (max 63)")
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still open to it."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server at once (no checkpoint) and remove its folder. Safe to call twice."""
        atexit.unregister(self.stop)
        if self.folder is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> PostgresCluster:
        return self if self.folder else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_server(self, may_retry: bool) -> bool:
        """Start on a free port: True when up, False (if ``may_retry``) when another process took it first."""
        self.port = free_port()
        options = (f"-h 127.0.0.1 -p {self.port} -k {self._folder} -F -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        log_size = self.log_file.stat().st_size if self.log_file.exists() else 0
        try:
            self._run("pg_ctl", "-w", "-t", "60", "-D", str(self.data_dir), "-o", options,
                      "-l", str(self.log_file), "start")
        except RuntimeError:
            if may_retry and "could not bind" in self._log()[log_size:]:
                return False
            raise
        return True

    def _log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        argv = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            prefix = _as_postgres_user()
            if prefix is None:
                raise RuntimeError("running as root but neither `runuser` nor `su` exists to run PostgreSQL")
            argv = [*prefix, shlex.join(argv)] if prefix[-1] == "-c" else [*prefix, *argv]
        env = dict(os.environ, LC_ALL="C")
        started = time.monotonic()
        done = subprocess.run(argv, cwd=self._folder, env=env, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL `{tool}` failed (exit {done.returncode}, {time.monotonic() - started:.1f} s): "
                f"{shlex.join(argv)}\n--- output ---\n{done.stdout}{done.stderr}"
                f"--- {self.log_file} ---\n{self._log()}"
            )
