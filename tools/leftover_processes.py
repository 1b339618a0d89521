"""The one check that a test run left no process behind (a server, a browser, a Redis).

A run puts its own marker into its environment before it starts anything; every process it
starts, and every process those start, inherits it, even one that leaves its parent. At the end,
whatever still carries the marker was left behind: `make test` (tools/run_tests.py) checks once
for the whole run, a pytest started by hand checks at its own end (tests/conftest.py).

Some programs write over the environment the kernel shows (nginx puts its process title
there), so each server started under a run also notes its session (`note_session`, called by
tools/server_process.py): whatever is still in one of those sessions was left behind too.
"""

import os
import tempfile
import time
import uuid
from pathlib import Path

RUN_MARKER = "TUTORIAL_TEST_RUN"
SESSIONS_DIRECTORY = Path(tempfile.gettempdir()) / "tutorial-test-run-sessions"


def start_run():
    """Marks this process's environment, and so everything it starts; returns the run's id."""
    run_id = uuid.uuid4().hex
    os.environ[RUN_MARKER] = run_id
    return run_id


def sessions_file(run_id):
    return SESSIONS_DIRECTORY / f"{run_id}.txt"


def start_ticks(pid):
    """When process `pid` started, in clock ticks since boot (/proc/<pid>/stat, field 22)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(") ", 1)[1].split()[19])


def note_session(pid):
    """Notes the session that process `pid` leads (every server the launcher starts leads
    one) for the run this process belongs to, if any. Plain /proc reads: `make run`'s
    environment has no psutil."""
    run_id = os.environ.get(RUN_MARKER)
    if not run_id:
        return
    SESSIONS_DIRECTORY.mkdir(exist_ok=True)
    with open(sessions_file(run_id), "a") as noted:
        noted.write(f"{pid} {start_ticks(pid)}\n")


def noted_sessions(run_id):
    """The run's noted session ids, but for those whose id a new process has taken since."""
    try:
        lines = sessions_file(run_id).read_text().splitlines()
    except FileNotFoundError:
        return set()
    sessions = set()
    for line in lines:
        pid, started = map(int, line.split())
        try:
            if start_ticks(pid) != started:
                continue  # the leader is gone and its pid reused: not our session any more
        except (FileNotFoundError, ProcessLookupError):
            pass  # the leader is gone; what is left in its session is still ours
        sessions.add(pid)
    return sessions


def marked_processes(run_id):
    """The live processes other than this one that carry the run's marker or are in one of its
    noted sessions."""
    import psutil

    sessions = noted_sessions(run_id)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(RUN_MARKER) == run_id or os.getsid(process.pid) in sessions:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError):
            continue
    return found


def stop_leftovers(run_id, grace=10):
    """Gives the run's processes `grace` seconds to end, kills the ones still alive and returns
    a description of each of those ("pid command ..."); an empty list means a clean run."""
    import psutil

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
    sessions_file(run_id).unlink(missing_ok=True)
    return described
