"""`make test` (tools/run_tests.py) shows progress while pytest runs: a line per test file as
the file's last test finishes, read from a real pytest process's output as it comes."""

import subprocess
import sys

from tools.repository import REPO_ROOT
from tools.run_tests import PYTEST_OPTIONS, follow_progress

FILES = ["tests/test_raw_websocket.py", "tests/test_links.py"]


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
