"""The PostgreSQL test infrastructure: ``postgres_cluster`` / ``postgres_url`` (tests/conftest.py,
tests/pg.py) give a real server, and ``scripts/ensure-system-deps.sh`` detects a missing one.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from pg import PostgresCluster, find_bin_dir

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[test]'")

SCRIPT = Path(__file__).parent.parent / "scripts" / "ensure-system-deps.sh"


def test_url_names_a_database_of_its_own(postgres_url: str, postgres_cluster: PostgresCluster) -> None:
    assert postgres_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/test_")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (postgres_url.rsplit("/", 1)[1],)
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)


def test_psycopg_table_round_trip(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE runs (id serial PRIMARY KEY, name text NOT NULL, labels jsonb)")
        conn.execute("INSERT INTO runs (name, labels) VALUES (%s, %s), (%s, %s)",
                     ("etl", '["a"]', "ml", '["b", "c"]'))
    with psycopg.connect(postgres_url) as conn:  # committed: a new connection sees it
        rows = conn.execute("SELECT name, jsonb_array_length(labels) FROM runs ORDER BY id").fetchall()
    assert rows == [("etl", 1), ("ml", 2)]


def test_two_threads_hold_connections_at_once(postgres_url: str) -> None:
    # Thread A takes a row lock and waits; thread B must find the row locked (SKIP LOCKED sees
    # nothing), which only happens if both sessions are open on the server at the same time.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE queue (id int PRIMARY KEY)")
        conn.execute("INSERT INTO queue VALUES (1)")
    a_locked, b_done = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}
    errors: list[BaseException] = []

    def a() -> None:
        try:
            with psycopg.connect(postgres_url) as conn:
                seen["a"] = conn.execute("SELECT id FROM queue FOR UPDATE").fetchall()
                seen["pid_a"] = conn.info.backend_pid
                a_locked.set()
                assert b_done.wait(30)
        except BaseException as error:
            errors.append(error)
            a_locked.set()

    def b() -> None:
        try:
            assert a_locked.wait(30)
            with psycopg.connect(postgres_url) as conn:
                seen["b"] = conn.execute("SELECT id FROM queue FOR UPDATE SKIP LOCKED").fetchall()
                seen["pid_b"] = conn.info.backend_pid
        except BaseException as error:
            errors.append(error)
        finally:
            b_done.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert seen["a"] == [(1,)]
    assert seen["b"] == []
    assert seen["pid_a"] != seen["pid_b"]


def test_sqlalchemy_with_the_psycopg_driver(postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        metadata = sa.MetaData()
        flows = sa.Table("flows", metadata, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("name", sa.String(50), nullable=False))
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(flows), [{"name": "etl"}, {"name": "ml"}])
        with engine.connect() as conn:
            assert conn.execute(sa.select(flows.c.name).order_by(flows.c.id)).scalars().all() == ["etl", "ml"]
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    finally:
        engine.dispose()


def test_databases_are_isolated(postgres_url: str, postgres_cluster: PostgresCluster) -> None:
    other_url = postgres_cluster.create_database("isolation_check")
    try:
        assert other_url != postgres_url
        with psycopg.connect(postgres_url) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
        with psycopg.connect(other_url) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
            conn.execute("CREATE TABLE only_here (x text)")  # the same name is free there
    finally:
        postgres_cluster.drop_database("isolation_check")


# --- finding the binaries (no server needed) ------------------------------------------------


def _fake_bin(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for tool in ("initdb", "pg_ctl"):
        (folder / tool).write_text("#!/bin/sh\n")
        (folder / tool).chmod(0o755)
    return folder


def test_find_bin_dir_prefers_the_highest_version_then_path(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16"):
        _fake_bin(tmp_path / "lib" / version / "bin")
    (tmp_path / "lib" / "17" / "bin").mkdir(parents=True)  # a version without initdb doesn't count
    on_path = _fake_bin(tmp_path / "path")
    assert find_bin_dir(str(tmp_path / "lib" / "*" / "bin"), path=str(on_path)) == tmp_path / "lib" / "16" / "bin"
    assert find_bin_dir(str(tmp_path / "none" / "*" / "bin"), path=str(on_path)) == on_path
    assert find_bin_dir(str(tmp_path / "none" / "*" / "bin"), path=str(tmp_path)) is None


def _script(code: str, glob: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Source the script (which then only defines functions) and run ``code`` with a fake PATH and glob."""
    env = dict(os.environ, PG_BIN_GLOB=glob, PATH=str(path))
    return subprocess.run(["/bin/bash", "-c", f'source "{SCRIPT}"; {code}'], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_script_detects_postgresql_under_the_glob_or_on_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    check = "have_postgresql && echo found || echo absent"
    assert _script(check, str(tmp_path / "none" / "*" / "bin"), empty).stdout == "absent\n"
    _fake_bin(tmp_path / "lib" / "15" / "bin")
    assert _script(check, str(tmp_path / "lib" / "*" / "bin"), empty).stdout == "found\n"
    assert _script(check, str(tmp_path / "none" / "*" / "bin"), _fake_bin(tmp_path / "path")).stdout == "found\n"


def test_the_script_installs_only_what_is_missing(tmp_path: Path) -> None:
    # apt_install is replaced, so this never touches apt.
    fake_apt = 'apt_install() { echo "install $*"; }; '
    _fake_bin(tmp_path / "lib" / "15" / "bin")
    # only the PostgreSQL step: main's other components (git, Docker, ...) would need the real PATH
    present = _script(fake_apt + "ensure_postgresql", str(tmp_path / "lib" / "*" / "bin"), tmp_path)
    assert (present.returncode, present.stdout, present.stderr) == (0, "", "")
    missing = _script(fake_apt + "ensure_postgresql", str(tmp_path / "none" / "*" / "bin"), tmp_path)
    assert missing.stdout == "install postgresql\n"
    assert missing.returncode != 0  # still absent after the "install": said loudly
    assert "still found no initdb" in missing.stderr


def test_the_script_is_quiet_and_quick_here() -> None:
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed here, so the script would install it")
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=5, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
