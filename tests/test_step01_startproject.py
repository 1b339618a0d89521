"""Step 01: the project exactly as `django-admin startproject newtest` makes it, under runserver."""

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tools.readme_console import assert_output_shown, find_command
from tools.repository import REPO_ROOT
from tools.step_commands import README_COMMANDS, copy_step, manage, step_server

STEP = REPO_ROOT / "step01_startproject"
ROCKET_TEXT = "The install worked successfully! Congratulations!"
SECRET_KEY_LINE = re.compile(r"^SECRET_KEY = .*$", re.MULTILINE)
# The migrations of the four apps startproject installs (admin, auth, contenttypes, sessions).
UNAPPLIED_MIGRATIONS = {"django30": 17, "current": 18}


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
    for added in ("README.md", "requirements.txt", "requirements-current.txt"):
        ours.pop(added)
    assert sorted(ours) == sorted(generated)
    for name, text in generated.items():
        # The key is random in every generated project; everything else must be byte-identical.
        assert SECRET_KEY_LINE.sub("SECRET_KEY = <random>", ours[name]) == SECRET_KEY_LINE.sub(
            "SECRET_KEY = <random>", text
        ), name


# runserver's migration check creates db.sqlite3 where it runs, so every runserver here serves
# a fresh copy of the step (tests never write into a step directory); a fresh clone has no
# database either, as the README's output assumes.
@pytest.fixture(scope="module")
def runserver(tmp_path_factory):
    directory = copy_step(STEP.name, tmp_path_factory.mktemp("runserver"))
    with step_server(STEP.name, "runserver", directory=directory) as server:
        yield server


def test_runserver_serves_the_rocket_page(runserver):
    response = requests.get(runserver.http_url + "/", timeout=10)
    assert response.status_code == 200
    assert ROCKET_TEXT in response.text


def test_runserver_serves_wsgi_py_and_never_imports_asgi_py(tmp_path):
    # In verbose mode Python logs "import 'module' # ..." for every module it loads.
    directory = copy_step(STEP.name, tmp_path)
    server = step_server(STEP.name, "runserver", env={"PYTHONVERBOSE": "1"}, directory=directory)
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


def tables(database):
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows} - {"sqlite_sequence"}


def test_runserver_counts_the_unapplied_migrations_and_the_rocket_needs_no_table(
    serve, track, tmp_path
):
    directory = copy_step(STEP.name, tmp_path)
    server = serve(STEP.name, "runserver", directory=directory)
    response = requests.get(server.http_url + "/", timeout=10)
    assert response.status_code == 200 and ROCKET_TEXT in response.text
    count = UNAPPLIED_MIGRATIONS[track]
    server.wait_for_log(f"You have {count} unapplied migration(s).")
    # runserver's check created the SQLite file; the page was served without a single table.
    assert (directory / "db.sqlite3").exists()
    assert tables(directory / "db.sqlite3") == set()


def test_migrate_applies_those_migrations_and_the_notice_goes(serve, track, tmp_path):
    directory = copy_step(STEP.name, tmp_path)
    migrated = manage(directory, "migrate")
    assert migrated.count("... OK") == UNAPPLIED_MIGRATIONS[track]
    assert {"auth_user", "django_session", "django_migrations"} <= tables(directory / "db.sqlite3")
    server = serve(STEP.name, "runserver", directory=directory)
    requests.get(server.http_url + "/", timeout=10)
    log = server.wait_for_log('"GET / HTTP/1.1" 200')
    assert "System check identified no issues" in log
    assert "unapplied migration" not in log


def test_readme_gives_both_tracks_migration_counts():
    readme = " ".join((STEP / "README.md").read_text().split())
    assert f"You have {UNAPPLIED_MIGRATIONS['django30']} unapplied migration(s)" in readme
    assert f"Django 3.0.14's four apps have {UNAPPLIED_MIGRATIONS['django30']} of them" in readme
    assert f"(Django 5.2's have {UNAPPLIED_MIGRATIONS['current']})" in readme
