"""In-process tests of step 05: its directory first on sys.path, Django set up with its settings,
and the in-memory channel layer (REDIS_URL unset), so no server and no Redis are needed.

Every step's package is called `newtest`, so this directory runs in a pytest process of its own
(tools/run_tests.py does that)."""

import os
import sys
from pathlib import Path

import pytest

STEP = Path(__file__).resolve().parents[3] / "step05_channels"
sys.path.insert(0, str(STEP))
os.environ["DJANGO_SETTINGS_MODULE"] = "newtest.settings"
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

import newtest  # noqa: E402

assert Path(newtest.__file__).resolve().parent == STEP / "newtest", newtest.__file__


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new in-memory layer per test: each test runs its own event loop, and the layer's
    queues belong to the loop that made them."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
