"""The LocalAgent's warm starter: runs forked from a process that imported headwater once.

Real processes throughout: the API server, the agent (in a thread here), its zygote,
and the runs' processes, which run ``warm_standin.py`` (it records what its process
got) or, for the storage test, the real ``python -m headwater execute flow-run``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater import Flow, Parameter, task
from headwater.agent.local import LocalAgent
from headwater.agent.warm import WarmStarter
from headwater.client import Client
from headwater.server.process import ServerProcess

from .helpers import FAST, running, unique, wait_for

STANDIN = [sys.executable, str(Path(__file__).with_name("warm_standin.py"))]


@task
def steps(do: list[str]) -> list[str]:
    return do


@pytest.fixture(scope="module")
def steps_flow(server: ServerProcess) -> str:
    """A flow version with a parameter ``do``: the stand-in's steps for each run."""
    with Flow("warm-steps") as flow:
        steps(Parameter("do", default=[]))
    with Client(server.url) as c:
        c.create_project("warm")
        return c.register_flow_metadata("warm", flow.serialize()).id


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "record"
    path.mkdir()
    return path


def warm_agent(server: ServerProcess, folder: Path, **kwargs: Any) -> LocalAgent:
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("name", unique("warm"))
    kwargs.setdefault("hostname_label", False)
    env_vars = {"WARM_RECORD": str(folder), **kwargs.pop("env_vars", {})}
    agent = LocalAgent(api_url=server.url, env_vars=env_vars, **kwargs)
    agent._command = list(STANDIN)
    return agent


def recorded(folder: Path, run_id: str) -> dict[str, Any]:
    wait_for(lambda: (folder / f"{run_id}.json").exists(), timeout=30, what=f"run {run_id}'s record")
    return json.loads((folder / f"{run_id}.json").read_text())


def zygote_pid(agent: LocalAgent) -> int:
    starter = agent._warm
    assert starter is not None and starter.zygote is not None and starter.ready.is_set(), agent.warm_status
    return starter.zygote.pid


def gone(pid: int) -> bool:
    """The process ended (a zombie left for its parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.fixture
def rlimit_restored() -> Iterator[None]:
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)
    os.umask(umask)


def test_each_warm_run_gets_the_environment_cwd_limits_and_session_the_cold_path_would(
    server: ServerProcess, client: Client, steps_flow: str, folder: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, rlimit_restored: None,
) -> None:  # fmt: skip
    label = unique("label")
    monkeypatch.setenv("WARM_FIRST", "only-for-the-first-run")
    agent = warm_agent(server, folder, labels=[label], import_paths=[str(tmp_path / "imports")])
    with running(agent):
        wait_for(lambda: agent.warm_status == "ready", timeout=60, what="the warm starter")
        zygote = zygote_pid(agent)
        first = client.create_flow_run(steps_flow, labels=[label])
        assert client.wait_for_flow_run(first, timeout=30).state == "Success"

        # the agent's process changes after its zygote started: the next run gets the agent's state now
        monkeypatch.delenv("WARM_FIRST")
        monkeypatch.setenv("WARM_SECOND", "only-for-the-second-run")
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))
        os.umask(0o027)
        second = client.create_flow_run(steps_flow, labels=[label])
        assert client.wait_for_flow_run(second, timeout=30).state == "Success"

    one, two = recorded(folder, first), recorded(folder, second)
    assert one["ppid"] == two["ppid"] == zygote  # forked warm, both
    assert one["env"]["HEADWATER__CONTEXT__FLOW_RUN_ID"] == first
    assert two["env"]["HEADWATER__CONTEXT__FLOW_RUN_ID"] == second
    assert one["env"]["WARM_FIRST"] == "only-for-the-first-run" and "WARM_SECOND" not in one["env"]
    assert two["env"]["WARM_SECOND"] == "only-for-the-second-run" and "WARM_FIRST" not in two["env"]
    assert two["cwd"] == str(tmp_path / "elsewhere") and one["cwd"] != two["cwd"]
    assert two["nofile"] == [soft - 1, hard] and one["nofile"] == [soft, hard]
    assert two["umask"] == 0o027
    for got in (one, two):
        assert got["pid"] == got["pgid"] == got["sid"]  # its own session and process group
        assert got["sys_path"][:2] == [str(Path(STANDIN[1]).parent), str(tmp_path / "imports")]
        assert got["argv"] == STANDIN[1:]
        assert got["stdin_is_devnull"]


def test_a_crashing_run_affects_neither_the_other_runs_nor_the_zygote(
    server: ServerProcess, client: Client, steps_flow: str, folder: Path
) -> None:
    label = unique("label")
    agent = warm_agent(server, folder, labels=[label])
    crashes = {"exit:1": "code 1", f"kill:{int(signal.SIGKILL)}": "code -9 (killed by SIGKILL)",
               "segv": "code -11 (killed by SIGSEGV)"}  # fmt: skip
    with running(agent):
        wait_for(lambda: agent.warm_status == "ready", timeout=60, what="the warm starter")
        zygote = zygote_pid(agent)
        survivor = client.create_flow_run(
            steps_flow, labels=[label], parameters={"do": [f"wait:crashing-{i}" for i in range(3)] + ["sleep:0.5"]}
        )
        crashed = [
            client.create_flow_run(steps_flow, labels=[label], parameters={"do": [f"touch:crashing-{i}", how]})
            for i, how in enumerate(crashes)
        ]
        assert client.wait_for_flow_run(survivor, timeout=60).state == "Success"
        for run_id, expected in zip(crashed, crashes.values(), strict=True):
            run = client.wait_for_flow_run(run_id, timeout=30)
            assert run.state == "Failed" and f"the flow-run process exited with {expected}" in (run.state_message or "")
        assert zygote_pid(agent) == zygote and agent._warm is not None and agent._warm.zygote is not None
        assert agent._warm.zygote.poll() is None
        after = client.create_flow_run(steps_flow, labels=[label])
        assert client.wait_for_flow_run(after, timeout=30).state == "Success"
    assert recorded(folder, after)["ppid"] == zygote


def test_a_cancelled_warm_run_has_its_process_group_stopped(
    server: ServerProcess, client: Client, steps_flow: str, folder: Path
) -> None:
    label = unique("label")
    settings = FAST.model_copy(update={"cancel_grace": 0.0})
    agent = warm_agent(server, folder, labels=[label], settings=settings)
    with running(agent):
        wait_for(lambda: agent.warm_status == "ready", timeout=60, what="the warm starter")
        run_id = client.create_flow_run(steps_flow, labels=[label], parameters={"do": ["grandchild:gc", "sleep:60"]})
        wait_for(lambda: (folder / "gc").exists() and (folder / "gc").read_text(), timeout=30, what="the grandchild")
        pid, grandchild = recorded(folder, run_id)["pid"], int((folder / "gc").read_text())
        client.cancel_flow_run(run_id)
        run = client.wait_for_flow_run(run_id, timeout=30)
    assert run.state == "Cancelled"
    assert "was stopped by agent" in (run.state_message or "") and "SIGTERM" in (run.state_message or "")
    wait_for(lambda: gone(pid) and gone(grandchild), timeout=10, what="the run's process group to end")


def test_a_warm_run_ends_with_a_thread_pool_left_open_after_its_threads_finish(
    server: ServerProcess, client: Client, steps_flow: str, folder: Path
) -> None:
    # As the interpreter does at exit: the threading module's exit hooks end an idle executor's
    # workers, and non-daemon threads are joined (their work done) before the process ends.
    label = unique("label")
    agent = warm_agent(server, folder, labels=[label])
    with running(agent):
        wait_for(lambda: agent.warm_status == "ready", timeout=60, what="the warm starter")
        run_id = client.create_flow_run(steps_flow, labels=[label], parameters={"do": ["pool:joined"]})
        assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
        pid = recorded(folder, run_id)["pid"]
        wait_for(lambda: gone(pid), timeout=30, what="the run's process to end")
    assert (folder / "joined").exists()


def test_a_killed_zygote_is_replaced_and_runs_still_start(
    server: ServerProcess, client: Client, steps_flow: str, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "headwater.agent")
    label = unique("label")
    agent = warm_agent(server, folder, labels=[label])
    with running(agent):
        wait_for(lambda: agent.warm_status == "ready", timeout=60, what="the warm starter")
        old = zygote_pid(agent)
        in_flight = client.create_flow_run(steps_flow, labels=[label], parameters={"do": ["touch:up", "wait:go"]})
        wait_for(lambda: (folder / "up").exists(), timeout=30, what="the first run")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: agent._warm is None or agent._warm.zygote is None or agent._warm.zygote.pid != old
                 or agent._warm.lost, timeout=10, what="the agent to see its zygote gone")  # fmt: skip
        next_run = client.create_flow_run(steps_flow, labels=[label])
        assert client.wait_for_flow_run(next_run, timeout=60).state == "Success"
        (folder / "go").touch()  # the run started by the dead zygote goes on and ends by itself
        assert client.wait_for_flow_run(in_flight, timeout=30).state == "Success"
        wait_for(lambda: agent.warm_status == "ready" and zygote_pid(agent) != old, timeout=60,
                 what="a new warm starter")  # fmt: skip
        new = zygote_pid(agent)
        last = client.create_flow_run(steps_flow, labels=[label])
        assert client.wait_for_flow_run(last, timeout=30).state == "Success"
        wait_for(lambda: in_flight not in agent.deployed_flow_run_ids(), timeout=10, what="the orphan reaped")
    assert recorded(folder, last)["ppid"] == new
    assert "its warm starter ended" in caplog.text


def test_without_warm_each_run_is_a_child_of_the_agent(
    server: ServerProcess, client: Client, steps_flow: str, folder: Path
) -> None:
    label = unique("label")
    agent = warm_agent(server, folder, labels=[label], warm=False)
    with running(agent):
        run_id = client.create_flow_run(steps_flow, labels=[label])
        assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
        assert agent.warm_status == "off" and agent._warm is None
    assert recorded(folder, run_id)["ppid"] == os.getpid()


def test_the_setting_and_the_flag_turn_warm_off(server: ServerProcess) -> None:
    assert LocalAgent(api_url=server.url).warm is True
    assert LocalAgent(api_url=server.url, settings=FAST.model_copy(update={"warm_start": False})).warm is False
    from headwater.cli.main import build_parser

    argv = ["agent", "local", "start", "--no-warm"]
    assert build_parser(argv).parse_args(argv).warm is False
    argv = ["agent", "local", "start"]
    assert build_parser(argv).parse_args(argv).warm is None  # then the setting decides


def test_a_preload_that_starts_a_thread_is_refused_with_a_reason(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    (tmp_path / "threaded_mod.py").write_text("import threading, time\nthreading.Thread(target=time.sleep, "
                                              "args=(30,), daemon=True).start()\n")  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    starter = WarmStarter(["threaded_mod"]).start()
    try:
        assert not starter.wait_ready(60)
        assert starter.lost and "started threads" in (starter.error or "") and "--no-warm" in (starter.error or "")
    finally:
        starter.close()


FLOW_SCRIPT = """
import os
from headwater import Flow, task
from headwater.environments import LocalEnvironment
import warm_helper

@task
def mark():
    with open(os.path.join({folder!r}, os.environ["HEADWATER__CONTEXT__FLOW_RUN_ID"]), "w") as f:
        f.write({version!r} + " " + warm_helper.VERSION + " " + str(os.getppid()))

with Flow("warm-script", environment=LocalEnvironment(labels=[{label!r}])) as flow:
    mark()
"""


def test_a_flow_changed_in_storage_is_what_the_next_warm_run_runs(
    server: ServerProcess, client: Client, folder: Path, tmp_path: Path
) -> None:
    """The zygote imports headwater, never a flow: each run loads its flow (and the modules it imports) afresh."""
    from headwater.storage import Local

    label = unique("label")
    code, imports = tmp_path / "flows", tmp_path / "imports"
    code.mkdir()
    imports.mkdir()
    script = code / "warm_flow.py"

    def write(version: str) -> None:
        script.write_text(FLOW_SCRIPT.format(folder=str(folder), version=version, label=label))
        (imports / "warm_helper.py").write_text(f"VERSION = {version!r}\n")
        time.sleep(0.01)

    write("v1")  # then "v2-changed": another size, so no cached bytecode of the first can pass for it
    sys.path.insert(0, str(imports))
    try:
        from headwater.storage.script import extract_flow_from_file

        flow = extract_flow_from_file(path=str(script))
        flow.storage = Local(path=str(script), stored_as_script=True, add_default_labels=False)
        project = unique("project")
        client.create_project(project)
        flow_id = client.register(flow, project)
    finally:
        sys.path.remove(str(imports))
        sys.modules.pop("warm_helper", None)
    agent = LocalAgent(api_url=server.url, labels=[label], settings=FAST, name=unique("warm"), hostname_label=False,
                       import_paths=[str(imports)])  # fmt: skip
    with running(agent):
        wait_for(lambda: agent.warm_status == "ready", timeout=60, what="the warm starter")
        zygote = zygote_pid(agent)
        first = client.create_flow_run(flow_id)
        assert client.wait_for_flow_run(first, timeout=60).state == "Success", client.get_flow_run(first)
        write("v2-changed")
        second = client.create_flow_run(flow_id)
        assert client.wait_for_flow_run(second, timeout=60).state == "Success", client.get_flow_run(second)
    assert (folder / first).read_text() == f"v1 v1 {zygote}"
    assert (folder / second).read_text() == f"v2-changed v2-changed {zygote}"


def test_the_command_line_agent_runs_flows_warm_and_cold(server: ServerProcess, client: Client, flow_id: str,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """``headwater agent local start`` with and without ``--no-warm``: each starts the real flow-run entry point."""
    for flag in ([], ["--no-warm"]):
        label = unique("label")
        env = {**os.environ, "HEADWATER__API__URL": server.url, "HEADWATER__AGENT__CLAIM_WAIT": "1"}
        command = [sys.executable, "-m", "headwater", "agent", "local", "start", "-l", label, "--no-hostname-label",
                   "--name", unique("cli-warm"), "--max-polls", "50", *flag]  # fmt: skip
        log = tmp_path / f"agent{len(flag)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            run_id = client.create_flow_run(flow_id, labels=[label])
            run = client.wait_for_flow_run(run_id, timeout=90)
            assert run.state == "Failed"  # the real entry point: the agents' test flow has no storage
            assert "no storage spec" in (run.state_message or "") or "storage" in (run.state_message or "")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        text = log.read_text()
        assert ("forked from the warm starter" in text) == (not flag), text[-3000:]
        assert ("started cold" in text) == bool(flag), text[-3000:]


def test_an_agent_whose_warm_starter_cannot_start_runs_cold(
    server: ServerProcess, client: Client, steps_flow: str, folder: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, "headwater.agent")
    (tmp_path / "threaded_mod.py").write_text("import threading, time\nthreading.Thread(target=time.sleep, "
                                              "args=(30,), daemon=True).start()\n")  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    label = unique("label")
    settings = FAST.model_copy(update={"warm_preload": ["threaded_mod"]})
    agent = warm_agent(server, folder, labels=[label], settings=settings)
    with running(agent):
        runs = [client.create_flow_run(steps_flow, labels=[label]) for _ in range(2)]
        for run_id in runs:
            assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
    assert [recorded(folder, run_id)["ppid"] for run_id in runs] == [os.getpid()] * 2  # cold: the agent's children
    assert "started threads" in caplog.text and "starts runs cold from now on" in caplog.text
    assert caplog.text.count("starts runs cold from now on") == 1
