"""Step 06's chat consumer in process, through the whole `newtest.asgi.application`, with
Channels' WebsocketCommunicator, the in-memory layer and an in-memory test database."""

import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.exceptions import SynchronousOnlyOperation
from django.core.management import call_command
from django.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError
from uvicorn.protocols.utils import ClientDisconnected

from chat.consumers import CHAT_FAILED, ChatConsumer
from chat.flood_control import BURST, TokenBucket
from chat.history import HISTORY_LENGTH, store_message
from chat.models import Message
from newtest.asgi import application

pytestmark = pytest.mark.anyio
TIMEOUT = 10
HOST = (b"host", b"127.0.0.1:8000")
ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def new_room():
    return "room-" + uuid.uuid4().hex[:8]


async def connected(room, query="", cookie=None):
    headers = [HOST, ORIGIN] + ([(b"cookie", cookie.encode())] if cookie else [])
    communicator = WebsocketCommunicator(application, f"/ws/chat/{room}/{query}", headers=headers)
    accepted, _ = await communicator.connect(TIMEOUT)
    assert accepted
    return communicator


async def say(communicator, content):
    await communicator.send_to(text_data=json.dumps(content))


async def heard(communicator):
    return json.loads(await communicator.receive_from(TIMEOUT))


@database_sync_to_async
def stored(room):
    return list(Message.objects.filter(room=room).values_list("id", "text", "author"))


async def test_a_message_is_stored_then_sent_with_its_id_and_the_one_before_it():
    room = new_room()
    alice, bob = await connected(room), await connected(room)
    await say(alice, {"message": "first", "ref": "a1"})
    first_to_bob = await heard(bob)
    first_to_alice = await heard(alice)
    await say(bob, {"message": "second"})
    second = await heard(alice)
    assert first_to_alice == {**first_to_bob, "ref": "a1"}  # the ref is the sender's only
    assert first_to_bob["previous_id"] is None
    assert second["previous_id"] == first_to_bob["id"] < second["id"]
    assert first_to_bob["author"] is None  # an anonymous visitor
    assert await stored(room) == [(first_to_bob["id"], "first", ""), (second["id"], "second", "")]
    await alice.disconnect()
    await bob.disconnect()


async def test_a_message_is_stored_even_when_sending_it_to_the_room_fails(monkeypatch):
    room = new_room()
    alice = await connected(room)

    async def layer_gone(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(get_channel_layer(), "group_send", layer_gone)
    await say(alice, {"message": "kept"})
    assert (await heard(alice))["error"].startswith("the chat stopped working (ConnectionError)")
    assert await alice.receive_output(TIMEOUT) == {"type": "websocket.close", "code": CHAT_FAILED}
    assert [text for _, text, _ in await stored(room)] == ["kept"]


@pytest.mark.parametrize(
    "client_gone",
    [ClientDisconnected(), Disconnected("Attempt to send on a closed protocol")],
    ids=["uvicorn", "daphne"],
)
async def test_a_consumer_whose_client_has_gone_stores_what_it_still_has(monkeypatch, client_gone):
    """What each server raises when the consumer sends to a client that has left: the
    consumer carries on with the frames that client sent before it left."""
    room = new_room()
    alice = await connected(room)

    async def send_fails(self, text_data=None, bytes_data=None, close=False):
        raise client_gone

    monkeypatch.setattr(ChatConsumer, "send", send_fails)
    for number in range(3):
        await say(alice, {"message": f"sent before leaving #{number}"})
    assert await alice.receive_nothing(1)  # its copies could not go anywhere...
    assert not alice.future.done()  # ...and the consumer is still there
    assert [text for _, text, _ in await stored(room)] == [
        f"sent before leaving #{number}" for number in range(3)
    ]
    await alice.disconnect()


async def test_a_socket_that_joins_gets_the_recent_history_and_can_ask_for_more():
    room = new_room()
    for number in range(HISTORY_LENGTH + 10):
        await database_sync_to_async(store_message)(room, f"m{number}")
    rows = await stored(room)
    late = await connected(room)
    history = [await heard(late) for _ in range(HISTORY_LENGTH)]
    assert [m["id"] for m in history] == [number for number, _, _ in rows[-HISTORY_LENGTH:]]
    assert all(m["previous_id"] == p["id"] for p, m in zip(history, history[1:], strict=False))
    assert history[0]["previous_id"] == rows[-HISTORY_LENGTH - 1][0]
    assert await late.receive_nothing(0.3)
    await say(late, {"after": rows[4][0]})
    assert [(await heard(late))["message"] for _ in range(5)] == [f"m{n}" for n in range(5, 10)]
    await late.disconnect()
    reconnecting = await connected(room, query=f"?after={rows[-3][0]}")
    assert [(await heard(reconnecting))["id"] for _ in range(2)] == [n for n, _, _ in rows[-2:]]
    assert await reconnecting.receive_nothing(0.3)
    await reconnecting.disconnect()


async def test_past_the_burst_each_refused_message_gets_one_refusal_and_is_not_stored():
    room = new_room()
    flooder, reader = await connected(room), await connected(room)
    for number in range(1, BURST + 11):
        await say(flooder, {"message": f"flood {number}", "ref": number})
    frames = [await heard(flooder) for _ in range(BURST + 10)]
    refusals = [f for f in frames if "refused" in f]
    accepted = [f for f in frames if "id" in f]
    assert len(accepted) >= BURST and refusals
    assert len(accepted) + len(refusals) == BURST + 10
    for refusal in refusals:
        number = refusal["refused"]["number"]
        assert refusal["refused"] == {"message": f"flood {number}", "ref": number, "number": number}
        assert refusal["error"].startswith("too many messages")
    assert sorted(text for _, text, _ in await stored(room)) == sorted(
        m["message"] for m in accepted
    )
    reader_got = [(await heard(reader))["message"] for _ in accepted]
    assert sorted(reader_got) == sorted(m["message"] for m in accepted)
    assert await reader.receive_nothing(0.3)  # nothing refused reached the room
    await flooder.disconnect()
    await reader.disconnect()


def test_the_token_bucket_allows_the_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(capacity=20, per_second=10, clock=lambda: now[0])
    assert all(bucket.take() for _ in range(20))
    assert not bucket.take()
    now[0] += 1.0  # a second later, ten more
    assert [bucket.take() for _ in range(11)] == [True] * 10 + [False]


@pytest.mark.parametrize("frame", ["hello", '{"text": "hi"}', '{"after": "x"}', '{"message": 1}'])
async def test_a_bad_frame_gets_an_error_and_nothing_is_stored(frame):
    room = new_room()
    alice = await connected(room)
    await alice.send_to(text_data=frame)
    assert set(await heard(alice)) == {"error"}
    assert await stored(room) == []
    await alice.disconnect()


async def test_a_logged_in_visitor_is_named_and_a_stale_session_is_anonymous():
    room = new_room()
    username = "alice-" + uuid.uuid4().hex[:6]

    def log_in():
        User.objects.create_user(username, password="correct horse")
        client = Client()
        assert client.login(username=username, password="correct horse")
        return client.cookies["sessionid"].value

    session = await sync_to_async(log_in)()
    alice = await connected(room, cookie=f"sessionid={session}")
    stale = await connected(room, cookie="sessionid=stale0000000000000000000000000000")
    await say(alice, {"message": "from alice"})
    await say(stale, {"message": "from a stale cookie"})
    authors = {}
    for _ in range(2):
        message = await heard(alice)
        authors[message["message"]] = message["author"]
    assert authors == {"from alice": username, "from a stale cookie": None}
    await alice.disconnect()
    await stale.disconnect()


async def test_the_announce_command_stores_and_reaches_the_room():
    room = new_room()
    alice = await connected(room)
    await sync_to_async(call_command)("announce", room, "the building closes at six")
    message = await heard(alice)
    assert message["message"] == "the building closes at six" and message["author"] is None
    assert [text for _, text, _ in await stored(room)] == ["the building closes at six"]
    await alice.disconnect()


async def test_the_orm_called_straight_from_async_code_raises_synchronous_only_operation():
    # The write-up's warning, made concrete: Django refuses a blocking ORM call in the event
    # loop's thread. This is why the consumer goes through database_sync_to_async.
    with pytest.raises(SynchronousOnlyOperation, match="async context"):
        store_message(new_room(), "straight from async code")
    stored_through_a_thread = await database_sync_to_async(store_message)(new_room(), "right")
    assert stored_through_a_thread["message"] == "right"
