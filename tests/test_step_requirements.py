"""A step copied out of the repository installs on its own: a fresh virtual environment, the
README's `pip install -r ...` line for the running track (a real install from the package
index, sharing pip's download cache), then Django's version and `python manage.py check`.

An install takes tens of seconds, so this installs one step: the one with the most
dependencies (the likeliest to conflict), whose packages include every other step's.
tests/test_requirements.py checks every step's files against the same lock files without
installing anything, and the test below that every step's pins are among this one's."""

import os
import re
import subprocess
import sys

import pytest

from tools.readme_console import find_command
from tools.repository import STEP_DIRECTORIES
from tools.server_process import python_environment
from tools.step_commands import copy_step
from tools.tracks import TRACKS

REQUIREMENTS_FILE = {"django30": "requirements.txt", "current": "requirements-current.txt"}
INSTALL_TIMEOUT_SECONDS = 900


def pinned_packages(step, file_name="requirements.txt"):
    text = (step / file_name).read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


MOST_DEPENDENCIES = max(STEP_DIRECTORIES, key=lambda step: (len(pinned_packages(step)), step.name))


@pytest.mark.parametrize("file_name", REQUIREMENTS_FILE.values())
def test_every_steps_pins_are_among_the_installed_steps(file_name):
    installed = set(pinned_packages(MOST_DEPENDENCIES, file_name))
    for step in STEP_DIRECTORIES:
        assert set(pinned_packages(step, file_name)) <= installed, step.name


def run(argv, directory, env):
    result = subprocess.run(
        argv,
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"{' '.join(argv)} failed in {directory}:\n{result.stdout}"
    return result.stdout


@pytest.mark.parametrize("step", [MOST_DEPENDENCIES], ids=lambda p: p.name)
def test_a_copied_step_installs_and_checks_in_a_fresh_environment(step, track, tmp_path):
    directory = copy_step(step.name, tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The fresh environment's bin first on PATH, as after `source venv/bin/activate`.
    env = python_environment(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(venv),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            # pip compiles every installed module to bytecode, a third of the install's CPU
            # here; the check below imports what it needs either way. pip reads the variable
            # of its --compile option, PIP_COMPILE, as a plain yes or no; PIP_NO_COMPILE=1,
            # which this test set before, turned compiling on.
            "PIP_COMPILE": "0",
            # Step 07 reads its key from the environment, as its README exports it; the
            # steps before it have theirs in settings.py and ignore this.
            "DJANGO_SECRET_KEY": "a key for the check only, made up for this test",
        }
    )
    (install,) = find_command(step / "README.md", f"pip install -r {REQUIREMENTS_FILE[track]}")
    run([str(venv / "bin" / "pip"), *install.argv[1:]], directory, env)

    python = str(venv / "bin" / "python")
    version = run([python, "-c", "import django; print(django.get_version())"], directory, env)
    assert version.strip().startswith(TRACKS[track]["Django"]), version
    run([python, "-m", "pip", "check"], directory, env)
    checked = run([python, "manage.py", "check"], directory, env)
    assert "System check identified no issues" in checked, checked
    # Nothing came from the test environment: the fresh one has only what the file named.
    assert re.search(
        rf"^{re.escape(str(venv))}",
        run([python, "-c", "import django; print(django.__file__)"], directory, env),
    )
