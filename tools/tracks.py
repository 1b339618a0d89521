"""The two version tracks every step is tested on, in one place.

`django30` is the default: Django 3.0.14 with the newest releases that still support it.
`current` is Django 5.2 LTS with the releases made for it. The Makefile reads the names
(`python3 -m tools.tracks`), the tests and the benchmark import them, and the lock files in
requirements/ are named after them.
"""

import sys
from pathlib import Path

from tools.repository import REPO_ROOT

# The versions each track promises; requirements/<track>.in pins them and the tests check the
# lock files and the installed packages against this table.
TRACKS = {
    "django30": {
        "Django": "3.0.14",
        "daphne": "3.0.2",
        "channels": "3.0.5",
        "channels-redis": "4.2",
    },
    "current": {"Django": "5.2", "daphne": "4.2", "channels": "4.3", "channels-redis": "4.3"},
}
DEFAULT_TRACK = "django30"
# The Makefile takes the first track named as the default.
assert next(iter(TRACKS)) == DEFAULT_TRACK


def running_track():
    """The track whose packages this interpreter has, read from the installed Django."""
    import django

    return "django30" if django.VERSION[:2] == (3, 0) else "current"


def track_python(track):
    """The interpreter of a track's full environment (servers, tests, notebooks)."""
    return REPO_ROOT / ".venv" / track / "bin" / "python"


def interpreter_bin_directory():
    """The bin directory of the running interpreter, where its `daphne` and `uvicorn` live."""
    return Path(sys.executable).parent


if __name__ == "__main__":
    print(" ".join(TRACKS))
