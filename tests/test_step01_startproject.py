"""Step 01: the project exactly as `django-admin startproject newtest` makes it, under runserver."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tools.repository import REPO_ROOT
from tests.readme_console import assert_output_shown, find_command
from tools.step_commands import README_COMMANDS, step_server

STEP = REPO_ROOT / "step01_startproject"
ROCKET_TEXT = "The install worked successfully! Congratulations!"
SECRET_KEY_LINE = re.compile(r"^SECRET_KEY = .*$", re.MULTILINE)


def project_files(root):
    return {
        path.relative_to(root).as_posix(): path.read_text()
        for path in Path(root).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".sqlite3"
    }


@pytest.mark.track("django30")
def test_step01_is_what_django_30_startproject_generates(tmp_path):
    django_admin = Path(sys.executable).parent / "django-admin"
    subprocess.run([str(django_admin), "startproject", "newtest", str(tmp_path)], check=True)
    generated = project_files(tmp_path)
    ours = project_files(STEP)
    ours.pop("README.md")
    ours.pop("requirements.txt")
    assert sorted(ours) == sorted(generated)
    for name, text in generated.items():
        # The key is random in every generated project; everything else must be byte-identical.
        assert SECRET_KEY_LINE.sub("SECRET_KEY = <random>", ours[name]) == SECRET_KEY_LINE.sub(
            "SECRET_KEY = <random>", text
        ), name


@pytest.fixture(scope="module")
def runserver():
    with step_server(STEP.name, "runserver") as server:
        yield server


def test_runserver_serves_the_rocket_page(runserver):
    response = requests.get(runserver.http_url + "/", timeout=10)
    assert response.status_code == 200
    assert ROCKET_TEXT in response.text


def test_runserver_serves_wsgi_py_and_never_imports_asgi_py():
    # In verbose mode Python logs "import 'module' # ..." for every module it loads.
    server = step_server(STEP.name, "runserver", env={"PYTHONVERBOSE": "1"})
    with server:
        requests.get(server.http_url + "/", timeout=10)
        log = server.wait_for_log('"GET / HTTP/1.1" 200')
    imported = set(re.findall(r"^import '([\w.]+)' #", log, re.M))
    assert "newtest.wsgi" in imported
    assert "newtest.asgi" not in imported


@pytest.mark.track("django30")
def test_readme_shows_runserver_output(runserver):
    (shown,) = find_command(STEP / "README.md", README_COMMANDS["runserver"])
    requests.get(runserver.http_url + "/", timeout=10)
    log = runserver.wait_for_log('"GET / HTTP/1.1" 200')
    assert_output_shown(shown.output, log, runserver.port)
