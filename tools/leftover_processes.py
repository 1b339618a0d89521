"""The one check that a test run left no process behind (a server, a browser, a Redis).

A run puts its own marker into its environment before it starts anything; every process it
starts, and every process those start, inherits it, even one that leaves its parent. At the end,
whatever still carries the marker was left behind: `make test` (tools/run_tests.py) checks once
for the whole run, a pytest started by hand checks at its own end (tests/conftest.py).
"""

import os
import time
import uuid

import psutil

RUN_MARKER = "TUTORIAL_TEST_RUN"


def start_run():
    """Marks this process's environment, and so everything it starts; returns the run's id."""
    run_id = uuid.uuid4().hex
    os.environ[RUN_MARKER] = run_id
    return run_id


def marked_processes(run_id):
    """The live processes other than this one that carry the run's marker."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(RUN_MARKER) == run_id:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stop_leftovers(run_id, grace=10):
    """Gives the run's processes `grace` seconds to end, kills the ones still alive and returns
    a description of each of those ("pid command ..."); an empty list means a clean run."""
    deadline = time.monotonic() + grace
    leftovers = marked_processes(run_id)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = marked_processes(run_id)
    described = []
    for process in leftovers:
        described.append(f"{process.pid} {' '.join((process.info['cmdline'] or [])[:4])}")
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return described
