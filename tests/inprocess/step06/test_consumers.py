"""Step 06's chat consumer in process, through the whole `newtest.asgi.application`, with
Channels' WebsocketCommunicator, the in-memory layer and an in-memory test database."""

import asyncio
import json
import uuid

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.exceptions import SynchronousOnlyOperation
from django.core.management import call_command
from django.db import IntegrityError
from django.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError
from uvicorn.protocols.utils import ClientDisconnected

from chat import consumers, outbox, resends
from chat.consumers import CHAT_FAILED, MAX_MESSAGE_LENGTH, ChatConsumer
from chat.flood_control import BURST, RATE, TokenBucket
from chat.history import HISTORY_LENGTH, store_message
from chat.models import Message
from chat.resends import store_once
from newtest.asgi import application

pytestmark = pytest.mark.anyio
TIMEOUT = 10
HOST = (b"host", b"127.0.0.1:8000")
ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def new_room():
    return "room-" + uuid.uuid4().hex[:8]


async def connected(room, query="", cookie=None):
    """A socket in the room, once it has joined: `.history` holds the frames it got before the
    server said so, and `.joined` that frame."""
    headers = [HOST, ORIGIN] + ([(b"cookie", cookie.encode())] if cookie else [])
    communicator = WebsocketCommunicator(application, f"/ws/chat/{room}/{query}", headers=headers)
    accepted, _ = await communicator.connect(TIMEOUT)
    assert accepted
    communicator.history = []
    while "joined" not in (frame := await heard(communicator)):
        communicator.history.append(frame)
    communicator.joined = frame
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
    history = late.history
    assert [m["id"] for m in history] == [number for number, _, _ in rows[-HISTORY_LENGTH:]]
    assert late.joined == {"joined": room, "newest_id": rows[-1][0]}
    assert all(m["previous_id"] == p["id"] for p, m in zip(history, history[1:], strict=False))
    assert history[0]["previous_id"] == rows[-HISTORY_LENGTH - 1][0]
    assert await late.receive_nothing(0.3)
    await say(late, {"after": rows[4][0]})
    assert [(await heard(late))["message"] for _ in range(5)] == [f"m{n}" for n in range(5, 10)]
    await late.disconnect()
    reconnecting = await connected(room, query=f"?after={rows[-3][0]}")
    assert [m["id"] for m in reconnecting.history] == [n for n, _, _ in rows[-2:]]
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
    bucket = TokenBucket(clock=lambda: now[0])  # the consumer's own BURST and RATE
    assert (BURST, RATE) == (30, 12)  # what step 06's README promises
    assert all(bucket.take() for _ in range(BURST))
    assert not bucket.take()
    now[0] += 1.0  # a second later, RATE more
    assert [bucket.take() for _ in range(RATE + 1)] == [True] * RATE + [False]
    now[0] += 60.0  # a long pause refills it to BURST, no more
    assert [bucket.take() for _ in range(BURST + 1)] == [True] * BURST + [False]


@pytest.mark.parametrize("frame", ["hello", '{"text": "hi"}', '{"after": "x"}', '{"message": 1}'])
async def test_a_bad_frame_gets_an_error_and_nothing_is_stored(frame):
    room = new_room()
    alice = await connected(room)
    await alice.send_to(text_data=frame)
    refusal = await heard(alice)
    assert set(refusal) == {"error", "refused"}
    assert refusal["refused"]["number"] == 1 and refusal["refused"]["ref"] is None
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


# --- exactly once: a ref is the message's id in its room ------------------------------------


async def test_a_message_sent_again_with_its_ref_is_answered_with_the_stored_copy_only():
    room = new_room()
    alice, bob = await connected(room), await connected(room)
    await say(alice, {"message": "once", "ref": 7})
    first = await heard(alice)
    assert (await heard(bob))["id"] == first["id"]
    await alice.disconnect()  # as if the answer had been lost: a new socket sends it again
    again = await connected(room)
    await say(again, {"message": "once", "ref": 7})
    assert await heard(again) == first  # same id, same ref (a number, as it was sent)
    await say(again, {"message": "next"})  # its arrival proves the resend reached nobody else
    assert (await heard(bob))["message"] == "next"
    assert [text for _, text, _ in await stored(room)] == ["once", "next"]
    other_room = await connected(new_room())  # the same ref in another room: another message
    await say(other_room, {"message": "once", "ref": 7})
    assert (await heard(other_room))["id"] != first["id"]
    for communicator in (again, bob, other_room):
        await communicator.disconnect()


async def test_two_stores_of_one_ref_at_the_same_moment_keep_one(monkeypatch):
    # The race the unique constraint settles: the second insert of a ref is refused by the
    # database, and the second sender gets the first one's message.
    room = new_room()
    winner = await database_sync_to_async(store_once)(room, "first", None, "r1")
    frame, new = await database_sync_to_async(store_once)(room, "second", None, "r1")
    assert winner[1] is True and new is False
    assert (frame["id"], frame["message"]) == (winner[0]["id"], "first")
    assert [text for _, text, _ in await stored(room)] == ["first"]
    # Any other integrity error is not taken for a resend.
    monkeypatch.setattr(resends, "stored_with_ref", lambda room, ref: None)
    with pytest.raises(IntegrityError):
        await database_sync_to_async(store_once)(room, "third", None, "r1")


REFUSED_WITH_THEIR_REF = {
    "too long": ({"message": "x" * (MAX_MESSAGE_LENGTH + 1), "ref": "r"}, "message too long"),
    "no text": ({"text": "hi", "ref": "r"}, 'no "message" text'),
    "bad ref": ({"message": "hi", "ref": ["r"]}, '"ref" is a string or number'),
}


@pytest.mark.parametrize(
    "frame, reason", REFUSED_WITH_THEIR_REF.values(), ids=REFUSED_WITH_THEIR_REF
)
async def test_a_refusal_names_the_ref_of_the_frame_it_refuses(frame, reason):
    room = new_room()
    alice = await connected(room)
    await say(alice, {"message": "y" * MAX_MESSAGE_LENGTH, "ref": "fits"})  # 2000: accepted
    assert (await heard(alice))["ref"] == "fits"
    await say(alice, frame)
    refusal = await heard(alice)
    assert refusal["error"].startswith(reason)
    ref = frame["ref"] if isinstance(frame["ref"], str) else None
    assert refusal["refused"] == {"message": frame.get("message"), "ref": ref, "number": 2}
    assert [text for _, text, _ in await stored(room)] == ["y" * MAX_MESSAGE_LENGTH]
    await alice.disconnect()


async def test_the_length_limit_counts_the_typed_text_not_the_frame():
    room = new_room()
    alice = await connected(room)
    text = "\u00e9" * MAX_MESSAGE_LENGTH  # json.dumps makes each one 6 characters: "\\u00e9"
    await say(alice, {"message": text, "ref": "accented"})
    assert (await heard(alice))["message"] == text
    await alice.send_to(text_data="x" * (consumers.MAX_FRAME_LENGTH + 1))
    refusal = await heard(alice)
    assert refusal["error"].startswith("frame too long")  # refused unread
    await alice.disconnect()


async def test_a_stored_message_resent_past_the_flood_limit_is_answered_not_refused(monkeypatch):
    # A clock that stands still: the allowance does not refill while the test sends.
    monkeypatch.setattr(consumers, "TokenBucket", lambda: TokenBucket(clock=lambda: 0.0))
    room = new_room()
    alice = await connected(room)
    await say(alice, {"message": "kept", "ref": "k"})
    kept = await heard(alice)
    for number in range(BURST):  # the allowance spent (the first one took one)
        await say(alice, {"message": f"spend {number}"})
    frames = [await heard(alice) for _ in range(BURST)]
    assert [f["refused"]["number"] for f in frames if "refused" in f] == [BURST + 1]
    await say(alice, {"message": "kept", "ref": "k"})
    assert await heard(alice) == kept  # it is in the room: telling "not sent" would be false
    await alice.disconnect()


async def test_a_failing_layer_logs_one_line_per_socket_and_one_traceback_per_cause(
    monkeypatch, caplog
):
    room = new_room()
    sockets = [await connected(room) for _ in range(3)]
    cause = "Error 111 connecting to 127.0.0.1:1. Connection refused. " + uuid.uuid4().hex

    async def layer_gone(*args, **kwargs):
        raise RedisConnectionError(cause)

    monkeypatch.setattr(get_channel_layer(), "group_send", layer_gone)
    for number, communicator in enumerate(sockets):
        await say(communicator, {"message": f"kept {number}"})
        assert (await heard(communicator))["error"].startswith("the chat stopped working")
        assert (await communicator.receive_output(TIMEOUT))["code"] == CHAT_FAILED
    lines = [r for r in caplog.records if r.name == "chat.consumers" and cause in r.getMessage()]
    assert len(lines) == 3, [r.getMessage() for r in lines]  # one per socket, with the cause
    assert [r.exc_info is not None for r in lines] == [True, False, False]
    assert room in lines[0].getMessage()


async def test_announce_without_a_channel_layer_says_the_message_is_stored(monkeypatch, capsys):
    room = new_room()

    async def layer_gone(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(get_channel_layer(), "group_send", layer_gone)
    await sync_to_async(call_command)("announce", room, "said while Redis is away")
    [(number, text, _)] = await stored(room)
    printed = capsys.readouterr().out
    assert printed.startswith(f"message {number} stored in room {room}, but not sent")
    assert "they will get it when they catch up" in printed


async def test_a_client_that_stops_reading_holds_up_nobody_and_catches_up_once_it_reads(
    monkeypatch,
):
    """A socket's frames go out through its outbox, sent by a task of its own: while its client
    does not read, its consumer and the process's writer carry on for everyone else, at most
    QUEUED_LIMIT characters wait for it, and the room's messages past that are left out. Reading
    again, it gets what waited, then a "joined" frame naming the newest id, and asks for the
    rest."""
    monkeypatch.setattr(outbox, "QUEUED_LIMIT", 5000)
    monkeypatch.setattr(outbox, "STALLED_AFTER", 0.2)
    room = new_room()
    sleeper, bob = await connected(room, "?sleeper"), await connected(room)
    await say(sleeper, {"message": "mine", "ref": "s1"})
    mine = await heard(sleeper)
    await heard(bob)
    reading, stalled = asyncio.Event(), []
    real_send = ChatConsumer.send

    async def send(self, text_data=None, bytes_data=None, close=False):
        if self.scope["query_string"] == b"sleeper":  # its client stops reading
            stalled.append(self)
            await reading.wait()
        await real_send(self, text_data, bytes_data, close)

    monkeypatch.setattr(ChatConsumer, "send", send)
    # The writer answers a resend to its sender only: the sleeper's answer must wait for it.
    await say(sleeper, {"message": "mine", "ref": "s1"})
    while not stalled:  # the writer has answered, and the answer's send waits
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # past STALLED_AFTER: the sleeper counts as not reading
    texts = [f"{number:02} " + "x" * 1000 for number in range(20)]
    for number, text in enumerate(texts):  # with refs: his own copies are never left out
        await say(bob, {"message": text, "ref": f"b{number}"})
    to_bob = [await heard(bob) for _ in texts]  # nobody was held up
    assert [frame["message"] for frame in to_bob] == texts
    (consumer,) = set(stalled)
    assert 0 < consumer.outbox.queued <= 5000 and consumer.outbox.left_out > 0
    reading.set()
    frames = [await heard(sleeper)]  # its own copy again, the answer to the resend
    assert frames[0] == mine
    while "joined" not in (frame := await heard(sleeper)):
        frames.append(frame)
    assert frame == {"joined": room, "newest_id": to_bob[-1]["id"]}
    held = [f["id"] for f in frames[1:]]
    assert all("ref" not in f for f in frames[1:])  # bob's refs are his own
    assert held == [f["id"] for f in to_bob[: len(held)]] and len(held) < len(texts)
    await say(sleeper, {"after": held[-1]})
    rest = [await heard(sleeper) for _ in range(len(texts) - len(held))]
    assert [f["id"] for f in rest] == [f["id"] for f in to_bob[len(held) :]]
    for communicator in (sleeper, bob):
        await communicator.disconnect()


async def test_a_message_reaches_the_room_without_a_thread_hop_per_socket(monkeypatch):
    """Channels 4 hops to the database thread before every handler; this consumer's handlers
    never touch the database, so it skips that hop. Counted: every sync_to_async call made
    while a message goes from alice to the room (the writer stores on a thread of its own)."""
    room = new_room()
    sockets = [await connected(room) for _ in range(5)]
    hops = []
    original = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__name__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    await say(sockets[0], {"message": "no hops", "ref": "h1"})
    frames = [await heard(socket) for socket in sockets]
    assert [frame["message"] for frame in frames] == ["no hops"] * 5
    assert hops == []
    for socket in sockets:
        await socket.disconnect()
