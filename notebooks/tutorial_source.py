"""Reading source code in the notebooks: the installed packages' and the tutorial's own.

Listings are read from the installed files with `inspect`, never pasted, so the line numbers
shown are the real ones of whichever Django, Daphne, uvicorn or Channels runs the notebook.
Paths are shown relative to site-packages or to the repository, never as absolute paths.
"""

import importlib
import importlib.util
import inspect
import os
import sys
import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"]).resolve()


def shown_path(path):
    """`path` relative to site-packages (for installed packages) or to the repository."""
    path = Path(path).resolve()
    for base in (SITE_PACKAGES, REPO_ROOT):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.name


class Listing:
    """The source lines of one function, class or module, with their real line numbers."""

    def __init__(self, obj):
        self.path = shown_path(
            inspect.getsourcefile(inspect.unwrap(obj))
        )  # a decorated function's own file
        lines, first = inspect.getsourcelines(obj)
        self.first = max(first, 1)  # a whole module reports line 0
        self.lines = [line.rstrip("\n") for line in lines]

    @property
    def text(self):
        return "\n".join(self.lines)

    def number_of(self, fragment, after=None):
        """Line number of the first line containing `fragment` (after line `after`, if given)."""
        for number, line in self.numbered():
            if fragment in line and (after is None or number > after):
                return number
        raise LookupError(f"{fragment!r} is not in {self.path}")

    def line(self, number):
        return self.lines[number - self.first]

    def numbered(self):
        return list(enumerate(self.lines, start=self.first))

    def show(self, start=None, end=None):
        """Print lines from the one containing `start` to the one containing `end`, numbered."""
        first = self.number_of(start) if start else self.first
        last = self.number_of(end, after=first - 1) if end else self.first + len(self.lines) - 1
        print(f"{self.path}, lines {first}-{last}:")
        for number, line in self.numbered():
            if first <= number <= last:
                print(f"{number:4} {line}")


def show_source(obj, start=None, end=None):
    """Print the source of `obj` with its real line numbers and return its Listing."""
    listing = Listing(obj)
    listing.show(start, end)
    return listing


def use_step(directory_name):
    """Make one step's project importable as `newtest`, as if the notebook ran in its directory.

    A kernel can import only one `newtest`, so each notebook uses at most one step.
    """
    step = REPO_ROOT / directory_name
    if not (step / "manage.py").is_file():
        raise FileNotFoundError(f"no step project at {shown_path(step)}")
    sys.path.insert(0, str(step))
    os.environ["DJANGO_SETTINGS_MODULE"] = "newtest.settings"
    importlib.invalidate_caches()
    return step


def step_module(directory_name, relative_path):
    """Import one file of another step under a name of its own, next to the step `use_step` chose.

    For a module that needs nothing from its step's `newtest` (step 05's `echo/consumers.py`
    imports only Channels), this reads the step's real file without a second `newtest`.
    """
    path = REPO_ROOT / directory_name / relative_path
    name = f"{directory_name}.{relative_path.removesuffix('.py').replace('/', '.')}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
