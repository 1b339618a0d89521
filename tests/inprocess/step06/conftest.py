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
def test_database(tmp_path_factory):
    """Django's own test database, in a file of its own as the step's is: the chat's writer
    stores in a thread of its own while database_sync_to_async's thread reads, and SQLite's
    shared in-memory database (the test default) locks a table being written for its readers
    ("database table is locked"), where a file in WAL mode lets them read."""
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    connection.settings_dict["TEST"]["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")
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


@pytest.fixture(autouse=True)
def room_never_busy(monkeypatch):
    """These tests check the frames a message brings. Whether the room is busy depends on how
    late this process runs, which the other test processes on the machine decide (in a CI run
    an event loop 0.12 s late had a message refused), so here it never is. Busy refusals are
    tested against real servers: tests/test_step06_busy_room.py."""
    from chat import busy_room

    for limit in ("LOOP_LAG_LIMIT", "STORE_WAIT_LIMIT", "DELIVERY_LAG_LIMIT"):
        monkeypatch.setattr(busy_room, limit, 60.0)
