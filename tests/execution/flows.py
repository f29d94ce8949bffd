"""Flow sources the execution tests write to script files (so they are pickled by value)."""

ETL = """
import logging
from headwater import Flow, Parameter, task

log = logging.getLogger("etl.tasks")
calls = {"flaky": 0}

@task
def extract(x):
    log.info("extracted %d rows", x)
    return list(range(x))

@task(max_retries=1)
def flaky(rows):
    calls["flaky"] += 1
    if calls["flaky"] == 1:
        raise ConnectionError("first try fails")
    return rows

@task
def load(rows):
    log.info("loaded %d rows", len(rows))
    return len(rows)

with Flow("etl") as flow:
    load(flaky(extract(Parameter("x", default=3))))
"""

FAILING = """
from headwater import Flow, task

@task
def extract():
    return [1, 2, 3]

@task
def transform(rows):
    raise ValueError("bad row 7")

@task
def load(rows):
    return len(rows)

with Flow("failing") as flow:
    load(transform(extract()))
"""

#: Six tasks in a chain, each sleeping; each logs when it ran.
SLOW_CHAIN = """
import logging
import time
from headwater import Flow, task

log = logging.getLogger("slow")

@task
def step(previous=None, seconds=0.5):
    time.sleep(seconds)
    log.info("step done")
    return (previous or 0) + 1

with Flow("slow") as flow:
    last = None
    for _ in range(6):
        last = step(last) if last is not None else step()
"""

SHORT = """
import time
from headwater import Flow, task

@task
def wait():
    time.sleep(0.6)
    return 1

with Flow("short") as flow:
    wait()
"""

#: Tasks run in worker processes: reports and logs come from there.
PROCESSES = """
import logging
from headwater import Flow, task
from headwater.environments import LocalEnvironment
from headwater.executors import LocalDaskExecutor

@task
def square(x):
    logging.getLogger("workers").info("squared %d in a worker", x)
    return x * x

@task
def total(values):
    return sum(values)

environment = LocalEnvironment(executor=LocalDaskExecutor(scheduler="processes", num_workers=2))
with Flow("processes", environment=environment) as flow:
    total([square(1), square(2), square(3)])
"""

#: Reads the secret its storage names, and logs only its length.
SECRETIVE = """
import logging
from headwater import Flow, task
from headwater.engine.context import current_flow_run

@task
def use_secret():
    secret = current_flow_run().extra["secrets"]["S3_TOKEN"]
    logging.getLogger("secretive").info("secret has %d characters: %r", len(secret.get_secret_value()), secret)

with Flow("secretive") as flow:
    use_secret()
"""

#: An environment whose execute() hands the run to a "second hop" (here: nothing; the test starts it).
HANDS_OFF = """
from headwater import Flow, task
from headwater.environments import Environment

class HandsOff(Environment):
    def setup(self, flow):
        print("setup ran")

    def execute(self, flow):
        print("second hop started")
        return None

@task
def work():
    return 42

with Flow("hop", environment=HandsOff()) as flow:
    work()
"""

DOCUMENTED_ENVIRONMENT = """
import os
from headwater import Flow, Parameter, task
from headwater.environments import Environment

RECORD = {record!r}


def note(what):
    with open(RECORD, "a") as out:
        out.write(what + "\\n")


class Documented(Environment):
    \"\"\"A custom environment written as the documentation shows: the flow is the only argument.\"\"\"

    def setup(self, flow):
        note("setup")

    def execute(self, flow):
        note("execute")
        self.run(flow)  # returns nothing, as the documented execute() does

    def run(self, flow):
        note("run")
        return super().run(flow)


@task
def double(x):
    note(f"double {{x}}")
    return 2 * x


env = Documented(on_start=lambda: note("on_start"), on_exit=lambda: note("on_exit"))
with Flow("documented", environment=env) as flow:
    double(Parameter("x", default=1))
"""
