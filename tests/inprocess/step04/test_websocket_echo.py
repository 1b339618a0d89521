"""newtest/websocket_echo.py in process, message by message, as the ASGI spec writes them."""

import asyncio

import django
import pytest
from asgiref.testing import ApplicationCommunicator
from django.test import override_settings

from newtest.websocket_echo import MAX_MESSAGE_BYTES, host_is_allowed, websocket_echo

TIMEOUT = 10
ALLOWED_ORIGIN = b"http://127.0.0.1:8000"


def scope(path="/ws/echo/", origin=ALLOWED_ORIGIN):
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin))
    return {"type": "websocket", "path": path, "headers": headers}


async def open_echo(app_scope=None, app=websocket_echo):
    """Starts the app and sends websocket.connect; returns the communicator and its answer."""
    communicator = ApplicationCommunicator(app, app_scope or scope())
    await communicator.send_input({"type": "websocket.connect"})
    return communicator, await communicator.receive_output(TIMEOUT)


async def app_returns(communicator):
    await communicator.wait(TIMEOUT)  # raises if the app is still running after TIMEOUT
    return communicator.future.done()


def test_echoes_text_and_binary_frames_in_order_then_ends_on_disconnect():
    async def scenario():
        communicator, answer = await open_echo()
        assert answer == {"type": "websocket.accept"}
        sent = ["Hello, ASGI!", b"\x00\xffbinary", "", "ünïcode ✓", b"x" * 1000]
        for message in sent:
            key = "text" if isinstance(message, str) else "bytes"
            await communicator.send_input({"type": "websocket.receive", key: message})
        echoed = [await communicator.receive_output(TIMEOUT) for _ in sent]
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        assert await app_returns(communicator)
        assert await communicator.receive_nothing()
        return sent, echoed

    sent, echoed = asyncio.run(scenario())
    assert echoed == [
        {"type": "websocket.send", "text" if isinstance(m, str) else "bytes": m} for m in sent
    ]


@pytest.mark.parametrize(
    "app_scope, reason",
    [
        (scope(path="/ws/nope/"), "no WebSocket route for this path"),
        (scope(path="/ws/echo"), "no WebSocket route for this path"),
        (
            scope(origin=b"http://evil.example"),
            "Origin http://evil.example is not in ALLOWED_HOSTS",
        ),
        (scope(origin=b"http://127.0.0.1.evil.example:8000"), "is not in ALLOWED_HOSTS"),
        (scope(origin=b"null"), "Origin null is not in ALLOWED_HOSTS"),
        (scope(origin=None), "no Origin header"),
    ],
    ids=[
        "unknown path",
        "path without slash",
        "foreign origin",
        "look-alike origin",
        "null origin",
        "missing origin",
    ],
)
def test_refused_before_the_handshake_completes(app_scope, reason, caplog):
    async def scenario():
        communicator, answer = await open_echo(app_scope)
        assert await app_returns(communicator)
        return answer

    # websocket.close before websocket.accept: the server answers the handshake with 403.
    assert asyncio.run(scenario()) == {"type": "websocket.close"}
    assert reason in caplog.text
    assert f"WebSocket {app_scope['path']} refused: " in caplog.text


def test_missing_origin_is_refused_even_from_a_non_browser_client():
    # The choice stated in the README: no Origin, no connection (as Channels' validator does).
    async def scenario():
        communicator, answer = await open_echo(scope(origin=None))
        await communicator.wait(TIMEOUT)
        return answer

    assert asyncio.run(scenario())["type"] == "websocket.close"


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1:8000", True),
        ("localhost:8000", True),
        ("[::1]:8000", True),
        ("localhost", True),
        ("evil.example", False),
        ("127.0.0.2:8000", False),
        ("", False),
    ],
)
def test_origin_rule_with_debug_and_empty_allowed_hosts(host, allowed):
    assert host_is_allowed(host) is allowed


def test_origin_rule_follows_the_installed_djangos_debug_defaults():
    # The two tracks differ: Django 3.0 allows exactly "localhost", Django 5.2 ".localhost",
    # which takes in its subdomains too. The app asks the installed Django, so it follows.
    subdomains_allowed = django.VERSION[:2] != (3, 0)
    assert host_is_allowed("app.localhost:8000") is subdomains_allowed


@override_settings(DEBUG=False, ALLOWED_HOSTS=[".example.com", "chat.example.org"])
def test_origin_rule_follows_allowed_hosts_patterns():
    assert host_is_allowed("example.com")
    assert host_is_allowed("www.example.com:443")
    assert host_is_allowed("chat.example.org")
    assert not host_is_allowed("example.org")
    assert not host_is_allowed("localhost:8000")  # the DEBUG defaults are gone


@override_settings(DEBUG=False, ALLOWED_HOSTS=["chat.example.org"])
def test_origin_is_compared_with_allowed_hosts_not_with_the_host_header():
    async def scenario(origin):
        communicator, answer = await open_echo(scope(origin=origin))
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(TIMEOUT)
        return answer["type"]

    assert asyncio.run(scenario(b"https://chat.example.org")) == "websocket.accept"
    assert asyncio.run(scenario(b"http://127.0.0.1:8000")) == "websocket.close"


def over_the_limit_scenario(message):
    async def scenario():
        communicator, answer = await open_echo()
        assert answer == {"type": "websocket.accept"}
        await communicator.send_input({"type": "websocket.receive", **message})
        closing = await communicator.receive_output(TIMEOUT)
        assert await app_returns(communicator)
        return closing

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "message",
    [
        {"text": "x" * (MAX_MESSAGE_BYTES + 1)},
        {"bytes": b"x" * (MAX_MESSAGE_BYTES + 1)},
        # 32769 characters, but 65538 bytes in UTF-8: the limit counts bytes.
        {"text": "é" * (MAX_MESSAGE_BYTES // 2 + 1)},
    ],
    ids=["text", "bytes", "multi-byte text"],
)
def test_a_message_over_the_limit_closes_with_1009(message, caplog):
    assert over_the_limit_scenario(message) == {
        "type": "websocket.close",
        "code": 1009,
        "reason": "messages are limited to 65536 bytes",
    }
    assert "WebSocket /ws/echo/ closed: a message of " in caplog.text


@pytest.mark.parametrize("key", ["text", "bytes"])
def test_a_message_exactly_at_the_limit_is_echoed(key):
    message = "x" * MAX_MESSAGE_BYTES if key == "text" else b"x" * MAX_MESSAGE_BYTES

    async def scenario():
        communicator, _ = await open_echo()
        await communicator.send_input({"type": "websocket.receive", key: message})
        echoed = await communicator.receive_output(TIMEOUT)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(TIMEOUT)
        return echoed

    assert asyncio.run(scenario()) == {"type": "websocket.send", key: message}


def test_a_server_that_refuses_1009_gets_4009():
    """What daphne does: its autobahn raises on any close code but 1000 and 3000-4999."""
    sent = []

    async def daphne_like_send(message):
        code = message.get("code", 1000)
        if message["type"] == "websocket.close" and not (code == 1000 or 3000 <= code <= 4999):
            raise Exception(f"invalid close code {code} (must be 1000 or from [3000, 4999])")
        sent.append(message)

    async def scenario():
        messages = iter(
            [
                {"type": "websocket.connect"},
                {"type": "websocket.receive", "bytes": b"x" * (MAX_MESSAGE_BYTES + 1)},
            ]
        )

        async def receive():
            return next(messages)

        await asyncio.wait_for(websocket_echo(scope(), receive, daphne_like_send), TIMEOUT)

    asyncio.run(scenario())
    assert sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 4009, "reason": "messages are limited to 65536 bytes"},
    ]


def test_a_client_that_closes_right_after_connecting_ends_the_app():
    async def scenario():
        communicator, answer = await open_echo()
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        assert await app_returns(communicator)
        assert await communicator.receive_nothing()
        return answer

    assert asyncio.run(scenario()) == {"type": "websocket.accept"}


def test_a_client_that_vanishes_mid_conversation_ends_the_app():
    # A dropped TCP connection reaches the app as websocket.disconnect with code 1006.
    async def scenario():
        communicator, _ = await open_echo()
        await communicator.send_input({"type": "websocket.receive", "text": "one"})
        echoed = await communicator.receive_output(TIMEOUT)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1006})
        assert await app_returns(communicator)
        return echoed

    assert asyncio.run(scenario()) == {"type": "websocket.send", "text": "one"}
