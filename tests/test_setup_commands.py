"""The top README's set-up commands do what it says: `make run` serves a step and stops
cleanly on Ctrl-C, `make test` is what CI runs, and the version table is the lock files'."""

import contextlib
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.test_requirements import locked_versions
from tools.readme_console import console_commands
from tools.repository import REPO_ROOT
from tools.server_process import READINESS_REQUEST_LINE, free_port
from tools.step_commands import README_COMMANDS, copy_step
from tools.tracks import DEFAULT_TRACK, TRACKS
from tools.waiting import wait_until

README = REPO_ROOT / "README.md"
SHOWN = [c.command for c in console_commands(README)]
RUN_COMMANDS = [c for c in SHOWN if c.startswith("make run ")]
# `make run STEP=07` starts the whole site; tests/test_step07_deploy.py runs it (twice, the
# second time on what the first left), with the same checks on Ctrl-C and more.
SITE_RUN = "make run STEP=07"


# The other make targets the README shows, and the test file that runs each one.
TESTED_ELSEWHERE = {
    "make notebooks": "test_notebooks.py",
    "make benchmark": "test_benchmark.py",
    "make test STEP=06 TRACK=current": "test_run_tests.py",
}


def test_every_readme_command_is_run_by_a_test():
    for command in SHOWN:
        if command.startswith("make run ") or command == "make test":
            continue
        tested_by = REPO_ROOT / "tests" / TESTED_ELSEWHERE[command]
        assert f'"{command.split()[1]}"' in tested_by.read_text(), (command, tested_by)


def test_readme_shows_exactly_one_test_command_and_ci_runs_it():
    assert SHOWN.count("make test") == 1
    ci_script = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci_script, re.M)


def test_readme_shows_how_to_serve_step_03_with_daphne():
    assert "make run STEP=03 SERVER=daphne" in RUN_COMMANDS


def test_the_site_run_is_tested_with_step_07():
    assert SITE_RUN in RUN_COMMANDS
    deploy_tests = (REPO_ROOT / "tests" / "test_step07_deploy.py").read_text()
    assert '["make", "run", "STEP=07"' in deploy_tests


@pytest.mark.parametrize("command", sorted(set(RUN_COMMANDS) - {SITE_RUN}))
def test_make_run_serves_the_step_and_stops_on_ctrl_c(command, track, tmp_path):
    step = re.search(r"STEP=(\d+)", command).group(1)
    port = free_port()
    # STEP_COPY: make run serves a copy, since it migrates (and runserver makes db.sqlite3).
    copy = copy_step(step, tmp_path)
    argv = shlex.split(command) + [f"PORT={port}", f"TRACK={track}", f"STEP_COPY={copy}"]
    # A session of its own, so Ctrl-C reaches make and everything below it, as in a terminal.
    make = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        url = f"http://127.0.0.1:{port}/"
        opened = f"open http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not any(opened in line for line in output):
            assert time.monotonic() < deadline and make.poll() is None, "".join(output)
            output.append(make.stdout.readline())
        shown_before_the_visit = len(output)
        assert requests.get(url, timeout=10).status_code == 200
        # The visit's log line, before Ctrl-C: what a server prints as it stops may be cut off.
        while not READINESS_REQUEST_LINE.search("".join(output[shown_before_the_visit:])):
            assert time.monotonic() < deadline and make.poll() is None, "".join(output)
            output.append(make.stdout.readline())
    finally:
        # The server runs in a session of its own, so it is found now, while make is its ancestor.
        started = psutil.Process(make.pid).children(recursive=True) if make.poll() is None else []
        with contextlib.suppress(ProcessLookupError):  # make has stopped by itself: say why
            os.killpg(make.pid, signal.SIGINT)
        remaining, _ = make.communicate(timeout=30)
        _, still_running = psutil.wait_procs(started, timeout=15)
        for process in still_running:
            process.kill()
    assert not still_running, f"left running after Ctrl-C: {still_running}"
    assert make.returncode in (0, 2, -signal.SIGINT), "".join(output) + remaining
    # The launcher's readiness request is not shown as a visitor's; the test's own is, once.
    assert not READINESS_REQUEST_LINE.search("".join(output[:shown_before_the_visit]))
    assert len(READINESS_REQUEST_LINE.findall("".join(output) + remaining)) == 1, remaining
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    # A step whose README has the reader run migrate gets it from make run too.
    readme_migrates = "$ python manage.py migrate\n" in (copy / "README.md").read_text()
    assert ("manage.py migrate --noinput" in "".join(output)) == readme_migrates
    if readme_migrates:
        tables = sqlite3.connect(copy / "db.sqlite3").execute("SELECT name FROM sqlite_master")
        assert ("django_session",) in tables.fetchall()


def test_make_run_on_a_port_another_program_serves_says_so_and_fails(track):
    port = free_port()
    # Another program answering HTTP on the port: make run must not mistake it for its server.
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: requests_answer(f"http://127.0.0.1:{port}/"), timeout=30)
        result = subprocess.run(
            ["make", "run", "STEP=01", f"PORT={port}", f"TRACK={track}"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
    finally:
        other.terminate()
        other.wait(timeout=10)
    assert result.returncode != 0, result.stdout
    assert f"port {port} on 127.0.0.1 is already in use by another program" in result.stdout
    assert f"PORT={port + 1}" in result.stdout
    assert "Serving" not in result.stdout


def test_make_notebooks_serves_jupyter_on_the_port_given(track):
    """`make notebooks PORT=...`, as the README offers: Jupyter answers on that port."""
    port = free_port()
    # BROWSER=true: Jupyter "opens" its page with `true`, so no browser window pops up.
    make = subprocess.Popen(
        ["make", "notebooks", f"TRACK={track}", f"PORT={port}"],
        cwd=REPO_ROOT,
        env={**os.environ, "BROWSER": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: make.poll() is not None or jupyter_version(f"http://127.0.0.1:{port}"),
            timeout=120,
        )
        assert make.poll() is None, make.stdout.read()
        assert jupyter_version(f"http://127.0.0.1:{port}")
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # Jupyter asks to confirm a Ctrl-C; TERM stops it
        make.communicate(timeout=30)


def jupyter_version(url):
    """The Jupyter server's version from its /api, or None while nothing answers there."""
    try:
        return requests.get(f"{url}/api", timeout=2).json()["version"]
    except (requests.ConnectionError, ValueError, KeyError):
        return None


def requests_answer(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def plain_commands():
    """The lines of the README's "The plain commands" block, without their comments."""
    block = re.search(
        r"### The plain commands\n.*?\n\n((?:    [^\n]*\n)+)", README.read_text(), re.S
    )
    return [line.split("#")[0].strip() for line in block.group(1).splitlines()]


def test_plain_commands_in_the_readme_are_the_launchers():
    servers = [line for line in plain_commands() if not line.startswith(("source ", "cd "))]
    assert sorted(servers) == sorted(README_COMMANDS.values())


def test_plain_commands_work_in_the_environment_make_run_creates(track):
    """A reader who typed only the README's first command (`make run ...`) types the plain
    commands next: the environment they activate is the one make run made (the README's
    default track's name stands for the running track's), and in the step directory they
    `cd` to, python, daphne and uvicorn are that environment's and the project loads."""
    (activate,) = [line for line in plain_commands() if line.startswith("source ")]
    (change_directory,) = [line for line in plain_commands() if line.startswith("cd ")]
    assert activate == f"source .venv/run-{DEFAULT_TRACK}/bin/activate"
    activate = activate.replace(f"run-{DEFAULT_TRACK}/", f"run-{track}/")
    # What `make run` makes first (its prerequisite), as on the reader's first command.
    subprocess.run(
        ["make", "-s", f".venv/run-{track}/installed", f"TRACK={track}"],
        cwd=REPO_ROOT,
        check=True,
        timeout=600,
    )
    programs = sorted({command.split()[0] for command in README_COMMANDS.values()})
    script = "\n".join(
        [
            "set -e",
            activate,
            change_directory,
            f"command -v {' '.join(programs)}",
            "python manage.py check",
        ]
    )
    # A plain login shell's environment: no variable of this test process's venv.
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    # Each program's directory, resolved: .venv may be a link to another checkout's.
    bin_directory = (REPO_ROOT / activate.split()[1]).parent.resolve()
    found = [Path(line) for line in result.stdout.splitlines()[: len(programs)]]
    assert [path.name for path in found] == programs, result.stdout
    assert {path.parent.resolve() for path in found} == {bin_directory}, result.stdout
    assert "System check identified no issues" in result.stdout


def test_version_table_matches_the_lock_files():
    text = README.read_text()
    for track in TRACKS:
        row = re.search(rf"^\| `{track}`.*$", text, re.M).group(0)
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        locked = locked_versions(track)
        expected = [
            locked[p] for p in ("django", "daphne", "channels", "channels-redis", "uvicorn")
        ]
        assert cells == expected, track
