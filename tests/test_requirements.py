"""Every step has one requirements file per track, pinning its direct dependencies at that
track's locked versions, so a reader who copies one step out and installs the file for their
track gets what the tests ran (tests/test_step_requirements.py installs some for real)."""

import re

import pytest

from tools.repository import REPO_ROOT
from tools.tracks import TRACKS

# Every step directory, whatever its number: a new step must come with both files.
STEPS = sorted(p for p in REPO_ROOT.glob("step[0-9][0-9]_*") if p.is_dir())
REQUIREMENTS_FILE = {"django30": "requirements.txt", "current": "requirements-current.txt"}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([^\s;\\]+)", re.M)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(track):
    text = (REPO_ROOT / "requirements" / f"{track}.txt").read_text()
    return {canonical(name): version for name, _, version in PIN.findall(text)}


def step_pins(step, track):
    """The step's requirements file for the track as {name: version}; every line is a pin."""
    lines = [
        line.strip()
        for line in (step / REQUIREMENTS_FILE[track]).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = PIN.findall("\n".join(lines))
    assert len(pins) == len(lines), f"every requirement in {step.name} is pinned with =="
    return {canonical(name): version for name, _, version in pins}


def test_every_track_has_a_requirements_file_name():
    assert set(REQUIREMENTS_FILE) == set(TRACKS)


@pytest.mark.parametrize("track", list(REQUIREMENTS_FILE))
@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.name)
def test_step_requirements_pin_the_tracks_locked_versions(step, track):
    pins = step_pins(step, track)
    locked = locked_versions(track)
    for name, version in pins.items():
        assert locked.get(name) == version, f"{step.name}/{REQUIREMENTS_FILE[track]}: {name}"
    assert pins["django"].startswith(TRACKS[track]["Django"])


# What one track's file of a step names and the other's does not: step 07's current track
# runs on PostgreSQL with psycopg 3, which Django 3.0 cannot use (step07_deploy/README.md).
CURRENT_TRACK_ONLY = {"step07_deploy": {"psycopg"}}


@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.name)
def test_both_files_of_a_step_name_the_same_packages(step):
    only = CURRENT_TRACK_ONLY.get(step.name, set())
    assert set(step_pins(step, "django30")) | only == set(step_pins(step, "current"))


@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.name)
def test_step_readme_gives_the_install_line_for_each_track(step):
    readme = (step / "README.md").read_text()
    for name in REQUIREMENTS_FILE.values():
        assert f"$ pip install -r {name}\n" in readme, f"{step.name}/README.md: {name}"


def test_lock_files_pin_the_track_versions():
    django30, current = locked_versions("django30"), locked_versions("current")
    assert django30["django"] == "3.0.14"
    assert django30["daphne"] == "3.0.2"
    assert django30["channels"] == "3.0.5"
    assert django30["channels-redis"].startswith("4.2.")
    assert current["django"].startswith("5.2.")
    assert current["daphne"].startswith("4.2.")
    assert current["channels"].startswith("4.3.")
    assert current["channels-redis"].startswith("4.3.")


@pytest.mark.parametrize("track", ["django30", "current"])
def test_lock_files_carry_hashes_for_every_pin(track):
    text = (REPO_ROOT / "requirements" / f"{track}.txt").read_text()
    entries = re.split(
        r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text
    )
    for entry in entries:
        if "==" in entry:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_running_track_has_the_locked_versions(track):
    from importlib.metadata import version

    locked = locked_versions(track)
    for package in (
        "django",
        "daphne",
        "channels",
        "channels-redis",
        "uvicorn",
        "asgiref",
        "whitenoise",
    ):
        assert version(package) == locked[package], package
