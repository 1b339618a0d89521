"""Step 02: the same project through newtest/asgi.py, under real daphne and uvicorn processes;
its static files (the admin's CSS) served by WhiteNoise, and the admin's login after `migrate`."""

import fcntl
import os
import pty
import re
import shlex
import subprocess
import termios

import pytest
import requests

from tools.readme_console import assert_output_shown, find_command
from tools.repository import REPO_ROOT
from tools.server_process import python_environment
from tools.step_commands import ASGI_SERVERS, copy_step, manage
from tools.waiting import wait_until

STEP = REPO_ROOT / "step02_daphne"
# Step 01's project is step 02's without WhiteNoise: what daphne and uvicorn do with no help.
WITHOUT_WHITENOISE = "step01_startproject"
ROCKET_TEXT = "The install worked successfully! Congratulations!"
ADMIN_USER, ADMIN_PASSWORD = "learner", "a long enough Passw0rd"
# What a browser's last request for the rocket page logs, per server (the icon nobody has).
FAVICON_404 = {"daphne": '"GET /favicon.ico" 404', "uvicorn": '"GET /favicon.ico HTTP/1.1" 404'}
SYNC_ITERATOR_WARNING = "Warning: StreamingHttpResponse must consume synchronous iterators"


def test_asgi_server_serves_the_rocket_page(asgi_server):
    response = requests.get(asgi_server.http_url + "/", timeout=10)
    assert response.status_code == 200
    assert ROCKET_TEXT in response.text


def test_asgi_server_serves_the_admin_login_through_django(asgi_server):
    # A second URL proves the request went through Django's URLconf, not a static page.
    response = requests.get(asgi_server.http_url + "/admin/login/", timeout=10)
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in response.text


def test_asgi_server_logs_the_request(asgi_server):
    mark = asgi_server.log_mark()
    requests.get(asgi_server.http_url + "/", timeout=10)
    expected = {"daphne": '"GET /" 200', "uvicorn": '"GET / HTTP/1.1" 200 OK'}[asgi_server.name]
    asgi_server.wait_for_log(expected, after=mark)


def test_readme_explains_what_a_browser_adds_to_the_log(asgi_server, page):
    """The lines the README explains below its listings are the ones a real browser causes,
    on both tracks: the favicon's 404, which daphne logs twice and uvicorn once."""
    mark = asgi_server.log_mark()
    page.goto(asgi_server.http_url + "/")
    log = asgi_server.wait_for_log(FAVICON_404[asgi_server.name], after=mark)
    expected = {"daphne": 2, "uvicorn": 1}[asgi_server.name]
    assert log.count("Not Found: /favicon.ico") == expected, log


# --- static files under an ASGI server ----------------------------------------------------------


def load_and_read_styles(page, url):
    """Opens `url` in the browser; returns, for every stylesheet the page links, the status the
    browser got and how many CSS rules it loaded, and the header's computed background colour
    (transparent when no stylesheet applied)."""
    statuses = {}

    def note_status(request):
        if request.resource_type == "stylesheet":
            response = request.response()
            statuses[request.url] = response.status if response else None

    page.on("requestfinished", note_status)
    page.goto(url, wait_until="load")
    rules = page.eval_on_selector_all(
        "link[rel=stylesheet]",
        # A sheet the browser refused (a 404's HTML) has no rules a page may read.
        """links => links.map(link => {
            try { return [link.href, link.sheet.cssRules.length]; } catch { return [link.href, 0]; }
        })""",
    )
    header_background = page.eval_on_selector(
        "#header", "element => getComputedStyle(element).backgroundColor"
    )
    return {href: (statuses.get(href), count) for href, count in rules}, header_background


def test_the_admin_login_page_is_styled_under_the_asgi_server(asgi_server, page):
    url = asgi_server.http_url
    stylesheets, header_background = load_and_read_styles(page, url + "/admin/login/")
    assert url + "/static/admin/css/base.css" in stylesheets, stylesheets
    for href, (status, rules) in stylesheets.items():
        assert status == 200 and rules > 0, (href, status, rules)
    assert header_background not in ("rgba(0, 0, 0, 0)", "transparent")


@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_without_whitenoise_the_asgi_servers_leave_the_admin_unstyled(serve, page, server_name):
    # The symptom the README describes, so the test above is known to be able to fail.
    server = serve(WITHOUT_WHITENOISE, server_name)
    stylesheets, header_background = load_and_read_styles(page, server.http_url + "/admin/login/")
    assert server.http_url + "/static/admin/css/base.css" in stylesheets, stylesheets
    # Chromium refuses a stylesheet answered with a 404's HTML before the page sees a status.
    assert all(rules == 0 for _, rules in stylesheets.values()), stylesheets
    assert header_background == "rgba(0, 0, 0, 0)"
    server.wait_for_log("Not Found: /static/admin/css/base.css")
    server.wait_for_log(
        {
            "daphne": '"GET /static/admin/css/base.css" 404',
            "uvicorn": '"GET /static/admin/css/base.css HTTP/1.1" 404',
        }[server_name]
    )


def test_without_whitenoise_runserver_still_serves_the_static_files(serve, tmp_path):
    # What Daphne and Uvicorn do not do: runserver's own static files handler (DEBUG only).
    # (A copy: runserver's migration check would create db.sqlite3 in the step directory.)
    server = serve(
        WITHOUT_WHITENOISE, "runserver", directory=copy_step(WITHOUT_WHITENOISE, tmp_path)
    )
    response = requests.get(server.http_url + "/static/admin/css/base.css", timeout=10)
    assert response.status_code == 200 and "text/css" in response.headers["Content-Type"]


@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_the_sync_iterator_warning_shows_only_where_the_readme_says(serve, track, server_name):
    """The README: on the current track (Django 4.2 and later) uvicorn logs Django's warning
    once, at the first static file; Django 3.0 has no such check, and daphne discards it."""
    server = serve(STEP.name, server_name)
    for name in ("base.css", "login.css", "base.css"):
        response = requests.get(server.http_url + "/static/admin/css/" + name, timeout=10)
        assert response.status_code == 200 and response.text.strip()
    # The access lines come after any warning the request caused: wait for the last one.
    log = wait_until(
        lambda: server.log_text().count("/static/admin/css/base.css") == 2 and server.log_text(),
        message=lambda: f"both requests for base.css in:\n{server.log_text()}",
    )
    expected = 1 if (track, server_name) == ("current", "uvicorn") else 0
    assert log.count(SYNC_ITERATOR_WARNING) == expected, log


# --- the admin: migrate, createsuperuser, log in ------------------------------------------------


def answer_prompts(command, directory, answers, timeout=60):
    """Runs `command` as typed in a terminal (a pseudo-terminal of its own, as its controlling
    terminal, so getpass() reads from it) and answers each prompt in `answers`, a list of
    (prompt text, reply). Returns everything the terminal showed."""
    controller, terminal = pty.openpty()

    def take_the_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        shlex.split(command),
        cwd=directory,
        env=python_environment(),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(terminal)
    shown = ""

    def read_until(text):
        def arrived():
            nonlocal shown
            try:
                shown += os.read(controller, 4096).decode(errors="replace")
            except BlockingIOError:
                pass
            return text in shown

        wait_until(arrived, timeout=timeout, message=lambda: f"{text!r} in:\n{shown}")

    os.set_blocking(controller, False)
    try:
        for prompt, reply in answers:
            read_until(prompt)
            os.write(controller, reply.encode() + b"\n")
        assert process.wait(timeout=timeout) == 0, shown
        try:
            shown += os.read(controller, 65536).decode(errors="replace")
        except (BlockingIOError, OSError):  # nothing left, or the terminal already closed
            pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return shown


@pytest.fixture(scope="module")
def admin_ready_copy(tmp_path_factory):
    """A copy of the step after the README's two commands: `migrate`, then `createsuperuser`
    with its prompts answered. Returns (directory, what migrate printed)."""
    directory = copy_step(STEP.name, tmp_path_factory.mktemp("admin"))
    (migrate_command,) = find_command(STEP / "README.md", "python manage.py migrate")
    migrated = manage(directory, migrate_command.command.removeprefix("python manage.py "))
    (create,) = find_command(STEP / "README.md", "python manage.py createsuperuser")
    shown = answer_prompts(
        create.command,
        directory,
        [
            ("Username", ADMIN_USER),
            ("Email address: ", ""),
            ("Password: ", ADMIN_PASSWORD),
            ("Password (again): ", ADMIN_PASSWORD),
        ],
    )
    assert "Superuser created successfully." in shown, shown
    return directory, migrated


@pytest.mark.track("django30")
def test_readme_shows_what_migrate_prints(admin_ready_copy):
    _, migrated = admin_ready_copy
    (shown,) = find_command(STEP / "README.md", "python manage.py migrate")
    assert_output_shown(shown.output, migrated)


def test_migrate_applies_the_admins_tables(admin_ready_copy):
    _, migrated = admin_ready_copy
    assert "Apply all migrations: admin, auth, contenttypes, sessions" in migrated
    assert "Applying auth.0001_initial... OK" in migrated
    assert "Applying sessions.0001_initial... OK" in migrated


def log_in(page, server):
    page.goto(server.http_url + "/admin/")
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")


@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_after_migrate_and_createsuperuser_the_admin_logs_in(
    serve, page, admin_ready_copy, server_name
):
    directory, _ = admin_ready_copy
    server = serve(STEP.name, server_name, directory=directory)
    log_in(page, server)
    page.get_by_text("Site administration").first.wait_for(timeout=10_000)
    page.wait_for_load_state("load")  # the text can show before the stylesheets have loaded
    assert page.url == server.http_url + "/admin/"
    header_background = page.eval_on_selector(
        "#header", "element => getComputedStyle(element).backgroundColor"
    )
    assert header_background not in ("rgba(0, 0, 0, 0)", "transparent")


@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_without_migrate_logging_in_ends_in_no_such_table(serve, page, tmp_path, server_name):
    server = serve(STEP.name, server_name, directory=copy_step(STEP.name, tmp_path))
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        log_in(page, server)
    assert answer.value.status == 500
    assert "OperationalError" in page.title()
    assert re.search(r"no such table: auth_user", page.content())
