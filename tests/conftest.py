"""Shared fixtures: the running track, real servers, a real browser, and the rules that keep
the suite honest (no silent skips in CI, no process left behind)."""

import os
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tools"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from step_server import step_server  # noqa: E402

TRACKS = ("django30", "current")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine has no network: keep Chromium from trying to reach Google's services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def running_track():
    """The track whose packages this interpreter has, read from the installed Django."""
    import django

    return "django30" if django.VERSION[:2] == (3, 0) else "current"


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


def require_tool(name, install_hint):
    """Path of a system tool; without it, fail in CI and skip with a hint elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed; install it with: {install_hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def track():
    return running_track()


@pytest.fixture
def serve():
    """serve(step, server, env=None) starts a real server process and stops it after the test."""
    started = []

    def start(step, server, env=None):
        process = step_server(step, server, env=env)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


# Per test, not per session: while Playwright's sync API is running it holds an event loop in
# this thread, and every asyncio.run() in a later test would fail with "running event loop".
@pytest.fixture
def chromium_browser():
    chromium = require_tool("chromium", "sudo apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium_browser):
    context = chromium_browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def pytest_sessionfinish(session, exitstatus):
    """Fails the run if any process a test started (server, browser, redis) is still alive."""
    me = psutil.Process()
    leftovers = me.children(recursive=True)
    deadline = time.monotonic() + 10
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = [p for p in leftovers if p.is_running() and p.status() != "zombie"]
    if leftovers:
        names = ", ".join(f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in leftovers)
        for process in leftovers:
            process.kill()
        print(f"\nERROR: the tests left processes running: {names}", file=sys.stderr)
        session.exitstatus = 1
