"""In-process tests of step 06: its directory first on sys.path, Django set up with its
settings, a private in-memory test database (migrated; nothing is written into the step
directory) and the in-memory channel layer, so no server and no Redis are needed.

Every step's package is called `newtest`, so this directory runs in a pytest process of its own
(tools/run_tests.py does that)."""

import os
import sys
from pathlib import Path

import pytest

STEP = Path(__file__).resolve().parents[3] / "step06_reliable_chat"
sys.path.insert(0, str(STEP))
os.environ["DJANGO_SETTINGS_MODULE"] = "newtest.settings"
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

import newtest  # noqa: E402

assert Path(newtest.__file__).resolve().parent == STEP / "newtest", newtest.__file__


@pytest.fixture(scope="session", autouse=True)
def test_database():
    """Django's own test database: for SQLite, in memory and shared by the worker threads
    that database_sync_to_async runs the ORM in."""
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    name = connection.creation.create_test_db(verbosity=0)
    yield name
    connection.creation.destroy_test_db(name, verbosity=0)
    teardown_test_environment()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new in-memory layer per test: each test runs its own event loop, and the layer's
    queues belong to the loop that made them."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
