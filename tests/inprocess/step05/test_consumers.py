"""Step 05's consumers in process, through the whole `newtest.asgi.application` (origin check,
auth middleware, URL routing) with Channels' WebsocketCommunicator and the in-memory layer."""

import asyncio
import json

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from echo.consumers import MAX_MESSAGE_BYTES, MESSAGE_TOO_BIG

from chat.consumers import BAD_ROOM_NAME, MAX_MESSAGE_LENGTH
from chat.rooms import MAX_ROOM_NAME_LENGTH, group_name
from newtest.asgi import application

TIMEOUT = 10
ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def run(scenario):
    return asyncio.run(scenario())


async def connected(path, origin=ORIGIN):
    headers = [(b"host", b"127.0.0.1:8000")] + ([origin] if origin else [])
    communicator = WebsocketCommunicator(application, path, headers=headers)
    accepted, _ = await communicator.connect(TIMEOUT)
    assert accepted, path
    return communicator


async def say(communicator, content):
    await communicator.send_to(
        text_data=json.dumps(content) if not isinstance(content, str) else content
    )


async def heard(communicator):
    return json.loads(await communicator.receive_from(TIMEOUT))


async def hears_nothing(communicator):
    return await communicator.receive_nothing(timeout=0.5)


# --- echo: step 04's endpoint as a consumer -------------------------------------------------


def test_echo_consumer_echoes_text_and_binary_frames_as_the_same_kind():
    async def scenario():
        echo = await connected("/ws/echo/")
        for frame in ["Hello, ASGI!", "ünïcode ✓", ""]:
            # send_input, not send_to: the communicator's send_to refuses an empty frame
            await echo.send_input({"type": "websocket.receive", "text": frame})
            assert await echo.receive_output(TIMEOUT) == {"type": "websocket.send", "text": frame}
        for frame in [b"\x00\xffbinary", b"x" * MAX_MESSAGE_BYTES]:
            await echo.send_to(bytes_data=frame)
            assert await echo.receive_output(TIMEOUT) == {"type": "websocket.send", "bytes": frame}
        await echo.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    "frame", [b"x" * (MAX_MESSAGE_BYTES + 1), "é" * (MAX_MESSAGE_BYTES // 2 + 1)]
)
def test_echo_consumer_closes_with_1009_over_the_limit_in_bytes(frame):
    # No server here refuses 1009 (daphne does, see the real-server tests), so the app sends it.
    async def scenario():
        echo = await connected("/ws/echo/")
        await echo.send_to(
            **({"bytes_data": frame} if isinstance(frame, bytes) else {"text_data": frame})
        )
        assert await echo.receive_output(TIMEOUT) == {
            "type": "websocket.close",
            "code": MESSAGE_TOO_BIG,
        }

    run(scenario)


# --- chat: rooms are groups -----------------------------------------------------------------


def test_a_message_reaches_everyone_in_the_room_and_nobody_in_another():
    async def scenario():
        alice, bob = await connected("/ws/chat/lobby/"), await connected("/ws/chat/lobby/")
        carol = await connected("/ws/chat/kitchen/")
        await say(alice, {"message": "hello, lobby"})
        assert await heard(alice) == {"message": "hello, lobby"}
        assert await heard(bob) == {"message": "hello, lobby"}
        assert await hears_nothing(carol)
        await say(carol, {"message": "hello, kitchen"})
        assert await heard(carol) == {"message": "hello, kitchen"}
        assert await hears_nothing(alice) and await hears_nothing(bob)
        for communicator in (alice, bob, carol):
            await communicator.disconnect()

    run(scenario)


def test_the_socket_is_in_the_group_once_the_handshake_is_accepted_and_leaves_on_disconnect():
    async def scenario():
        layer = get_channel_layer()
        alice = await connected("/ws/chat/lobby/")
        assert len(layer.groups[group_name("lobby")]) == 1
        bob = await connected("/ws/chat/lobby/")
        assert len(layer.groups[group_name("lobby")]) == 2
        await bob.disconnect()
        await alice.disconnect()
        assert not layer.groups.get(group_name("lobby"))

    run(scenario)


def test_html_in_a_message_is_carried_as_plain_text():
    async def scenario():
        alice = await connected("/ws/chat/lobby/")
        text = '<img src=x onerror="alert(1)"><b>bold</b> & "quotes"'
        await say(alice, {"message": text})
        assert await heard(alice) == {"message": text}
        await alice.disconnect()

    run(scenario)


# --- bad input: an error reply on that socket, and the room goes on ------------------------

BAD_FRAMES = {
    "not JSON": ("hello", "not JSON"),
    "JSON but not an object": ('["message", "hi"]', 'no "message" text'),
    "no message field": ('{"text": "hi"}', 'no "message" text'),
    "message not a string": ('{"message": 42}', 'no "message" text'),
    "nested too deep": ("[" * MAX_MESSAGE_LENGTH, "not JSON"),
    "lone surrogate": ('{"message": "\\ud800"}', "not valid Unicode"),
    "too long": (json.dumps({"message": "x" * MAX_MESSAGE_LENGTH}), "message too long"),
}


@pytest.mark.parametrize("frame, error", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_bad_frame_gets_an_error_reply_and_breaks_nothing(frame, error):
    async def scenario():
        alice, bob = await connected("/ws/chat/lobby/"), await connected("/ws/chat/lobby/")
        await alice.send_to(text_data=frame)
        reply = await heard(alice)
        assert error in reply["error"]
        assert await hears_nothing(bob)  # nothing reached the room
        await say(alice, {"message": "still here"})  # the same socket still chats
        assert await heard(alice) == {"message": "still here"}
        assert await heard(bob) == {"message": "still here"}
        await alice.disconnect()
        await bob.disconnect()

    run(scenario)


def test_a_binary_frame_gets_an_error_reply():
    async def scenario():
        alice = await connected("/ws/chat/lobby/")
        await alice.send_to(bytes_data=b'{"message": "hi"}')
        assert (await heard(alice))["error"] == "send text frames, not binary ones"
        await say(alice, {"message": "hi"})
        assert await heard(alice) == {"message": "hi"}
        await alice.disconnect()

    run(scenario)


def test_a_message_at_the_limit_is_sent():
    async def scenario():
        alice = await connected("/ws/chat/lobby/")
        frame = json.dumps({"message": "x" * (MAX_MESSAGE_LENGTH - len('{"message": ""}'))})
        assert len(frame) == MAX_MESSAGE_LENGTH
        await alice.send_to(text_data=frame)
        assert "message" in await heard(alice)
        await alice.disconnect()

    run(scenario)


BAD_ROOM_NAMES = {
    "space": "two%20words",
    "not ASCII": "caf%C3%A9",
    "punctuation": "a!b",
    "too long": "r" * (MAX_ROOM_NAME_LENGTH + 1),
}


@pytest.mark.parametrize("room", BAD_ROOM_NAMES.values(), ids=BAD_ROOM_NAMES.keys())
def test_a_room_name_that_cannot_be_a_group_is_refused_with_a_reason_and_4008(room):
    async def scenario():
        # The communicator takes the path as a browser sends it, percent-encoded.
        communicator = await connected(f"/ws/chat/{room}/")
        reply = await heard(communicator)
        assert "a room name" in reply["error"]
        assert await communicator.receive_output(TIMEOUT) == {
            "type": "websocket.close",
            "code": BAD_ROOM_NAME,
        }

    run(scenario)


def test_the_longest_room_name_allowed_works():
    async def scenario():
        room = "r" * MAX_ROOM_NAME_LENGTH
        alice = await connected(f"/ws/chat/{room}/")
        await say(alice, {"message": "roomy"})
        assert await heard(alice) == {"message": "roomy"}
        await alice.disconnect()

    run(scenario)


def test_a_foreign_origin_is_refused_at_the_handshake():
    async def scenario():
        # app.localhost: Django 5.2's own DEBUG hosts allow it, Channels' validator does not.
        foreign = [
            b"http://evil.example",
            b"http://127.0.0.1.evil.example",
            b"http://app.localhost:8000",
        ]
        for origin in [(b"origin", value) for value in foreign] + [None]:
            headers = [(b"host", b"127.0.0.1:8000")] + ([origin] if origin else [])
            communicator = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=headers)
            accepted, close_code = await communicator.connect(TIMEOUT)
            assert not accepted, origin
            await communicator.disconnect()

    run(scenario)


def test_a_failing_channel_layer_ends_the_consumer_with_its_exception(monkeypatch):
    # What a Redis outage looks like to the consumer: the layer's calls raise. Step 05 lets the
    # exception end the application, and the server drops the socket; step 06 answers it.
    async def scenario():
        alice = await connected("/ws/chat/lobby/")
        layer = get_channel_layer()

        async def group_send_fails(group, message):
            raise ConnectionError("Redis went away")

        monkeypatch.setattr(layer, "group_send", group_send_fails)
        await say(alice, {"message": "anyone?"})
        # wait() returns as soon as the application ends, raising what ended it (receive_output
        # would first wait out its whole timeout for a frame that never comes).
        with pytest.raises(ConnectionError, match="Redis went away"):
            await alice.wait(TIMEOUT)

    run(scenario)


def test_a_path_with_no_consumer_is_refused_at_the_handshake():
    async def scenario():
        headers = [(b"host", b"127.0.0.1:8000"), ORIGIN]
        communicator = WebsocketCommunicator(application, "/ws/nowhere/", headers=headers)
        accepted, _ = await communicator.connect(TIMEOUT)
        assert not accepted
        await communicator.disconnect()

    run(scenario)


def test_without_the_last_route_urlrouter_fails_on_an_unknown_path():
    # Why asgi.py ends websocket_urlpatterns with WebsocketDenier: the servers turn this into a 500.
    from channels.routing import URLRouter

    from newtest.asgi import websocket_urlpatterns

    async def scenario():
        router = URLRouter(websocket_urlpatterns[:-1])
        scope = {"type": "websocket", "path": "/ws/nowhere/", "headers": []}
        with pytest.raises(ValueError, match="No route found for path"):
            await router(scope, None, None)

    run(scenario)
