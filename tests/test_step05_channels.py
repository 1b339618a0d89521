"""Step 05: Channels serves the echo and a chat with rooms, under real runserver, daphne and
uvicorn processes; with Redis (a real redis-server started here) the rooms span processes.

Servers without REDIS_URL use the in-memory layer. The scale-out and fault tests start the
README's own commands: `redis-server --port 6379 --bind 127.0.0.1 --save ""` and two servers with
`REDIS_URL=... --port ...`, with their ports replaced by free ones.
"""

import asyncio
import contextlib
import json
import os
import re
import time

import pytest
import redis
import requests
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from tests.raw_websocket import raw_handshake
from tests.system_tools import require_tool
from tools.chat_driver import (
    TIMEOUT,
    click_send,
    closed_with,
    frames_before,
    heard,
    join,
    new_room,
    room_load,
    run_async,
    say,
    send_from,
    wait_for_status,
)
from tools.readme_console import assert_output_shown, console_commands, find_command
from tools.redis_server import RedisServer
from tools.repository import REPO_ROOT
from tools.step_commands import ASGI_SERVERS, README_COMMANDS, readme_server
from tools.waiting import wait_until

STEP = REPO_ROOT / "step05_channels"
README = STEP / "README.md"
SERVER_ENV = IN_MEMORY = {
    "REDIS_URL": ""
}  # so a REDIS_URL in the caller's environment cannot leak in
MAX_MESSAGE_LENGTH = 2000  # characters in one chat frame, as the README states
MAX_ECHO_BYTES = 64 * 1024  # the echo's limit, the same as step 04's
# Daphne (runserver here runs daphne) lets an app close only with 1000 or 3000-4999.
ECHO_TOO_BIG = {"runserver": 4009, "daphne": 4009, "uvicorn": 1009}
BAD_ROOM_NAME = 4008
RECOVERING_OPEN_TIMEOUT = 5  # seconds a handshake may take while a server recovers (one hangs)


@pytest.fixture
def server(any_server):
    return any_server


def handshake_status(server, path, origin):
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url + path, origin=origin, open_timeout=TIMEOUT)
    return refused.value.response.status_code


def assert_chat_works(server):
    room = new_room()
    with join(server, room) as alice, join(server, room) as bob:
        say(alice, "still chatting")
        assert heard(bob) == {"message": "still chatting"}
        assert heard(alice) == {"message": "still chatting"}


# --- rooms under each server, in-memory layer ------------------------------------------------


def test_a_message_reaches_every_client_in_its_room_and_none_in_another(server):
    lobby, kitchen = new_room(), new_room()
    with (
        join(server, lobby) as alice,
        join(server, lobby) as bob,
        join(server, lobby) as dave,
        join(server, kitchen) as carol,
    ):
        say(alice, "hello, lobby")
        for ws in (alice, bob, dave):
            assert heard(ws) == {"message": "hello, lobby"}
        say(carol, "hello, kitchen")
        assert heard(carol) == {"message": "hello, kitchen"}
        # Once a socket hears a message, the layer has sent it to the whole group, so what is
        # said after it arrives after it: nothing before it means the other one never came.
        say(bob, "lobby again")
        for ws in (alice, bob, dave):  # the kitchen's message did not come over...
            assert frames_before(ws, "lobby again") == []
        say(carol, "kitchen again")
        assert frames_before(carol, "kitchen again") == []  # ...nor the lobby's to the kitchen


def test_html_in_a_message_comes_back_exactly_as_sent(server):
    text = '<script>alert("x")</script> & <b>bold</b>'
    with join(server, new_room()) as alice:
        say(alice, text)
        assert heard(alice) == {"message": text}


def test_the_echo_consumer_echoes_text_and_binary_frames(server):
    binary = bytes(range(256))
    with connect(server.ws_url + "/ws/echo/", origin=server.http_url, open_timeout=TIMEOUT) as ws:
        for frame in ["Hello, ASGI!", binary, "ünïcode ✓", "x" * MAX_ECHO_BYTES]:
            ws.send(frame)
            assert ws.recv(timeout=TIMEOUT) == frame


def test_the_echo_consumer_closes_over_the_limit_like_step_04(server):
    with connect(server.ws_url + "/ws/echo/", origin=server.http_url, open_timeout=TIMEOUT) as ws:
        ws.send(os.urandom(MAX_ECHO_BYTES + 1))
        assert closed_with(ws) == ECHO_TOO_BIG[server.name]
    assert_chat_works(server)


def test_pages_are_served_by_django(server):
    echo_page = requests.get(server.http_url + "/", timeout=TIMEOUT)
    assert echo_page.status_code == 200
    assert '<button id="send">Send over WebSocket</button>' in echo_page.text
    room_page = requests.get(server.http_url + "/chat/lobby/", timeout=TIMEOUT)
    assert room_page.status_code == 200
    assert '<script id="room-name" type="application/json">"lobby"</script>' in room_page.text
    assert requests.get(server.http_url + "/chat/a!b/", timeout=TIMEOUT).status_code == 404


# --- bad input --------------------------------------------------------------------------------

BAD_FRAMES = {
    "not JSON": ("hello", 'not JSON: send {"message": "<text>"}'),
    "no message field": ('{"text": "hi"}', 'no "message" text: send {"message": "<text>"}'),
    "message not text": ('{"message": ["hi"]}', 'no "message" text: send {"message": "<text>"}'),
    "too long": (
        json.dumps({"message": "x" * MAX_MESSAGE_LENGTH}),
        f"message too long: {MAX_MESSAGE_LENGTH + 15} characters, at most {MAX_MESSAGE_LENGTH}",
    ),
    "binary": (b'{"message": "hi"}', "send text frames, not binary ones"),
}


@pytest.mark.parametrize("frame, error", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_bad_frame_gets_an_error_reply_and_the_room_goes_on(server, frame, error):
    room = new_room()
    with join(server, room) as alice, join(server, room) as bob:
        alice.send(frame)
        assert heard(alice) == {"error": error}
        say(alice, "after the bad one")  # the same socket still works...
        assert heard(bob) == {
            "message": "after the bad one"
        }  # ...and the bad frame never reached bob
        assert heard(alice) == {"message": "after the bad one"}
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("room", ["two%20words", "caf%C3%A9", "a!b", "r" * 95])
def test_a_room_name_that_cannot_be_a_group_is_refused_with_a_reason(server, room):
    with join(server, room) as ws:
        assert heard(ws)["error"].startswith("a room name ")
        assert closed_with(ws) == BAD_ROOM_NAME
    assert "Traceback" not in server.log_text()
    assert_chat_works(server)


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://127.0.0.1.evil.example:8000", None]
)
def test_a_foreign_or_missing_origin_is_refused_with_403(server, origin):
    assert handshake_status(server, "/ws/chat/lobby/", origin) == 403
    assert handshake_status(server, "/ws/echo/", origin) == 403
    assert_chat_works(server)


def test_a_path_with_no_consumer_is_refused_with_403_not_500(server):
    assert handshake_status(server, "/ws/nowhere/", server.http_url) == 403
    assert "No route found" not in server.log_text()
    assert_chat_works(server)


def test_runserver_is_the_asgi_server_of_the_installed_channels(serve, track):
    runserver = serve(STEP.name, "runserver", env=IN_MEMORY)
    if track == "django30":
        runserver.wait_for_log("Starting ASGI/Channels version 3.0.5 development server")
    else:
        runserver.wait_for_log("Starting ASGI/Daphne version 4.2.3 development server")
    assert_chat_works(runserver)


def test_code_shown_in_the_readme_is_the_steps_own():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    sources = [path.read_text() for path in STEP.rglob("*.py")]
    for block in blocks:
        assert any(block in source for source in sources), block


# --- what step 05 does not promise: a busy room loses messages, silently ----------------------


@pytest.fixture(params=["memory", "redis"])
def layer_env(request):
    """The channel layer a server runs with: in memory, or on a private redis-server."""
    if request.param == "memory":
        yield IN_MEMORY
        return
    require_tool("redis-server", "sudo apt-get install redis-server")
    with RedisServer() as private_redis:
        yield {"REDIS_URL": private_redis.url}


@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_a_burst_in_a_busy_room_loses_messages_and_nobody_is_told(serve, server_name, layer_env):
    # 20 clients send 20 messages each, back to back: the channel layer holds at most 100
    # messages per channel (its `capacity`) and group_send drops the rest without a word.
    server = serve(STEP.name, server_name, env=layer_env)
    mark = server.log_mark()
    run = run_async(
        room_load([server.ws_url], new_room(), clients=20, messages_each=20, timeout=60)
    )
    counts = run.client_counts()
    print(
        f"{server_name}, {'Redis' if layer_env['REDIS_URL'] else 'in-memory'}: each client "
        f"received {min(counts)}-{max(counts)} of the {len(run.accepted_texts())} messages"
    )
    assert len(run.sent()) == 400 and not run.refused_texts()  # every one taken, none refused...
    assert max(counts) < 400  # ...and yet every client misses some of them...
    assert sum(counts) < 0.9 * 400 * 20  # ...many of them, not one straggler
    assert not any(client.errors() for client in run.clients)  # no sender or reader is told
    assert not any(client.close_code not in (None, 1000) for client in run.clients)
    log = server.log_after(mark)
    assert "Traceback" not in log and "ChannelFull" not in log  # and the server logs nothing
    # What the README says of this very test, kept true by it:
    assert "every client receives fewer than the 400 sent, and nobody is told" in " ".join(
        README.read_text().split()
    )


def test_a_stale_session_cookie_on_the_chat_handshake_is_an_anonymous_visitor(serve, migrated_step):
    # The auth middleware reads the session a cookie names; one the database does not know
    # is an anonymous visitor. (Unmigrated, there is no session table to look in at all.)
    cookie = {"Cookie": "sessionid=stale0000000000000000000000000000"}
    for server_name in ASGI_SERVERS:
        server = serve(STEP.name, server_name, env=IN_MEMORY, directory=migrated_step(STEP.name))
        assert requests.get(server.http_url + "/chat/lobby/", headers=cookie, timeout=TIMEOUT).ok
        room = new_room()
        with connect(
            server.ws_url + f"/ws/chat/{room}/",
            origin=server.http_url,
            additional_headers=cookie,
            open_timeout=TIMEOUT,
        ) as visitor:
            say(visitor, "who am I?")
            assert heard(visitor) == {"message": "who am I?"}
        assert "Traceback" not in server.log_text()


# --- the README's output -------------------------------------------------------------------------


@pytest.mark.track("django30")
def test_readme_shows_the_servers_output_for_a_chat(server):
    (shown,) = find_command(README, README_COMMANDS[server.name])
    mark = server.log_mark()
    requests.get(server.http_url + "/chat/lobby/", timeout=TIMEOUT)
    with join(server, "lobby") as alice:
        say(alice, "Hello, room!")
        heard(alice)
    # uvicorn 0.54 logs a WebSocket's opening only; the others log its end too.
    last_line = "connection open" if server.name == "uvicorn" else "DISCONNECT /ws/chat/lobby/"
    server.wait_for_log(last_line, after=mark)
    assert_output_shown(shown.output, server.log_text(), server.port)


# --- scale-out: two processes, one Redis ----------------------------------------------------------


def readme_command(prefix):
    (found,) = [c.command for c in console_commands(README) if c.command.startswith(prefix)]
    return found


@pytest.fixture
def redis_server():
    require_tool("redis-server", "sudo apt-get install redis-server")
    with RedisServer(command=readme_command("redis-server ")) as server:
        yield server


@contextlib.contextmanager
def daphne_and_uvicorn(redis_url):
    """The README's two server commands, each on a free port; REDIS_URL as given."""
    started = []
    try:
        for prefix in (
            "REDIS_URL=redis://127.0.0.1:6379/0 daphne",
            "REDIS_URL=redis://127.0.0.1:6379/0 uvicorn",
        ):
            process = readme_server(STEP.name, readme_command(prefix), env={"REDIS_URL": redis_url})
            started.append(process)
            process.start()
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="module")
def redis_and_two_servers():
    """One redis-server and the README's two servers on it, shared by the tests that leave
    them as they found them (each uses rooms of its own): (redis, (daphne, uvicorn))."""
    require_tool("redis-server", "sudo apt-get install redis-server")
    with (
        RedisServer(command=readme_command("redis-server ")) as redis_server,
        daphne_and_uvicorn(redis_server.url) as servers,
    ):
        yield redis_server, servers


def test_the_tests_never_use_a_redis_they_did_not_start(redis_server):
    second = RedisServer(port=redis_server.port)
    # Either it sees the other Redis answering, or its own redis-server fails to bind first.
    with pytest.raises(
        RuntimeError, match="already in use by another program|served by another Redis|exited with"
    ):
        second.start()
    # Nothing was started, or the one that lost the port is stopped.
    assert second.process is None or second.process.poll() is not None
    assert not os.path.exists(second.data_directory), "the refused Redis left its directory"
    assert redis_server.ping()  # and the one already there is untouched


def test_the_readme_runs_redis_and_two_servers_against_it(redis_and_two_servers):
    redis_server, (daphne, uvicorn) = redis_and_two_servers
    shown = [c.command for c in console_commands(README)]
    assert 'redis-server --port 6379 --bind 127.0.0.1 --save ""' in shown
    assert "REDIS_URL=redis://127.0.0.1:6379/0 daphne --port 8001 newtest.asgi:application" in shown
    assert (
        "REDIS_URL=redis://127.0.0.1:6379/0 uvicorn --port 8002 newtest.asgi:application" in shown
    )
    assert daphne.argv[0] == "daphne" and uvicorn.argv[0] == "uvicorn"
    assert daphne.env["REDIS_URL"] == uvicorn.env["REDIS_URL"] == redis_server.url


def test_with_redis_a_message_reaches_the_room_on_the_other_process(redis_and_two_servers):
    redis_server, (daphne, uvicorn) = redis_and_two_servers
    room, other_room = new_room(), new_room()
    with (
        join(daphne, room) as alice,
        join(uvicorn, room) as bob,
        join(uvicorn, other_room) as carol,
    ):
        say(alice, "from daphne")
        assert heard(bob) == {"message": "from daphne"}
        assert heard(alice) == {"message": "from daphne"}
        say(bob, "from uvicorn")
        assert heard(alice) == {"message": "from uvicorn"}
        assert heard(bob) == {"message": "from uvicorn"}
        say(carol, "in the other room")  # the room's messages, sent before, never came here
        assert frames_before(carol, "in the other room") == []
        # The room is a sorted set in Redis: one channel per socket, from both processes.
        assert redis.Redis.from_url(redis_server.url).zcard(f"asgi:group:chat_{room}") == 2


def test_with_the_in_memory_layer_a_message_stays_in_its_own_process():
    # The same two commands without Redis: each process has a room of its own by that name.
    room = new_room()
    with daphne_and_uvicorn("") as (daphne, uvicorn):
        with join(daphne, room) as alice, join(daphne, room) as dave, join(uvicorn, room) as bob:
            say(alice, "from daphne")
            assert heard(alice) == {"message": "from daphne"}
            assert heard(dave) == {"message": "from daphne"}  # the same process: delivered
            say(bob, "from uvicorn")
            assert frames_before(bob, "from uvicorn") == []  # the other process: never
            say(alice, "from daphne again")
            assert frames_before(alice, "from daphne again") == []
            assert frames_before(dave, "from daphne again") == []


def test_with_redis_a_chat_left_idle_past_the_blocking_reads_still_works(redis_and_two_servers):
    # channels-redis blocks 5 s per read; with redis-py 8's default 5 s read timeout these
    # idle sockets soon fail with TimeoutError (try it: set 5). The settings' 10 s prevent it.
    _, (daphne, uvicorn) = redis_and_two_servers
    marks = [process.log_mark() for process in (daphne, uvicorn)]
    room = new_room()
    with join(daphne, room) as alice, join(uvicorn, room) as bob:
        time.sleep(10)  # idle through two more of the 5-second blocking reads
        say(bob, "still there?")
        assert frames_before(alice, "still there?") == []  # nothing came, not even an error
        assert heard(bob) == {"message": "still there?"}
    for process, mark in zip((daphne, uvicorn), marks, strict=True):
        assert "Traceback" not in process.log_after(mark)


# --- faults ---------------------------------------------------------------------------------------


def test_redis_outage_drops_the_chat_sockets_unexplained_and_http_keeps_working(redis_server):
    # Step 05 has no answer of its own for a lost Redis (step 06 adds one): the consumer's
    # exception reaches the server, which logs it and drops the socket with no reason given.
    room = new_room()
    with daphne_and_uvicorn(redis_server.url) as servers:
        daphne, uvicorn = servers
        with join(daphne, room) as alice, join(uvicorn, room) as bob:
            say(alice, "before the outage")
            assert heard(bob) == {"message": "before the outage"}
            assert heard(alice) == {"message": "before the outage"}
            marks = [process.log_mark() for process in servers]

            redis_server.stop()
            # Each consumer is waiting on the layer for the room's messages: that wait fails.
            # Daphne closes with 1011 ("internal error"); Uvicorn drops the TCP connection.
            assert [closed_with_no_error_frame(ws) for ws in (alice, bob)] == [1011, None]
        for process, mark, exception_line in zip(
            servers, marks, SERVER_EXCEPTION_LINE.values(), strict=True
        ):
            process.wait_for_log(exception_line, after=mark)
            assert "ConnectionError" in process.log_after(mark)
            assert process.process.poll() is None  # the servers are still running...
            page = requests.get(process.http_url + f"/chat/{room}/", timeout=TIMEOUT)
            assert page.status_code == 200  # ...and HTTP does not need Redis

        redis_server.restart()  # the same port, empty, as after a crash
        # Each process's pooled Redis connection died with Redis and fails once when next used,
        # taking that socket with it (under uvicorn its handshake hangs until the client gives
        # up); the chat comes back by itself after that.
        failed_tries = []

        def chat_works_across_both():
            try:
                with (
                    join(daphne, room, open_timeout=RECOVERING_OPEN_TIMEOUT) as alice,
                    join(uvicorn, room, open_timeout=RECOVERING_OPEN_TIMEOUT) as bob,
                ):
                    say(bob, "after the outage")
                    return heard(alice) == heard(bob) == {"message": "after the outage"}
            except (ConnectionClosed, InvalidHandshake, OSError) as error:
                failed_tries.append(repr(error))
                return False

        wait_until(
            chat_works_across_both,
            timeout=TIMEOUT * 2,
            interval=0.2,
            message=lambda: f"the chat after Redis came back; failed tries: {failed_tries}",
        )
        assert failed_tries, "no socket failed after Redis came back: the README says some do"
        print("tries that failed after Redis came back:", failed_tries)


# What each server logs when an application raises, as step 03's tests read it too.
SERVER_EXCEPTION_LINE = {
    "daphne": "Exception inside application",
    "uvicorn": "Exception in ASGI application",
}


def closed_with_no_error_frame(ws):
    """The close code of a socket that ends without a frame telling why (None: no close frame)."""
    with pytest.raises(ConnectionClosed) as closed:
        frame = ws.recv(timeout=TIMEOUT)
        raise AssertionError(f"a frame came before the close: {frame}")
    return closed.value.rcvd.code if closed.value.rcvd else None


def wait_for_members(redis_client, group_key, count):
    deadline = time.monotonic() + TIMEOUT
    while redis_client.zcard(group_key) != count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{group_key} has {redis_client.zcard(group_key)} members, not {count}"
            )
        time.sleep(0.05)


def test_a_client_that_vanishes_leaves_its_group(redis_and_two_servers):
    redis_server, servers = redis_and_two_servers
    room = new_room()
    group_key = f"asgi:group:chat_{room}"
    client = redis.Redis.from_url(redis_server.url)
    with join(servers[0], room) as alice:
        wait_for_members(client, group_key, 1)
        for process in servers:
            sock = raw_handshake(process, f"/ws/chat/{room}/", timeout=TIMEOUT)
            wait_for_members(client, group_key, 2)  # it joined...
            sock.close()
            wait_for_members(client, group_key, 1)  # ...and its disconnect took it out
        say(alice, "anyone?")
        assert heard(alice) == {"message": "anyone?"}


MANY_SOCKETS = 150  # more than redis-py 8's pool of 100 connections per process by default


async def join_then_all_leave_at_once(process, room, members):
    """MANY_SOCKETS sockets join the room on `process`; once `members()` counts them all in
    its group, they all close at the same moment."""
    url = f"{process.ws_url}/ws/chat/{room}/"
    sockets = []
    for _ in range(0, MANY_SOCKETS, 25):  # daphne listens with a backlog of 50
        sockets += await asyncio.gather(
            *(async_connect(url, origin=process.http_url, open_timeout=TIMEOUT) for _ in range(25))
        )
    while members() != MANY_SOCKETS:
        await asyncio.sleep(0.05)
    await asyncio.gather(*(ws.close() for ws in sockets))


def test_many_sockets_leaving_one_process_at_once_all_leave_their_group(redis_and_two_servers):
    # Every socket that leaves runs group_discard, one Redis command each, all at the same
    # moment: more than the pool's connections, unless the settings make it larger.
    redis_server, servers = redis_and_two_servers
    client = redis.Redis.from_url(redis_server.url)
    for process in servers:
        room = new_room()
        group_key = f"asgi:group:chat_{room}"
        mark = process.log_mark()
        run_async(
            join_then_all_leave_at_once(process, room, lambda key=group_key: client.zcard(key)),
            timeout=TIMEOUT * 3,
        )
        wait_for_members(client, group_key, 0)
        assert "Too many connections" not in process.log_after(mark)
        with join(process, room) as alice:
            say(alice, "after the crowd left")
            assert heard(alice) == {"message": "after the crowd left"}


# --- the browser ------------------------------------------------------------------------------


def open_room(page, server, room):
    page.goto(f"{server.http_url}/chat/{room}/")
    wait_for_status(page, "connected")
    return page


def messages(page):
    return page.locator("#messages li")


def test_browser_pages_in_one_room_see_each_other_and_not_another_room(server, page):
    lobby, kitchen = new_room(), new_room()
    alice = open_room(page, server, lobby)
    bob = open_room(page.context.new_page(), server, lobby)
    carol = open_room(page.context.new_page(), server, kitchen)

    click_send(alice, "hello from alice")  # the Send button; the rest press Enter
    bob.locator("#messages li", has_text="hello from alice").wait_for(timeout=TIMEOUT * 1000)
    send_from(bob, "hello from bob")
    alice.locator("#messages li", has_text="hello from bob").wait_for(timeout=TIMEOUT * 1000)
    send_from(carol, "hello from carol")
    carol.locator("#messages li", has_text="hello from carol").wait_for(timeout=TIMEOUT * 1000)

    assert messages(alice).all_inner_texts() == ["hello from alice", "hello from bob"]
    assert messages(bob).all_inner_texts() == ["hello from alice", "hello from bob"]
    assert messages(carol).all_inner_texts() == ["hello from carol"]


def test_browser_shows_html_in_a_message_as_literal_text(server, page):
    room = new_room()
    alice = open_room(page, server, room)
    bob = open_room(page.context.new_page(), server, room)
    text = '<b id="bold">bold</b><img src="x" onerror="window.injected = true">'
    send_from(alice, text)
    bob.locator("#messages li").first.wait_for(timeout=TIMEOUT * 1000)
    assert messages(bob).all_inner_texts() == [text]
    assert bob.locator("#messages b, #messages img").count() == 0
    assert bob.evaluate("window.injected") is None


def test_browser_shows_the_error_reply_for_a_message_too_long(server, page):
    alice = open_room(page, server, new_room())
    send_from(alice, "x" * MAX_MESSAGE_LENGTH)
    error = alice.locator("#messages li.error")
    error.wait_for(timeout=TIMEOUT * 1000)
    assert error.inner_text().startswith("error: message too long")
    send_from(alice, "short one")
    alice.locator("#messages li", has_text="short one").wait_for(timeout=TIMEOUT * 1000)
    assert alice.locator("#status").inner_text() == "connected"


def test_browser_echo_page_of_step_03_now_gets_its_echo(server, page):
    page.goto(server.http_url + "/")
    page.click("#send")
    events = page.locator("#events")
    events.get_by_text("closed with code 1000").wait_for(timeout=TIMEOUT * 1000)
    assert "received: Hello, ASGI!" in events.inner_text()
