"""Each step's requirements.txt pins its direct dependencies at the default track's versions,
so a reader who copies one step out and installs it gets what the tests ran."""

import re

import pytest

from tools.repository import REPO_ROOT

STEPS = sorted(p for p in REPO_ROOT.glob("step*_*") if p.is_dir())
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([^\s;\\]+)", re.M)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(track):
    text = (REPO_ROOT / "requirements" / f"{track}.txt").read_text()
    return {canonical(name): version for name, _, version in PIN.findall(text)}


@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.name)
def test_step_requirements_match_the_default_track_lock(step):
    lines = [
        line.strip()
        for line in (step / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = PIN.findall("\n".join(lines))
    assert len(pins) == len(lines), "every requirement is pinned with =="
    locked = locked_versions("django30")
    for name, _, version in pins:
        assert locked.get(canonical(name)) == version, name
    assert "django" in {canonical(name) for name, _, _ in pins}


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
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text)
    for entry in entries:
        if "==" in entry:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_running_track_has_the_locked_versions(track):
    from importlib.metadata import version

    locked = locked_versions(track)
    for package in ("django", "daphne", "channels", "channels-redis", "uvicorn", "asgiref"):
        assert version(package) == locked[package], package
