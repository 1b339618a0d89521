"""Step 06: the chat that never silently loses a message, tested as a busy room uses it.

Real daphne and uvicorn processes serve a migrated copy of the step (two processes share the
copy's one SQLite file and a real redis-server when a test needs them), many asyncio clients
(tools/chat_driver.py) send at once, and real headless Chromium pages read. What a page shows
is compared with what the copy's database holds: every accepted message exactly once, in id
order. The wire format is the one step06_reliable_chat/README.md describes.
"""

import asyncio
import collections
import json
import re
import time

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.readme_console import find_command
from tools.chat_driver import (
    CONNECTED,
    TIMEOUT,
    ChatClient,
    EventLoopThread,
    chat_page_url,
    chat_path,
    close_all,
    closed_with,
    frames_before,
    heard,
    heard_error,
    heard_message,
    join,
    new_room,
    open_clients,
    open_page,
    room_load,
    run_async,
    say,
    send_from,
    shown,
    stored,
    stored_texts,
    wait_for_status,
    wait_until_shows,
)
from tools.repository import step_directory
from tools.step_commands import copy_step, manage, migrate, readme_server
from tools.waiting import wait_until

STEP = "step06_reliable_chat"
SERVE_MIGRATED_COPY = True  # the chat stores its messages: every server serves a migrated copy
# An empty REDIS_URL, so a REDIS_URL in the caller's environment cannot leak in.
SERVER_ENV = IN_MEMORY = {"REDIS_URL": ""}
MAX_MESSAGE_LENGTH = 2000
BURST_ACCEPTED = 20  # messages one socket may send back to back, as the README promises
BAD_ROOM_NAME = 4008
CHAT_FAILED = 4011


@pytest.fixture
def server(asgi_server):
    return asgi_server


def no_database_trouble(*servers):
    for server in servers:
        log = server.log_text()
        assert "database is locked" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    return True


def handshake_status(server, path, origin):
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url + path, origin=origin, open_timeout=TIMEOUT)
    return refused.value.response.status_code


def open_room_page(browser, server, room, cookies=None):
    return open_page(browser, chat_page_url(server, room), cookies=cookies)


# --- load helpers -----------------------------------------------------------------------------


async def flood(url, room, count, name="flooder"):
    """One socket sends `count` messages back to back, then waits until every one of them is
    answered: by its own copy coming back (accepted) or by a refusal."""
    client = await ChatClient(url + chat_path(room), name).open()
    try:
        for number in range(count):
            await client.say(f"flood {name} #{number}", ref=f"{name}#{number}")

        def answered(c):
            own = {m.get("ref") for m in c.messages()} - {None}
            refused = {r["refused"]["ref"] for r in c.refusals()}
            return len(own | refused) >= count

        await client.wait_for(answered, TIMEOUT)
    finally:
        await client.close()
    return client


def assert_one_refusal_per_refused_message(client):
    """Each refusal names a message this socket sent, by its frame number and ref, and no
    message is refused twice or both refused and accepted."""
    sent = {s.text: s for s in client.sent}
    refusals = client.refusals()
    assert refusals, "a socket past the limit was never told"
    numbers = [r["refused"]["number"] for r in refusals]
    assert len(numbers) == len(set(numbers)), "a message was refused more than once"
    for refusal in refusals:
        refused = refusal["refused"]
        assert refusal["error"].startswith("too many messages")
        assert sent[refused["message"]].number == refused["number"]
        assert sent[refused["message"]].ref == refused["ref"]
    accepted_own = {m["ref"] for m in client.messages() if m.get("ref")}
    assert not accepted_own & {r["refused"]["ref"] for r in refusals}
    return {r["refused"]["message"] for r in refusals}


def assert_everyone_has_everything_once(run, rows):
    """The run's clients (each following the page's catch-up logic) hold every message the run
    sent and the server accepted, under its stored id; nothing they hold is unknown to the
    database, and no text came under two ids (nothing stored twice)."""
    stored_ids = {number for number, _ in rows}
    run_ids = {number for number, text in rows if text in run.accepted_texts()}
    for client in run.clients:
        ids_by_text = {}
        for message in client.messages():
            ids_by_text.setdefault(message["message"], set()).add(message["id"])
        assert all(len(ids) == 1 for ids in ids_by_text.values()), client.name
        held = {number for ids in ids_by_text.values() for number in ids}
        assert held <= stored_ids
        assert run_ids <= held, f"{client.name}: {len(run_ids - held)} accepted messages missing"
        assert not client.errors(), client.errors()[:3]


# === one process, in-memory layer =============================================================


def test_a_burst_of_20_clients_sending_20_each_is_stored_and_reaches_everyone(
    machine_to_itself, server, migrated_step
):
    room = new_room()
    run_ = run_async(
        room_load(
            [server.ws_url],
            room,
            clients=20,
            messages_each=20,
            catch_up=True,
            until_answered=True,
            label="burst",
            timeout=90,
        ),
        timeout=150,
    )
    rows = stored(migrated_step(STEP), room)
    assert len(run_.sent()) == 400
    assert not run_.unanswered()  # every sender heard back about every message it sent
    assert not run_.refused_texts()  # 20 back to back is within every socket's allowance
    assert sorted(text for _, text in rows) == sorted(run_.accepted_texts())  # accepted = stored
    assert_everyone_has_everything_once(run_, rows)
    print("deliveries counted once per client:", run_.client_counts())
    assert no_database_trouble(server)


def test_50_clients_sending_10_a_second_are_all_stored_and_reach_everyone(
    machine_to_itself, server, migrated_step
):
    room = new_room()
    run_ = run_async(
        room_load(
            [server.ws_url],
            room,
            clients=50,
            rate=10,
            seconds=3,
            catch_up=True,
            until_answered=True,
            label="paced",
            timeout=90,
        ),
        timeout=150,
    )
    rows = stored(migrated_step(STEP), room)
    assert len(run_.sent()) == 50 * 30
    assert not run_.unanswered()
    assert not run_.refused_texts()  # 10 a second, sustained, is within the allowance
    assert sorted(text for _, text in rows) == sorted(run_.accepted_texts())
    assert_everyone_has_everything_once(run_, rows)
    assert no_database_trouble(server)


async def send_and_leave(server, room, sockets, messages_each=BURST_ACCEPTED):
    """`sockets` clients each send `messages_each` (none refused, by default) round-robin,
    then all close at once, without waiting to hear back. Returns the clients."""
    clients = await open_clients([server.ws_url], room, sockets)
    try:
        for number in range(messages_each):
            for client in clients:
                await client.say(f"{client.name} #{number}")
    finally:
        await close_all(clients)
    return clients


def test_senders_that_leave_at_once_still_have_everything_they_sent_stored(server, migrated_step):
    """10 sockets send 20 messages each and close without waiting: the consumers still work
    through what they had received, though sending each message to a departed client fails
    (Uvicorn raises ClientDisconnected, Daphne's autobahn raises Disconnected)."""
    room = new_room()
    mark = server.log_mark()
    clients = run_async(send_and_leave(server, room, 10))
    sent = {s.text for client in clients for s in client.sent}
    directory = migrated_step(STEP)
    rows = wait_until(
        lambda: len(stored(directory, room)) >= len(sent) and stored(directory, room),
        timeout=TIMEOUT,
        message=lambda: f"{len(sent)} messages stored, not {len(stored(directory, room))}",
    )
    assert sorted(text for _, text in rows) == sorted(sent)
    time.sleep(0.5)  # the consumers' last sends and disconnects come after the last store
    assert "Traceback" not in server.log_after(mark)


# Daphne's --application-close-timeout, shortened from its 10 s so that the backlog below
# (60 sockets x 20 messages, some seconds of storing) certainly outlasts it.
SHORT_CLOSE_TIMEOUT_DAPHNE = "daphne --application-close-timeout 1 newtest.asgi:application"


def test_daphne_drops_what_a_departed_sender_left_queued_once_its_close_timeout_passes(
    machine_to_itself, migrated_step
):
    """Why the load tests' senders stay until they hear back: Daphne reads every frame as it
    comes and queues it for the consumer, but once the client has gone it gives the consumer
    application_close_timeout seconds, then cancels it, and what is still queued is dropped."""
    directory = migrated_step(STEP)
    room = new_room()
    with readme_server(STEP, SHORT_CLOSE_TIMEOUT_DAPHNE, directory=directory) as daphne:
        clients = run_async(send_and_leave(daphne, room, 60))
        daphne.wait_for_log("took too long to shut down and was killed", timeout=30)
        time.sleep(3)  # whatever was not cancelled finishes storing
        count = len(stored(directory, room))
        assert 0 < count < 60 * BURST_ACCEPTED, count
        assert not any(client.refusals() for client in clients)
        # Nothing failed: the consumers were cancelled, not broken.
        assert "Traceback" not in daphne.log_text()


def test_a_sender_past_the_limit_is_told_once_per_refused_message_and_the_room_goes_on(
    server, migrated_step
):
    room = new_room()

    async def scenario():
        readers = [
            await ChatClient(server.ws_url + chat_path(room), f"reader-{i}").open()
            for i in range(4)
        ]
        try:
            flooder = await flood(server.ws_url, room, 60)
            await asyncio.sleep(2.5)  # the allowance refills (10 a second at least)...
            late = await ChatClient(server.ws_url + chat_path(room), "flooder-again").open()
            await late.say("after a pause", ref="late")
            await late.wait_for(
                lambda c: any(m.get("ref") == "late" for m in c.messages()), TIMEOUT
            )
            await late.close()
            for reader in readers:
                await reader.wait_for(lambda c: "after a pause" in c.texts(), TIMEOUT)
            return flooder, readers, late
        finally:
            await close_all(readers)

    flooder, readers, late = run_async(scenario())
    refused = assert_one_refusal_per_refused_message(flooder)
    texts = stored_texts(migrated_step(STEP), room)
    accepted = {s.text for s in flooder.sent} - refused
    assert len(accepted) >= BURST_ACCEPTED
    assert len(refused) + len(accepted) == 60
    assert sorted(texts) == sorted(accepted | {"after a pause"})  # nothing refused is stored
    for reader in readers:
        assert not refused & set(reader.texts())  # ...or broadcast
        assert accepted <= set(reader.texts())
    assert not late.refusals()  # ...and the same sender is heard again after a pause
    assert no_database_trouble(server)


# --- what a message is ----------------------------------------------------------------------------


def test_a_message_comes_back_with_its_id_previous_id_author_and_time(server, migrated_step):
    room = new_room()
    with join(server, room) as alice, join(server, room) as bob:
        say(alice, "first", ref="a1")
        first_to_alice = heard_message(alice, "first")
        first_to_bob = heard_message(bob, "first")
        say(bob, "second")
        second = heard_message(alice, "second")
    assert first_to_alice["ref"] == "a1" and "ref" not in first_to_bob  # the ref is the sender's
    assert first_to_alice["previous_id"] is None  # the room's first message
    assert second["previous_id"] == first_to_bob["id"] < second["id"]
    assert first_to_bob["room"] == room and first_to_bob["author"] is None
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", first_to_bob["time"])
    assert stored(migrated_step(STEP), room) == [
        (first_to_bob["id"], "first"),
        (second["id"], "second"),
    ]


def test_a_socket_that_joins_gets_the_recent_history_or_what_came_after_an_id(
    server, migrated_step
):
    room = new_room()
    for first in (0, 20, 40):  # three sockets of 20 back to back: within each one's allowance
        with join(server, room) as alice:
            for number in range(first, first + 20):
                say(alice, f"m{number}")
            for number in range(first, first + 20):
                heard_message(alice, f"m{number}")
    rows = stored(migrated_step(STEP), room)
    assert len(rows) == 60
    with join(server, room) as late:  # no ?after: the last 50, in id order
        history = [heard(late) for _ in range(50)]
        assert [(m["id"], m["message"]) for m in history] == rows[-50:]
        # Asked for on the socket: an answer that starts right after the history proves the
        # history held nothing more (frames on one socket keep their order).
        late.send(json.dumps({"after": rows[54][0]}))
        assert [(heard(late)["id"]) for _ in range(5)] == [number for number, _ in rows[55:]]
    with join(server, room, after=rows[9][0]) as catching_up:  # ?after=<id>: everything after it
        assert [(heard(catching_up)["id"]) for _ in range(50)] == [n for n, _ in rows[10:]]
        say(catching_up, "after the catch-up")  # its arrival proves nothing else was on its way
        assert frames_before(catching_up, "after the catch-up") == []


# --- bad input --------------------------------------------------------------------------------


BAD_FRAMES = {
    "not JSON": "hello",
    "no message field": '{"text": "hi"}',
    "message not text": '{"message": ["hi"]}',
    "too long": json.dumps({"message": "x" * MAX_MESSAGE_LENGTH}),
    "binary": b'{"message": "hi"}',
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_bad_frame_gets_an_error_on_that_socket_only_and_nothing_is_stored(
    server, migrated_step, frame
):
    room = new_room()
    with join(server, room) as alice, join(server, room) as bob:
        alice.send(frame)
        error = heard(alice)
        assert set(error) == {"error"} and error["error"]
        say(alice, "after the bad one")
        assert heard(bob)["message"] == "after the bad one"  # the bad frame never reached bob
        assert heard_message(alice, "after the bad one")
    assert stored_texts(migrated_step(STEP), room) == ["after the bad one"]
    assert "Traceback" not in server.log_text()


def test_a_bad_room_name_is_refused_with_a_reason(server):
    with join(server, "a!b") as ws:
        assert heard(ws)["error"].startswith("a room name ")
        assert closed_with(ws) == BAD_ROOM_NAME


@pytest.mark.parametrize("origin", ["http://evil.example", None])
def test_a_foreign_or_missing_origin_and_an_unknown_path_get_403(server, origin):
    assert handshake_status(server, chat_path("lobby"), origin) == 403
    assert handshake_status(server, "/ws/nowhere/", server.http_url) == 403
    with join(server, new_room()) as alice:  # and the chat goes on
        say(alice, "still here")
        assert heard_message(alice, "still here")


# --- who is talking ---------------------------------------------------------------------------


STALE_SESSION = {"name": "sessionid", "value": "stale0000000000000000000000000000"}


def test_a_stale_session_cookie_is_an_anonymous_visitor(server):
    cookie = f"{STALE_SESSION['name']}={STALE_SESSION['value']}"
    page = requests.get(
        f"{server.http_url}/chat/lobby/", headers={"Cookie": cookie}, timeout=TIMEOUT
    )
    assert page.status_code == 200
    with join(server, new_room(), headers={"Cookie": cookie}) as ws:
        say(ws, "who am I?")
        assert heard_message(ws, "who am I?")["author"] is None
    assert "Traceback" not in server.log_text()


def create_user(directory, username, password):
    manage(
        directory,
        (
            'shell -c "from django.contrib.auth.models import User; '
            f"User.objects.create_user('{username}', password='{password}')\""
        ),
    )


def log_in(browser, server, username, password, room):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.http_url}/accounts/login/?next=/chat/{room}/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.locator("form [type=submit]").click()
    page.wait_for_url(f"**/chat/{room}/", timeout=TIMEOUT * 1000)
    wait_for_status(page, CONNECTED)
    return page


def test_a_logged_in_page_shows_the_username_and_anonymous_ones_show_anonymous(
    server, migrated_step, chromium_browser
):
    directory = migrated_step(STEP)
    username = f"alice-{server.name}"
    create_user(directory, username, "correct horse battery")
    room = new_room()
    alice = log_in(chromium_browser, server, username, "correct horse battery", room)
    visitor = open_room_page(chromium_browser, server, room)
    stale = open_room_page(chromium_browser, server, room, cookies=[STALE_SESSION])
    send_from(alice, "hello from alice")
    wait_until(lambda: len(shown(visitor)) == 1, timeout=TIMEOUT)
    send_from(visitor, "hello from nobody")
    wait_until(lambda: len(shown(stale)) == 2, timeout=TIMEOUT)
    send_from(stale, "hello from a stale cookie")
    rows = wait_until(lambda: len(stored(directory, room)) == 3 and stored(directory, room))
    for page in (alice, visitor, stale):
        wait_until_shows(page, rows, timeout=TIMEOUT)
        items = [item for _, item in shown(page)]
        assert username in items[0]
        assert "anonymous" in items[1] and username not in items[1]
        assert "anonymous" in items[2] and username not in items[2]
    with join(server, room) as ws:  # the history tells the same
        authors = [heard(ws)["author"] for _ in range(3)]
    assert authors == [username, None, None]
    assert "Traceback" not in server.log_text()


# === two processes, one Redis, one SQLite file ================================================


# Enough that refusals are certain even on a slow machine: the allowance refills (12 a second)
# while the consumer stores and sends each message, one after the other.
FLOOD = 100


@pytest.fixture
def two_processes(redis_server, migrated_step, serve):
    """daphne and uvicorn serving the same migrated copy, their layers on the same Redis."""
    directory = migrated_step(STEP)
    env = {"REDIS_URL": redis_server.url}
    return serve(STEP, "daphne", env=env, directory=directory), serve(
        STEP, "uvicorn", env=env, directory=directory
    )


def not_stored_yet(directory, room, expected, accepted, servers):
    """What a timeout says: how many are stored, which phase the missing ones came from, and
    what the servers logged at WARNING and above (daphne names an application it killed)."""
    texts = set(stored_texts(directory, room))
    missing = sorted(accepted - texts)
    phases = collections.Counter(text.split()[0] for text in missing)  # "burst", "paced", ...
    warnings = [
        line
        for server in servers
        for line in server.log_text().splitlines()
        if any(word in line for word in ("WARNING", "ERROR", "killed", "Traceback"))
    ]
    return (
        f"every accepted message to be stored: {len(texts)} of {expected}; missing by phase "
        f"{dict(phases)}, e.g. {missing[:3]}; server warnings: {warnings[-10:]}"
    )


def test_two_processes_under_load_pages_show_every_accepted_message_once_in_order(
    machine_to_itself, two_processes, migrated_step, chromium_browser
):
    directory = migrated_step(STEP)
    room = new_room()
    pages = [open_room_page(chromium_browser, two_processes[i % 2], room) for i in range(3)]
    urls = [s.ws_url for s in two_processes]

    async def load():
        # One socket floods past its allowance (alone: flood control counts messages as the
        # consumer handles them, and under a burst it handles them more slowly than they
        # come, which refills the allowance)...
        flooder = await flood(urls[1], room, FLOOD)
        # ...then a burst: 27 sockets x 20 back to back...
        burst = await room_load(
            urls,
            room,
            clients=27,
            messages_each=20,
            catch_up=True,
            until_answered=True,
            label="burst",
            timeout=90,
        )
        # ...then a paced phase: 47 sockets, 2 messages a second each, for 3 seconds.
        paced = await room_load(
            urls,
            room,
            clients=47,
            rate=2,
            seconds=3,
            catch_up=True,
            until_answered=True,
            label="paced",
            timeout=90,
        )
        return burst, flooder, paced

    with EventLoopThread() as loop:
        burst, flooder, paced = loop.run(load(), timeout=240)
    # Flood control counts messages as the consumer handles them: on a machine so loaded that
    # the consumer stores fewer than 12 a second, the allowance refills as fast as it is spent
    # and nothing is refused. Refusals themselves are proven by the one-process test above.
    refused = assert_one_refusal_per_refused_message(flooder) if flooder.refusals() else set()
    # Every sender heard back about every message it sent: its own copy, or a refusal.
    assert not burst.unanswered() and not paced.unanswered()
    assert not burst.refused_texts() and not paced.refused_texts()
    accepted = (
        burst.accepted_texts() | paced.accepted_texts() | ({s.text for s in flooder.sent} - refused)
    )
    # A loaded server may still be storing the last messages it received.
    expected = 27 * 20 + 47 * 6 + FLOOD - len(refused)
    rows = wait_until(
        lambda: len(stored(directory, room)) >= expected and stored(directory, room),
        timeout=120,
        message=lambda: not_stored_yet(directory, room, expected, accepted, two_processes),
    )
    assert len(rows) == len(accepted) == expected
    assert {text for _, text in rows} == accepted  # accepted = stored, nothing refused stored
    for page in pages:
        wait_until_shows(page, rows)
    for run_ in (burst, paced):
        assert_everyone_has_everything_once(run_, rows)
    assert no_database_trouble(*two_processes)


def test_a_page_cut_off_mid_stream_reconnects_and_shows_what_it_missed(
    two_processes, migrated_step, chromium_browser
):
    directory = migrated_step(STEP)
    daphne, uvicorn = two_processes
    room = new_room()
    page = open_room_page(chromium_browser, daphne, room)
    with join(uvicorn, room) as bob:
        for number in range(5):
            say(bob, f"before {number}")
        wait_until_shows(
            page,
            wait_until(lambda: len(stored(directory, room)) == 5 and stored(directory, room)),
            timeout=TIMEOUT,
        )
        daphne.stop()  # the page's server goes away mid-chat...
        wait_for_status(page, re.compile("reconnecting"))
        for number in range(5):  # ...while the room goes on on the other process
            say(bob, f"while away {number}")
        for number in range(5):
            heard_message(bob, f"while away {number}")
        daphne.start()  # a new process, the same port and directory
        wait_for_status(page, CONNECTED)
        rows = stored(directory, room)
        assert len(rows) == 10
        wait_until_shows(page, rows, timeout=TIMEOUT)
        say(bob, "after")
        heard_message(bob, "after")
    rows = stored(directory, room)
    wait_until_shows(page, rows, timeout=TIMEOUT)
    uvicorn.restart()  # history survives a restart of the server, in order
    late = open_room_page(chromium_browser, uvicorn, room)
    wait_until_shows(late, rows, timeout=TIMEOUT)
    assert no_database_trouble(daphne, uvicorn)


class PlayedServer:
    """A room page from a real server whose WebSocket the test plays (Playwright's
    route_web_socket): `routes` holds one route per socket the page opened, newest last, and
    `received` every frame the page sent, as (time.monotonic(), decoded JSON)."""

    def __init__(self, browser, server):
        self.routes = []
        self.received = []
        self.page = browser.new_context().new_page()
        self.page.route_web_socket(re.compile(r"/ws/chat/"), self._play)
        self.page.goto(f"{server.http_url}/chat/{new_room()}/")
        wait_for_status(self.page, CONNECTED)

    def _play(self, route):
        self.routes.append(route)
        route.on_message(lambda frame: self.received.append((time.monotonic(), json.loads(frame))))

    def frames(self):
        return [frame for _, frame in self.received]


@pytest.fixture
def played_server(serve, migrated_step, chromium_browser):
    server = serve(STEP, "uvicorn", env=IN_MEMORY, directory=migrated_step(STEP))
    return PlayedServer(chromium_browser, server)


def test_a_page_asks_again_for_an_unfilled_gap_ever_more_rarely(played_server):
    # A room that goes on while the answer to the page's {"after": ...} never comes, as from
    # a server too busy to answer. The page asks at once, then after 1 s, 2 s and 4 s, not
    # every second.
    page, asks = played_server.page, played_server.received
    (route,) = played_server.routes

    def frame(number):
        text = f"m{number}"
        return json.dumps({"id": number, "previous_id": number - 1, "message": text})

    route.send(frame(2))  # where the page's history starts: it holds 2, with nothing before
    started = time.monotonic()
    number = 4  # 3 never comes: a gap after 2
    while time.monotonic() - started < 10:
        route.send(frame(number))
        number += 1
        page.wait_for_timeout(200)
    assert [ask for _, ask in asks] == [{"after": 2}] * 4, asks
    times = [when for when, _ in asks]
    waits = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    for wait, promised in zip(waits, [1, 2, 4], strict=True):
        assert wait >= promised * 0.9, waits

    route.send(frame(3))  # the gap filled: every message in id order, no further ask
    wait_until(
        lambda: [data_id for data_id, _ in shown(page)] == list(range(2, number)),
        message=lambda: f"messages 2 to {number - 1} in order, shown: {shown(page)}",
    )
    route.send(frame(number))  # shown means handled: an ask would have gone out before that
    wait_until(lambda: shown(page)[-1][0] == number, message=f"message {number} shown")
    assert len(asks) == 4, asks


def test_a_page_tells_which_of_its_messages_a_lost_connection_left_unanswered(played_server):
    # The test answers the first message with the sender's own copy, refuses the second, says
    # nothing to the third, and then the connection drops. Only the third is reported.
    page, routes = played_server.page, played_server.routes
    route = routes[0]
    for text in ("answered", "refused", "never answered"):
        send_from(page, text)
    received = wait_until(
        lambda: len(played_server.frames()) == 3 and played_server.frames(),
        message=lambda: f"3 frames, got {played_server.frames()}",
    )
    refs = [frame["ref"] for frame in received]
    assert [frame["message"] for frame in received] == ["answered", "refused", "never answered"]
    assert len(set(refs)) == 3 and all(refs), refs  # one ref per message sent
    route.send(json.dumps({"id": 1, "previous_id": None, "message": "answered", "ref": refs[0]}))
    refusal = {"message": "refused", "ref": refs[1], "number": 2}
    route.send(json.dumps({"error": "too many messages", "refused": refusal}))
    wait_until(lambda: len(shown(page)) == 1)
    route.close(code=1011)
    wait_for_status(page, re.compile("reconnecting"))
    errors = page.locator("#messages li.error").all_text_contents()
    unconfirmed = [text for text in errors if "not confirmed" in text]
    # The notice as the README shows it, with its placeholder filled in.
    readme = (step_directory(STEP) / "README.md").read_text()
    (shown_in_readme,) = [line for line in readme.splitlines() if "error: not confirmed" in line]
    assert unconfirmed == [shown_in_readme.replace("<the text>", "never answered")], errors
    wait_for_status(page, CONNECTED)  # the page reconnects...
    assert len(routes) == 2
    routes[1].close(code=1011)  # ...and a second drop reports nothing again
    wait_for_status(page, re.compile("reconnecting"))
    errors = page.locator("#messages li.error").all_text_contents()
    assert len([text for text in errors if "not confirmed" in text]) == 1, errors


def test_a_redis_outage_closes_sockets_with_4011_and_pages_catch_up_after_it(
    two_processes, redis_server, migrated_step, chromium_browser
):
    directory = migrated_step(STEP)
    daphne, uvicorn = two_processes
    room = new_room()
    pages = [open_room_page(chromium_browser, server, room) for server in two_processes]
    with join(daphne, room) as alice, join(uvicorn, room) as bob:
        say(alice, "before the outage")
        heard_message(bob, "before the outage")

        redis_server.stop()
        for ws in (alice, bob):  # every open socket is told, then closed with the stated code
            assert heard_error(ws)["error"].startswith("the chat stopped working")
            assert closed_with(ws) == CHAT_FAILED
    for server in two_processes:
        assert requests.get(f"{server.http_url}/chat/{room}/", timeout=TIMEOUT).status_code == 200
    for page in pages:
        page.locator("#messages li.error", has_text="the chat stopped working").first.wait_for(
            timeout=TIMEOUT * 1000
        )
    # Ordinary Django code posts meanwhile: the announcement is stored before it is sent, so
    # it is not lost even though sending it to the room fails while Redis is away.
    # (Whether the command then reports the failed send is its own business, not checked here.)
    try:
        manage(
            directory,
            f'announce {room} "said during the outage"',
            env={"REDIS_URL": redis_server.url},
            timeout=60,
        )
    except RuntimeError as failed:
        print(failed)
    assert stored_texts(directory, room) == ["before the outage", "said during the outage"]

    redis_server.restart()
    for page in pages:  # the pages come back by themselves and catch up
        wait_for_status(page, CONNECTED)
        wait_until_shows(page, stored(directory, room))
    with join(uvicorn, room) as bob:
        say(bob, "after the outage")
        heard_message(bob, "after the outage")
    rows = stored(directory, room)
    assert [text for _, text in rows] == [
        "before the outage",
        "said during the outage",
        "after the outage",
    ]
    for page in pages:
        wait_until_shows(page, rows, timeout=TIMEOUT)


def test_an_announcement_from_the_command_line_reaches_open_pages(
    two_processes, redis_server, migrated_step, chromium_browser
):
    directory = migrated_step(STEP)
    room = new_room()
    pages = [open_room_page(chromium_browser, server, room) for server in two_processes]
    manage(
        directory,
        f'announce {room} "the building closes at six"',
        env={"REDIS_URL": redis_server.url},
        timeout=60,
    )
    rows = stored(directory, room)
    assert [text for _, text in rows] == ["the building closes at six"]
    for page in pages:
        wait_until_shows(page, rows, timeout=TIMEOUT)


def test_the_readmes_announce_command_prints_what_the_readme_shows(tmp_path):
    command = 'python manage.py announce lobby "The building closes at six."'
    (shown,) = find_command(step_directory(STEP) / "README.md", command)
    directory = copy_step(STEP, tmp_path)  # a fresh database: the first message has id 1
    migrate(directory)
    printed = manage(directory, shown.command.removeprefix("python manage.py "), env=IN_MEMORY)
    assert printed.splitlines() == shown.output
    assert stored_texts(directory, "lobby") == ["The building closes at six."]
