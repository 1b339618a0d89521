"""Step 02: the same project through newtest/asgi.py, under real daphne and uvicorn processes."""

import pytest
import requests

from tools.repository import REPO_ROOT
from tests.readme_console import assert_output_shown, find_command
from tools.step_commands import README_COMMANDS, step_server

STEP = REPO_ROOT / "step02_daphne"
ROCKET_TEXT = "The install worked successfully! Congratulations!"


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


@pytest.mark.track("django30")
def test_readme_shows_the_servers_output(asgi_server):
    (shown,) = find_command(STEP / "README.md", README_COMMANDS[asgi_server.name])
    mark = asgi_server.log_mark()
    requests.get(asgi_server.http_url + "/", timeout=10)
    asgi_server.wait_for_log(" 200", after=mark)
    assert_output_shown(shown.output, asgi_server.log_text(), asgi_server.port)
