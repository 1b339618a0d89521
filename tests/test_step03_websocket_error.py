"""Step 03: a WebSocket sent to plain Django is refused with HTTP 500, and the log says why."""

import inspect
import re

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tools.repository import REPO_ROOT
from tools.step_commands import copy_step

STEP = REPO_ROOT / "step03_websocket_error"
DJANGO_ERROR = "Django can only handle ASGI/HTTP connections, not websocket."
SERVER_LOG_LINE = {
    "daphne": "ERROR    Exception inside application: " + DJANGO_ERROR,
    "uvicorn": "ERROR:    Exception in ASGI application",
}


def line_of_the_raise():
    """Where the installed Django raises the error, read from its source, with the lines above."""
    from django.core.handlers.asgi import ASGIHandler

    lines, first_line = inspect.getsourcelines(ASGIHandler.__call__)
    for offset, line in enumerate(lines):
        if line.strip() == "raise ValueError(":
            return first_line + offset, lines[: offset + 1]
    raise AssertionError("ASGIHandler.__call__ no longer raises ValueError(")


def test_the_installed_django_still_carries_the_fixme():
    _, source_up_to_raise = line_of_the_raise()
    assert "# FIXME: Allow to override this." in source_up_to_raise[-3]
    assert "!= " in source_up_to_raise[-2] and "http" in source_up_to_raise[-2]


def handshake_status(server, path="/ws/echo/"):
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url + path, origin=server.http_url, open_timeout=10)
    return refused.value.response.status_code


def test_page_with_the_button_is_served(asgi_server):
    response = requests.get(asgi_server.http_url + "/", timeout=10)
    assert response.status_code == 200
    assert '<button id="send">Send over WebSocket</button>' in response.text


def test_websocket_handshake_gets_http_500(asgi_server):
    assert handshake_status(asgi_server) == 500


def test_server_logs_djangos_error_at_the_line_of_the_raise(asgi_server):
    mark = asgi_server.log_mark()
    handshake_status(asgi_server)
    log = asgi_server.wait_for_log(DJANGO_ERROR, after=mark)
    line, _ = line_of_the_raise()
    assert SERVER_LOG_LINE[asgi_server.name] in log
    assert f'django/core/handlers/asgi.py", line {line}, in __call__' in log
    assert "ValueError: " + DJANGO_ERROR in log


def test_server_keeps_serving_http_after_the_failed_handshake(asgi_server):
    handshake_status(asgi_server)
    assert requests.get(asgi_server.http_url + "/", timeout=10).status_code == 200


def test_runserver_answers_the_handshake_as_a_plain_get_with_404(serve, tmp_path):
    # runserver speaks WSGI only: the Upgrade header is ignored and Django finds no such URL.
    # (A copy: runserver's migration check would create db.sqlite3 in the step directory.)
    server = serve(STEP.name, "runserver", directory=copy_step(STEP.name, tmp_path))
    assert handshake_status(server) == 404


@pytest.mark.parametrize("server_name", ["daphne", "uvicorn"])
def test_browser_page_reports_the_failed_connection(serve, page, server_name):
    server = serve(STEP.name, server_name)
    page.goto(server.http_url + "/")
    page.click("#send")
    events = page.locator("#events")
    events.get_by_text("closed with code 1006").wait_for(timeout=10_000)
    assert "error: the WebSocket connection failed" in events.inner_text()
    assert "received:" not in events.inner_text()
    server.wait_for_log(DJANGO_ERROR)


def test_readme_names_the_line_of_the_raise_for_this_track(track):
    line, _ = line_of_the_raise()
    readme = (STEP / "README.md").read_text()
    claim = {
        "django30": f"(line {line} of `django/core/handlers/asgi.py`;",
        "current": f"line {line} in Django 5.2)",
    }[track]
    assert claim in readme


@pytest.mark.track("django30")
def test_readme_quotes_the_installed_source_verbatim():
    from django.core.handlers.asgi import ASGIHandler

    readme = (STEP / "README.md").read_text()
    quoted = re.search(r"```python\n(.*?)```", readme.split("## Why")[1], re.S).group(1)
    assert "# FIXME: Allow to override this." in quoted
    assert quoted in inspect.getsource(ASGIHandler.__call__)


def test_browser_console_shows_the_500(serve, page):
    server = serve(STEP.name, "daphne")
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(server.http_url + "/")
    page.click("#send")
    page.locator("#events").get_by_text("closed with code 1006").wait_for(timeout=10_000)
    assert any("Unexpected response code: 500" in text for text in console), console
