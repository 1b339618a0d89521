"""`make test` (tools/run_tests.py): progress while pytest runs, a line per test file as the
file's last test finishes; one step's tests on one track with `make test STEP=.. TRACK=..`;
the slowest tests and each pytest process's time at the end."""

import re
import shlex
import subprocess
import sys

import pytest

from tools.readme_console import console_commands
from tools.repository import REPO_ROOT
from tools.run_tests import PYTEST_OPTIONS, follow_progress

FILES = ["tests/test_raw_websocket.py", "tests/test_links.py"]
# The README's command for one step's tests on one track.
(README_STEP_COMMAND,) = [
    c.command
    for c in console_commands(REPO_ROOT / "README.md")
    if c.command.startswith("make test ")
]


def test_each_test_file_is_reported_as_it_finishes():
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *PYTEST_OPTIONS, *FILES],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reported = []
    output = "".join(follow_progress(process.stdout, reported.append))
    assert process.wait(timeout=120) == 0, output
    assert [line.split()[0] for line in reported] == FILES, output
    # One result character per test, a dot for each that passed.
    assert all(set(line.split()[1]) == {"."} for line in reported), reported
    assert "passed" in output.splitlines()[-1]


def make(*arguments, timeout):
    return subprocess.run(
        ["make", *arguments],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def test_the_readmes_command_runs_one_step_on_one_track():
    """The README's `make test STEP=06 TRACK=current`, as make runs it: run_tests for step 06
    on that track only, with that track's python."""
    printed = make("-n", *shlex.split(README_STEP_COMMAND)[1:], timeout=60).stdout
    (command,) = [line for line in printed.splitlines() if "tools.run_tests" in line]
    step = re.search(r"STEP=(\d+)", README_STEP_COMMAND).group(1)
    track = re.search(r"TRACK=(\w+)", README_STEP_COMMAND).group(1)
    assert shlex.split(command) == [
        f".venv/{track}/bin/python",
        "-m",
        "tools.run_tests",
        "--step",
        step,
        track,
    ]


# Run on one track: the narrowing is make's and run_tests.py's, the same for either track, and
# each track's environment runs the whole suite under make test anyway.
@pytest.mark.track("django30")
def test_one_steps_tests_on_one_track_then_the_slowest_and_the_time_per_process(track):
    """A real `make test STEP=04 TRACK=<this track>`, narrowed by PYTEST_ARGS to one test in
    each of step 04's two pytest processes (its test file under two servers, and its
    in-process tests): nothing of another step or track runs, and the end of the output lists
    those three tests as the slowest and the two processes with their times."""
    selected = "http_goes_to_django or still_served_by_django"
    result = make("test", "STEP=04", f"TRACK={track}", f"PYTEST_ARGS=-k '{selected}'", timeout=600)
    output = result.stdout
    assert result.returncode == 0, output
    assert output.splitlines()[-1] == "3 passed, 0 failed, 0 skipped", output
    progress = re.findall(r"^\[ *[\d.]+ min\] (\S+), (tests/\S+\.py)", output, re.M)
    assert progress == [
        (track, "tests/test_step04_custom_router.py"),
        (track, "tests/inprocess/step04/test_router.py"),
    ], output

    slowest = output.split("slowest of 3 tests")[1].split("=====\n")[1].split("\n\n")[0]
    tests = sorted(re.findall(r"^ *[\d.]+ s  (\S+) +(\S+)$", slowest, re.M))
    assert tests == [
        (track, "tests/inprocess/step04/test_router.py::test_http_goes_to_django"),
        (
            track,
            "tests/test_step04_custom_router.py::test_http_pages_are_still_served_by_django[daphne]",
        ),
        (
            track,
            "tests/test_step04_custom_router.py::test_http_pages_are_still_served_by_django[uvicorn]",
        ),
    ], output

    per_process = output.split("===== time per pytest process =====\n")[1]
    processes = re.findall(r"^ *[\d.]+ min  (\S+) +(.+)$", per_process, re.M)
    assert processes == [
        (track, "out of process (2 tests)"),
        (track, "in process, step04 (1 test)"),
    ], output
