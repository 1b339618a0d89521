"""In-process tests of step 04: its directory first on sys.path, Django set up with its settings.

Every step's package is called `newtest`, so this directory runs in a pytest process of its own
(tools/run_tests.py does that)."""

import os
import sys
from pathlib import Path

STEP = Path(__file__).resolve().parents[3] / "step04_custom_router"
sys.path.insert(0, str(STEP))
os.environ["DJANGO_SETTINGS_MODULE"] = "newtest.settings"

import django  # noqa: E402

django.setup()

import newtest  # noqa: E402

assert Path(newtest.__file__).resolve().parent == STEP / "newtest", newtest.__file__
