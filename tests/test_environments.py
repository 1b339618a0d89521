"""Each track has two environments, built by the Makefile from two lock files: `make run`'s
.venv/run-<track> holds what a step needs to run and nothing more, so a first `make run` is
quick; the full .venv/<track> adds the tools of the tests, notebooks and benchmark, at the
same versions of everything a step runs on, so the tests test what `make run` serves."""

import json
import re
import subprocess

import pytest

from tests.test_requirements import canonical, locked_versions
from tools.repository import REPO_ROOT
from tools.tracks import TRACKS

REQUIREMENTS = REPO_ROOT / "requirements"
# What a step runs on, and the heaviest of what only the tests, notebooks and benchmark use
# (websockets and requests are in both: uvicorn and Jupyter need them too).
RUNTIME_PACKAGES = ("django", "daphne", "channels", "channels-redis", "uvicorn", "whitenoise")
TOOLS_ONLY = ("pytest", "playwright", "jupyter", "nbclient", "matplotlib", "ruff", "psutil")


def requirement_names(path):
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.append(canonical(re.match(r"[A-Za-z0-9_.-]+", line).group(0)))
    return names


def full_lock(track):
    text = (REQUIREMENTS / f"{track}-tests.txt").read_text()
    return {
        canonical(name): version for name, version in re.findall(r"^([\w.-]+)==(\S+)", text, re.M)
    }


@pytest.mark.parametrize("track", TRACKS)
def test_the_run_lock_holds_the_steps_packages_and_not_the_tools(track):
    runtime = locked_versions(track)
    assert set(RUNTIME_PACKAGES) <= set(runtime)
    assert set(TOOLS_ONLY) <= set(requirement_names(REQUIREMENTS / "tools.in"))
    assert not set(TOOLS_ONLY) & set(runtime)


@pytest.mark.parametrize("track", TRACKS)
def test_the_full_lock_is_the_run_lock_plus_the_tools_at_the_same_versions(track):
    runtime, full = locked_versions(track), full_lock(track)
    assert {name: full.get(name) for name in runtime} == runtime
    assert set(requirement_names(REQUIREMENTS / "tools.in")) <= set(full)


def test_make_run_installs_exactly_the_run_lock(track):
    # Builds the environment if missing (a few seconds with uv), else finds it up to date.
    subprocess.run(
        ["make", f".venv/run-{track}/installed"],
        cwd=REPO_ROOT,
        check=True,
        timeout=600,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    listing = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / f"run-{track}" / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    installed = {canonical(name): version for name, version in json.loads(listing.stdout).items()}
    assert installed == locked_versions(track)


def test_make_finds_both_environments_up_to_date_once_built(track):
    # `make -q` exits 0 only when the target is up to date: a second run installs nothing.
    for target in (f".venv/{track}/installed", f".venv/run-{track}/installed"):
        subprocess.run(
            ["make", target], cwd=REPO_ROOT, check=True, timeout=600, capture_output=True
        )
        assert subprocess.run(["make", "-q", target], cwd=REPO_ROOT).returncode == 0, target
