"""A pytest plugin that `make test` (tools/run_tests.py) loads into each of its pytest processes
(`-p tools.durations_plugin`): it writes every test's time, its setup, call and teardown
together, to the JSON file named by the environment variable DURATIONS_FILE, so the run can
list its slowest tests across all its pytest processes at the end.

A fixture set up once for a module or a session (a server, a migrated copy) counts in the
first test that uses it, as in pytest's own --durations.
"""

import json
import os
from collections import defaultdict

DURATIONS_FILE = "DURATIONS_FILE"
_seconds = defaultdict(float)


def pytest_runtest_logreport(report):
    _seconds[report.nodeid] += report.duration


def pytest_sessionfinish(session):
    path = os.environ.get(DURATIONS_FILE)
    if path:
        with open(path, "w") as file:
            json.dump(_seconds, file)
