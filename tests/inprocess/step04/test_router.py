"""newtest/asgi.py in process: one explicit answer for every ASGI scope type."""

import asyncio

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

from newtest import asgi

TIMEOUT = 10


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_servers_run_the_router_and_django_is_kept_for_http():
    assert asgi.application is asgi.route_by_scope_type
    # The object get_asgi_application() returned, kept as it was.
    assert isinstance(asgi.django_http, ASGIHandler)


def http_scope(path):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def get(path):
    communicator = ApplicationCommunicator(asgi.application, http_scope(path))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(TIMEOUT)
    body = b""
    while True:
        message = await communicator.receive_output(TIMEOUT)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(TIMEOUT)
    return start, body.decode()


def test_http_goes_to_django():
    start, body = run(get("/"))
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    assert '<button id="send">Send over WebSocket</button>' in body


def test_http_for_an_unknown_url_gets_djangos_404():
    start, body = run(get("/no-such-page/"))
    assert start["status"] == 404
    assert "Page not found" in body


def test_websocket_goes_to_the_echo():
    async def scenario():
        scope = {
            "type": "websocket",
            "path": "/ws/echo/",
            "headers": [(b"origin", b"http://127.0.0.1:8000")],
        }
        communicator = ApplicationCommunicator(asgi.application, scope)
        await communicator.send_input({"type": "websocket.connect"})
        accepted = await communicator.receive_output(TIMEOUT)
        await communicator.send_input({"type": "websocket.receive", "text": "via the router"})
        echoed = await communicator.receive_output(TIMEOUT)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(TIMEOUT)
        return accepted, echoed

    accepted, echoed = run(scenario())
    assert accepted == {"type": "websocket.accept"}
    assert echoed == {"type": "websocket.send", "text": "via the router"}


def test_lifespan_startup_and_shutdown_are_answered_and_the_app_returns():
    async def scenario():
        communicator = ApplicationCommunicator(asgi.application, {"type": "lifespan"})
        await communicator.send_input({"type": "lifespan.startup"})
        started = await communicator.receive_output(TIMEOUT)
        await communicator.send_input({"type": "lifespan.shutdown"})
        stopped = await communicator.receive_output(TIMEOUT)
        await communicator.wait(TIMEOUT)  # returns after shutdown: nothing left running
        return started, stopped

    assert run(scenario()) == (
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    )


def test_any_other_scope_type_fails_with_a_clear_message():
    async def scenario():
        communicator = ApplicationCommunicator(asgi.application, {"type": "webtransport"})
        await communicator.wait(TIMEOUT)

    with pytest.raises(ValueError) as failure:
        run(scenario())
    assert str(failure.value) == "newtest.asgi has no route for 'webtransport' connections."
