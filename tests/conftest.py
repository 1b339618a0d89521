"""The fixture layer: the running track, real servers, a private Redis, a real browser, and
the rules that keep the suite honest (no silent skips in CI, no process left behind).

Every server a test talks to is started by one of the fixtures here, through the one
launcher in tools/server_process.py.
"""

import fcntl
import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.system_tools import require_tool
from tools.chromium import INSTALL_HINT, close_shared_chromium, shared_chromium
from tools.leftover_processes import RUN_MARKER, start_run, stop_leftovers
from tools.redis_server import RedisServer
from tools.step_commands import ASGI_SERVERS, SERVERS, copy_step, migrate, step_server
from tools.tracks import running_track


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "track(name): run only on that version track (deselected on the other)"
    )


def pytest_report_header(config):
    import django

    return f"track: {running_track()} (Django {django.get_version()}, {sys.executable})"


def pytest_collection_modifyitems(config, items):
    # A test written for one track is deselected, not skipped, on the other: nothing is missing.
    track = running_track()
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("track")
        (dropped if marker and marker.args[0] != track else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def machine_to_itself():
    """Holds a lock that every pytest process on this machine shares, for the tests that load
    it most: make test runs the two tracks side by side, and two such loads at once on two
    cores starve both (SQLite writers then wait past their timeout)."""
    with open(Path(tempfile.gettempdir()) / "tutorial-heaviest-load-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def track():
    return running_track()


@pytest.fixture
def serve():
    """serve(step, server, env=None, directory=None) starts a real server process for the
    step (or for a copy of it in `directory`) and stops it after the test."""
    started = []

    def start(step, server, env=None, directory=None):
        process = step_server(step, server, env=env, directory=directory)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def _module_server(request, migrated_step):
    """The test module's step under the server named by the fixture's parameter. The module
    says which step (`STEP`), and may set `SERVER_ENV` (a dict) and `SERVE_MIGRATED_COPY`
    (serve a migrated copy, for steps whose pages or sockets read the database)."""
    module = request.module
    directory = (
        migrated_step(module.STEP) if getattr(module, "SERVE_MIGRATED_COPY", False) else None
    )
    env = getattr(module, "SERVER_ENV", None)
    return step_server(module.STEP, request.param, env=env, directory=directory)


@pytest.fixture(scope="module", params=ASGI_SERVERS)
def asgi_server(request, migrated_step):
    """The module's step under daphne, then under uvicorn: one process each, per module."""
    with _module_server(request, migrated_step) as server:
        yield server


@pytest.fixture(scope="module", params=SERVERS)
def any_server(request, migrated_step):
    """The module's step under runserver, daphne and uvicorn: one process each, per module."""
    with _module_server(request, migrated_step) as server:
        yield server


@pytest.fixture(scope="session")
def migrated_step(tmp_path_factory):
    """migrated_step(step) is a migrated copy of the step, made once per pytest process:
    tests never write a database into a step directory (both tracks run side by side)."""
    copies = {}

    def copy(step):
        if step not in copies:
            directory = copy_step(step, tmp_path_factory.mktemp("step"))
            migrate(directory)
            copies[step] = directory
        return copies[step]

    return copy


@pytest.fixture
def redis_server():
    """A private, empty redis-server on a free loopback port, stopped after the test."""
    require_tool("redis-server", "sudo apt-get install redis-server")
    with RedisServer() as redis:
        yield redis


@pytest.fixture(scope="session")
def session_chromium():
    """The pytest process's one headless Chromium (tools/chromium.py), launched on first use:
    a test gets a fresh context in it, never a browser of its own. While it runs, Playwright's
    sync API keeps an event loop in the main thread, so tests run coroutines with
    tools.chat_driver.run_async (a loop in a thread of its own), never asyncio.run()."""
    require_tool("chromium", INSTALL_HINT)
    yield shared_chromium()
    close_shared_chromium()


@pytest.fixture
def chromium_browser(session_chromium):
    """The process's Chromium, for a test that opens its own contexts or pages in it. Every
    context open at the test's end is closed then, so no page of one test (a chat page that
    keeps reconnecting to a stopped server) lives on into the next."""
    yield session_chromium
    for context in list(session_chromium.contexts):
        context.close()


@pytest.fixture
def page(chromium_browser):
    """A page in a fresh context (its own cookies and storage) of the process's Chromium."""
    return chromium_browser.new_context().new_page()


# The run started by hand, if any: under `make test` tools/run_tests.py checks the whole run.
OWN_RUN = {}


def pytest_sessionstart(session):
    if RUN_MARKER not in os.environ:
        OWN_RUN["id"] = start_run()


def pytest_sessionfinish(session, exitstatus):
    """Fails the run if any process a test started (server, browser, redis) is still alive."""
    # tools/readme_outputs.py may have started the process's Chromium without the fixture.
    close_shared_chromium()
    if "id" not in OWN_RUN:
        return
    leftovers = stop_leftovers(OWN_RUN["id"])
    if leftovers:
        print(f"\nERROR: the tests left processes running: {'; '.join(leftovers)}", file=sys.stderr)
        session.exitstatus = 1
