"""Step 06: the chat that never silently loses a message, tested as a busy room uses it.

Real daphne and uvicorn processes serve a migrated copy of the step (two processes share the
copy's one SQLite file and a real redis-server when a test needs them), many asyncio clients
(tools/chat_driver.py) send at once, and real headless Chromium pages read. What a page shows
is compared with what the copy's database holds: every accepted message exactly once, in id
order, and each message a client resends (the same ref) stored once. The wire format is the one
step06_reliable_chat/README.md describes.
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

from tools.chat_driver import (
    CONNECTED,
    PAGE_TIMEOUT,
    TIMEOUT,
    ChatClient,
    CuttingProxy,
    EventLoopThread,
    chat_page_url,
    chat_path,
    click_send,
    close_all,
    closed_with,
    count_sockets,
    error_lines,
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
    said_all_taken,
    said_once_taken,
    say,
    say_all_until_taken,
    send_from,
    send_until_answered,
    shown,
    socket_failures,
    sockets_opened,
    step_constants,
    stored,
    stored_refs,
    stored_texts,
    tracebacks_logged,
    typed_until_taken,
    wait_for_status,
    wait_in_page,
    wait_until_shows,
    wait_until_taken,
)
from tools.readme_console import find_command
from tools.repository import step_directory
from tools.step_commands import copy_step, manage, migrate
from tools.waiting import wait_until

STEP = "step06_reliable_chat"
SERVE_MIGRATED_COPY = True  # the chat stores its messages: every server serves a migrated copy
# An empty REDIS_URL, so a REDIS_URL in the caller's environment cannot leak in.
SERVER_ENV = IN_MEMORY = {"REDIS_URL": ""}
MAX_MESSAGE_LENGTH = 2000  # characters of text, as the README states
# The step's own flood control, which the README states as "30 ... then 12 a second".
FLOOD_CONTROL = step_constants(step_directory(STEP), "chat/flood_control.py")
BURST, RATE = FLOOD_CONTROL["BURST"], FLOOD_CONTROL["RATE"]
LEAVING_MESSAGES = 20  # what each leaving sender sends: within its allowance
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
        await send_until_answered(client, count, "flood")
    finally:
        await client.close()
    return client


def assert_one_refusal_per_refused_message(client):
    """Each refusal names a message this socket sent, by its frame number and ref, and no
    message is refused twice or both refused and accepted."""
    sent = {s.number: s for s in client.sent}  # a message said again is a frame of its own
    refusals = client.refusals()
    assert refusals, "a socket past the limit was never told"
    numbers = [r["refused"]["number"] for r in refusals]
    assert len(numbers) == len(set(numbers)), "a message was refused more than once"
    for refusal in refusals:
        refused = refusal["refused"]
        assert refusal["error"].startswith(("too many messages", BUSY)), refusal["error"]
        assert sent[refused["number"]].text == refused["message"]
        assert sent[refused["number"]].ref == refused["ref"]
    # A message sent once is refused or accepted, never both (one sent again after a busy
    # refusal, with its ref, may be accepted the second time).
    accepted_own = {m["ref"] for m in client.messages() if m.get("ref")}
    sent_once = {
        ref for ref, times in collections.Counter(s.ref for s in client.sent).items() if times == 1
    }
    assert not accepted_own & {r["refused"]["ref"] for r in refusals} & sent_once
    return {r["refused"]["message"] for r in refusals}


BUSY = "the room is busy: "
BUSY_LOGGED = "busy: refusing new messages"  # what a busy process logs, now and then


def assert_each_message_answered_once(run):
    """Every message the run sent was answered once, counted from what came back: its own copy
    (stored) or a refusal, never both. Within flood control's allowance the only refusal the
    server may give is by name, "the room is busy" (chat/busy_room.py): a loaded machine (CI
    runs two tracks on two cores) can push the room past what it stores in time, and then it
    says no at once instead of delivering late. Returns the refused texts."""
    refused, confirmed = run.refused_texts(), run.confirmed_texts()
    assert not refused & confirmed, "a message both refused and stored"
    assert refused | confirmed == run.sent_texts(), "a message neither refused nor stored"
    reasons = [r["error"] for client in run.senders for r in client.refusals()]
    assert all(reason.startswith(BUSY) for reason in reasons), reasons[:3]
    if refused:
        print(f"{len(refused)} of {len(run.sent_texts())} refused as busy (a loaded machine)")
    return refused


def assert_exactly_once(run, rows):
    """Every client of the run (each following the page's catch-up logic, joined with
    ?after=0 before the first message) holds exactly the room's stored messages: counted by id
    as they arrived, duplicates reported, then held once each as the page holds them, their ids
    in order equal to the stored ids, each with its stored text. And each message a sender
    sent is stored once: the stored texts, as a list, are the texts the senders heard back on."""
    stored_ids = [number for number, _ in rows]
    text_of = dict(rows)
    duplicates = run.duplicate_deliveries()
    if duplicates:  # a layer and a catch-up answer both brought it: the page shows it once
        print("ids delivered more than once:", {n: len(d) for n, d in duplicates.items()})
    for client in run.clients:
        assert client.held_ids() == stored_ids, (
            f"{client.name}: holds {len(client.held_ids())} ids, the room {len(stored_ids)}; "
            f"missing {sorted(set(stored_ids) - set(client.held_ids()))[:10]}"
        )
        assert all(text_of[m["id"]] == m["message"] for m in client.messages()), client.name
        assert not client.errors(), client.errors()[:3]
    own = sorted(text for text in text_of.values() if text in run.sent_texts())
    assert own == sorted(run.confirmed_texts()), "a message stored twice, or not at all"


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
    assert_each_message_answered_once(run_)  # 20 back to back: within every allowance
    assert_exactly_once(run_, rows)
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
    assert_each_message_answered_once(run_)  # 10 a second, sustained: within the allowance
    assert_exactly_once(run_, rows)
    assert no_database_trouble(server)


PAGES_TYPING = 3
LINES_TYPED = 10  # by each page, one after the other: a person's pace is not flood control's
CUT_AFTER = {2, 5, 8}  # of each page's messages in the order stored: whose answer is lost


def test_pages_typing_under_load_through_cut_connections_show_each_message_exactly_once(
    machine_to_itself, server, migrated_step, chromium_browser
):
    """Three pages type while 20 clients keep the room busy; each page's connection is cut
    three times between a message (stored) and its answer. Nobody resends a lost answer by
    hand: each page resends what it never heard back about, and every page shows every message
    once. (Only a line the room refuses as busy is sent again with its button, as it asks.)"""
    directory = migrated_step(STEP)
    room = new_room()
    pages, proxies = [], []
    for _ in range(PAGES_TYPING):
        page = chromium_browser.new_context().new_page()
        proxies.append(CuttingProxy(page, cut_after=CUT_AFTER))
        page.goto(chat_page_url(server, room))
        wait_for_status(page, CONNECTED)
        pages.append(page)
    typed = [f"page {i} line {n}" for n in range(LINES_TYPED) for i in range(PAGES_TYPING)]
    with EventLoopThread() as loop:
        load = loop.start(
            room_load(
                [server.ws_url],
                room,
                clients=20,
                rate=2,
                seconds=4,
                catch_up=True,
                until_answered=True,
                label="load",
                timeout=90,
            )
        )
        for text in typed:
            send_from(pages[int(text.split()[1])], text)
        # The proxies forward frames only while the test is in a Playwright call.
        wait_in_page(pages[0], load.done, timeout=150, message="the load to end")
        run_ = load.result()
    assert not run_.unanswered()
    assert_each_message_answered_once(run_)  # its own copy, or a refusal by name
    confirmed = sorted(run_.confirmed_texts())
    # A loaded machine may push the room past what it stores in time: then a typed line is
    # refused by name, shown with its text, and held in the outbox with a "send again" button
    # (anything else on a page is an error). As the refusal asks, each is sent again, with
    # its ref, until the room takes it: in a CI run 26 of the 30 lines were refused, none of
    # the chosen ones was ever answered, and so none was cut. A page may still be resending
    # after the load (a cut connection), so each line is waited for until its page shows it.
    refused = set()
    for page in pages:
        for line in error_lines(page):
            assert BUSY in line, line
            refused |= {text for text in typed if f'"{text}"' in line}
    for text in typed:
        wait_until_taken(pages[int(text.split()[1])], text)
    if refused:
        print(f"{len(refused)} typed lines refused as busy and sent again (a loaded machine)")

    def every_typed_and_confirmed_message_stored_once():
        rows = stored(directory, room)
        return sorted(text for _, text in rows) == sorted(typed + confirmed) and rows

    def what_differs():
        texts = [text for _, text in stored(directory, room)]
        wanted = typed + confirmed
        missing = sorted(set(wanted) - set(texts))
        outboxes = [page.locator("#outbox li").all_text_contents() for page in pages]
        # Where each missing line got to: how often its page sent it, and what the page shows.
        traces = {
            text: {
                "sent": [frame for frame in proxy.sent if frame["message"] == text],
                "shown": [
                    line
                    for line in page.locator("#messages li").all_text_contents()
                    if text in line
                ],
                "left in the input": page.input_value("#message"),
            }
            for text in missing
            if text in typed
            for page, proxy in [(pages[int(text.split()[1])], proxies[int(text.split()[1])])]
        }
        return (
            f"the stored messages to be the typed lines and the confirmed ones: "
            f"{len(texts)} stored, {len(wanted)} wanted; not stored: {missing}; "
            f"not wanted: {sorted(set(texts) - set(wanted))}; the pages' outboxes: {outboxes}; "
            f"statuses: {[page.locator('#status').text_content() for page in pages]}; "
            f"the missing typed lines: {traces}"
        )

    rows = wait_in_page(
        pages[0],
        every_typed_and_confirmed_message_stored_once,
        timeout=PAGE_TIMEOUT,
        message=what_differs,
    )
    for page, proxy in zip(pages, proxies, strict=True):
        wait_until_shows(page, rows)  # every message once, in id order, on every page
        # The answer to a resend may come after the catch-up that showed the message.
        wait_in_page(page, lambda page=page: page.locator("#outbox li").count() == 0)
        # Nothing but a busy room refused, nobody asked to decide anything.
        assert all(BUSY in line for line in error_lines(page)), error_lines(page)
        # Every line of the page was stored, so the answers chosen by number were all cut,
        # each of a message of its own; each cut message went out again, with the same ref.
        cut = {frame["message"] for frame in proxy.sent if frame.get("ref") in proxy.cuts}
        assert len(proxy.cuts) == len(cut) == len(CUT_AFTER), (proxy.cuts, cut, refused)
        assert set(proxy.cuts) <= set(proxy.resent()), (proxy.cuts, proxy.resent())
    print("resent by the pages:", [len(proxy.resent()) for proxy in proxies])
    assert no_database_trouble(server)


async def send_and_leave(server, room, sockets, messages_each=LEAVING_MESSAGES):
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
    # A fresh process: if it turns messages away as busy, its log says so now. (The process
    # logs that once in ten seconds at most, and the test before may have made it busy.)
    server.restart()
    room = new_room()
    mark = server.log_mark()
    clients = run_async(send_and_leave(server, room, 10))
    sent = {s.text for client in clients for s in client.sent}
    directory = migrated_step(STEP)
    # A loaded machine may make the process busy: then it refuses messages (to senders gone
    # already) and says so in its log; nothing else may keep a message from the room. So: all
    # of them stored, or a busy process that has stored nothing more for two seconds.
    last_change = [time.monotonic(), None]

    def all_stored_or_busy_and_done():
        rows = stored(directory, room)
        if len(rows) >= len(sent):
            return rows
        if rows != last_change[1]:
            last_change[:] = time.monotonic(), rows
        elif time.monotonic() - last_change[0] > 2 and BUSY_LOGGED in server.log_after(mark):
            print(f"{len(sent) - len(rows)} of {len(sent)} refused as busy (a loaded machine)")
            return rows
        return None

    rows = wait_until(
        all_stored_or_busy_and_done,
        timeout=TIMEOUT,
        message=lambda: (
            f"{len(stored(directory, room))} of {len(sent)} stored, and no busy "
            f"process: {server.log_after(mark)[-3000:]}"
        ),
    )
    texts = [text for _, text in rows]
    assert len(texts) == len(set(texts)) and set(texts) <= sent  # each stored once, nothing else
    time.sleep(0.5)  # the consumers' last sends and disconnects come after the last store
    assert "Traceback" not in server.log_after(mark)


def test_the_readme_states_the_real_flood_control_and_length_limit():
    readme = " ".join((step_directory(STEP) / "README.md").read_text().split())
    assert f"{BURST} messages back to back, then {RATE} a second" in readme
    assert f"at most {MAX_MESSAGE_LENGTH} characters of text" in readme


def test_a_sender_past_the_limit_is_told_once_per_refused_message_and_heard_again_after_a_pause(
    server, migrated_step
):
    room = new_room()

    def flood_refused(client):
        return {
            r["refused"]["message"]
            for r in client.refusals()
            if r["error"].startswith("too many messages")
        }

    async def scenario():
        readers = [
            await ChatClient(server.ws_url + chat_path(room), f"reader-{i}").open()
            for i in range(4)
        ]
        flooder = await ChatClient(server.ws_url + chat_path(room), "flooder").open()
        try:
            # Flood control counts messages as the consumer handles them: on a machine so
            # loaded that it handles fewer than RATE a second, nothing is refused. So flood
            # until refused (at most 10 rounds; a normal machine refuses in the first).
            started = time.perf_counter()
            for flood_round in range(10):
                await send_until_answered(flooder, BURST + 30, f"flood{flood_round}")
                if flood_refused(flooder):
                    break
            flooding = time.perf_counter() - started
            # A pause on the same socket: its allowance refills to the full burst, no more...
            await asyncio.sleep(BURST / RATE)
            again = [f"again flooder #{number}" for number in range(BURST)]
            # ...which flood control takes whole. (A loaded machine may refuse some as busy:
            # they are said again, one at a time, until taken.)
            await say_all_until_taken(flooder, again, "again")
            for reader in readers:
                await reader.wait_for(lambda c: set(again) <= set(c.texts()), TIMEOUT)
            return flooder, readers, flooding
        finally:
            await close_all([*readers, flooder])

    flooder, readers, flooding = run_async(scenario())
    refused = assert_one_refusal_per_refused_message(flooder)
    # Counted from what came back: the sender's own copies and the refusals, each by name.
    own = {m["message"] for m in flooder.messages() if m.get("ref")}
    flood_sent = {s.text for s in flooder.sent if s.text.startswith("flood")}
    again_sent = {s.text for s in flooder.sent if s.text.startswith("again")}
    accepted = own & flood_sent
    assert not accepted & refused and accepted | (refused & flood_sent) == flood_sent
    # Past flood control: the whole burst at once, then RATE a second while the consumer worked
    # through the rest. Of those, a loaded machine may have refused some as busy (by name).
    past_flood_control = flood_sent - flood_refused(flooder)
    assert accepted <= past_flood_control
    assert BURST <= len(past_flood_control) <= BURST + RATE * flooding + 1, (
        len(past_flood_control),
        flooding,
    )
    if past_flood_control - accepted:
        print(f"{len(past_flood_control - accepted)} refused as busy (a loaded machine)")
    assert own & again_sent == again_sent and not flood_refused(flooder) & again_sent
    texts = stored_texts(migrated_step(STEP), room)
    assert sorted(texts) == sorted(accepted | again_sent)  # nothing refused is stored
    for reader in readers:
        assert not (refused & flood_sent) & set(reader.texts())  # ...or broadcast
        assert accepted | again_sent <= set(reader.texts())
    assert no_database_trouble(server)


# --- what a message is ----------------------------------------------------------------------------


def test_a_message_comes_back_with_its_id_previous_id_author_and_time(server, migrated_step):
    room = new_room()
    with join(server, room) as alice, join(server, room) as bob:
        say(alice, "first", ref="a1")
        first_to_alice = heard_message(alice, "first")
        first_to_bob = heard_message(bob, "first")
        said_once_taken(bob, "second")  # sent again if a loaded machine is busy
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


def test_a_resent_message_is_stored_once_and_answered_with_the_first_copys_id(
    server, migrated_step
):
    """A sender whose connection dropped before the answer sends the same frame again on a new
    connection: the room keeps one copy, the sender gets the first copy's id, nobody else gets
    it twice; the same ref in another room is another message."""
    room, other_room = new_room(), new_room()
    with join(server, room) as reader:
        with join(server, room) as alice:
            say(alice, "said once", ref="alice-1")
            first = heard_message(alice, "said once")
        heard_message(reader, "said once")
        with join(server, room) as alice_again:  # the history has it, without its ref...
            assert "ref" not in heard_message(alice_again, "said once")
            say(alice_again, "said once", ref="alice-1")  # ...so the page sends it again
            again = heard_message(alice_again, "said once")
            say(alice_again, "said next", ref=2)
            following = heard_message(alice_again, "said next")
            assert following["ref"] == 2  # as it was sent
        assert again == first  # the same id, previous_id, time, and ref
        assert frames_before(reader, "said next") == []  # the resend reached nobody else
        with join(server, other_room) as bob:
            say(bob, "said once", ref="alice-1")
            elsewhere = heard_message(bob, "said once")
    directory = migrated_step(STEP)
    assert elsewhere["id"] != first["id"]
    assert stored(directory, room) == [(first["id"], "said once"), (following["id"], "said next")]
    assert stored_refs(directory, room) == [(first["id"], "alice-1"), (following["id"], "2")]
    assert stored_refs(directory, other_room) == [(elsewhere["id"], "alice-1")]


def test_a_socket_that_joins_gets_the_recent_history_or_what_came_after_an_id(
    server, migrated_step
):
    room = new_room()
    for first in (0, 20, 40):  # three sockets of 20 back to back: within each one's allowance
        with join(server, room) as alice:
            said_all_taken(alice, [f"m{number}" for number in range(first, first + 20)])
    rows = stored(migrated_step(STEP), room)
    assert len(rows) == 60
    with join(server, room) as late:  # no ?after: the last 50, in id order
        history = [heard(late) for _ in range(50)]
        assert [(m["id"], m["message"]) for m in history] == rows[-50:]
        assert heard(late) == {"joined": room, "newest_id": rows[-1][0]}  # the history ends
        # Asked for on the socket: an answer that starts right after the history proves the
        # history held nothing more (frames on one socket keep their order).
        late.send(json.dumps({"after": rows[54][0]}))
        assert [(heard(late)["id"]) for _ in range(5)] == [number for number, _ in rows[55:]]
    with join(server, room, after=rows[9][0]) as catching_up:  # ?after=<id>: everything after it
        assert [(heard(catching_up)["id"]) for _ in range(50)] == [n for n, _ in rows[10:]]
        assert heard(catching_up)["joined"] == room
        say(catching_up, "after the catch-up")  # its arrival proves nothing else was on its way
        assert frames_before(catching_up, "after the catch-up") == []


# --- bad input --------------------------------------------------------------------------------


BAD_FRAMES = {  # a frame, and the ref its refusal names
    "not JSON": ("hello", None),
    "no message field": ('{"text": "hi", "ref": "r1"}', "r1"),
    "message not text": ('{"message": ["hi"], "ref": 5}', 5),
    "text too long": (json.dumps({"message": "x" * (MAX_MESSAGE_LENGTH + 1), "ref": "r2"}), "r2"),
    "ref too long": (json.dumps({"message": "hi", "ref": "r" * 101}), None),
    "binary": (b'{"message": "hi", "ref": "r3"}', None),
}
# The longest text accepted, sent after each bad frame (its arrival proves the bad one reached
# nobody else): 2,000 characters, where the frame that carries it is longer.
LONGEST_TEXT = "after the bad one: ".ljust(MAX_MESSAGE_LENGTH, "x")


@pytest.mark.parametrize("frame, ref", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_bad_frame_is_refused_by_its_ref_on_that_socket_only_and_nothing_is_stored(
    server, migrated_step, frame, ref
):
    room = new_room()
    with join(server, room) as alice, join(server, room) as bob:
        alice.send(frame)
        refusal = heard_error(alice)
        assert refusal["error"] and refusal["refused"]["ref"] == ref
        assert refusal["refused"]["number"] == 1
        say(alice, LONGEST_TEXT, ref="longest")
        # Taken first (a busy refusal goes to alice, who sends it again with its ref), then
        # read on bob's side: nothing but bob's own "joined" came before it. Bob's history may
        # be read while the longest text is stored: it then comes in the history, before
        # "joined" ([]), or just after the history was read, and "joined" names it as the
        # room's newest.
        longest = heard_message(alice, LONGEST_TEXT)
        before = frames_before(bob, LONGEST_TEXT)
        assert longest["ref"] == "longest"
        joined = [{"joined": room, "newest_id": newest} for newest in (None, longest["id"])]
        assert before in ([], [joined[0]], [joined[1]]), before
    assert stored_texts(migrated_step(STEP), room) == [LONGEST_TEXT]
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
    click_send(alice, "hello from alice")  # the Send button; the rest press Enter
    wait_until_taken(alice, "hello from alice")
    wait_until(lambda: len(shown(visitor)) == 1, timeout=TIMEOUT)
    typed_until_taken(visitor, "hello from nobody")
    wait_until(lambda: len(shown(stale)) == 2, timeout=TIMEOUT)
    typed_until_taken(stale, "hello from a stale cookie")
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


def unanswered_why(run_, servers):
    """What a timeout says: how many are unanswered, how the senders' sockets ended, and what
    the servers logged at WARNING and above."""
    senders = [c for c in run_.senders if {s.text for s in c.sent} & run_.unanswered()]
    warnings = [
        line
        for server in servers
        for line in server.log_text().splitlines()
        if any(word in line for word in ("WARNING", "ERROR", "killed", "Traceback", "Error"))
    ]
    return (
        f"{len(run_.unanswered())} unanswered, of {len(senders)} senders; their close codes "
        f"{[c.close_code for c in senders]}, errors {[c.errors()[:1] for c in senders][:3]}; "
        f"server warnings: {warnings[-10:]}"
    )


def rows_up_to(rows, texts):
    """The stored rows up to the last one holding one of `texts`."""
    last = max(index for index, (_, text) in enumerate(rows) if text in texts)
    return rows[: last + 1]


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
    # Every sender heard back about every message it sent: its own copy, or a refusal, each
    # counted from what came back.
    for run_ in (burst, paced):
        assert not run_.unanswered(), unanswered_why(run_, two_processes)
    assert_each_message_answered_once(burst)
    assert_each_message_answered_once(paced)
    flooded = {m["message"] for m in flooder.messages() if m.get("ref")}
    assert not flooded & refused and flooded | refused == {s.text for s in flooder.sent}
    accepted = burst.confirmed_texts() | paced.confirmed_texts() | flooded
    # A loaded server may still be storing the last messages it received.
    expected = len(accepted)
    rows = wait_until(
        lambda: len(stored(directory, room)) >= expected and stored(directory, room),
        timeout=120,
        message=lambda: not_stored_yet(directory, room, expected, accepted, two_processes),
    )
    # Each accepted message stored once, nothing refused stored.
    assert sorted(text for _, text in rows) == sorted(accepted)
    for page in pages:
        wait_until_shows(page, rows)
    # Each phase's clients joined with ?after=0 and left when it ended: they hold the room as
    # it was up to their phase's last message.
    assert_exactly_once(burst, rows_up_to(rows, burst.sent_texts()))
    assert_exactly_once(paced, rows)
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
            said_once_taken(bob, f"before {number}")  # sent again if a loaded machine is busy
        wait_until_shows(page, stored(directory, room), timeout=TIMEOUT)
        daphne.stop()  # the page's server goes away mid-chat...
        wait_for_status(page, re.compile("reconnecting"))
        # ...while the room goes on on the other process
        said_all_taken(bob, [f"while away {number}" for number in range(5)])
        send_from(page, "typed while away")  # the page keeps it until it is back in the room
        daphne.start()  # a new process, the same port and directory
        wait_for_status(page, CONNECTED)
        wait_until_taken(page, "typed while away")  # sent again if a loaded machine is busy
        rows = wait_until(lambda: len(stored(directory, room)) == 11 and stored(directory, room))
        assert [text for _, text in rows].count("typed while away") == 1
        wait_until_shows(page, rows, timeout=TIMEOUT)
        wait_until(lambda: page.locator("#outbox li").count() == 0, message="an empty outbox")
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
    `received` every frame the page sent, as (time.monotonic(), decoded JSON); `by_route` the
    same frames, one list per route. Each socket is first told that the (empty) room is joined."""

    def __init__(self, browser, server):
        self.routes = []
        self.received = []
        self.by_route = []
        self.room = new_room()
        self.page = browser.new_context().new_page()
        self.page.route_web_socket(re.compile(r"/ws/chat/"), self._play)
        self.page.goto(f"{server.http_url}/chat/{self.room}/")
        wait_for_status(self.page, CONNECTED)

    def _play(self, route):
        self.routes.append(route)
        frames = []
        self.by_route.append(frames)

        def record(raw):
            frame = json.loads(raw)
            self.received.append((time.monotonic(), frame))
            frames.append(frame)

        route.on_message(record)
        route.send(json.dumps({"joined": self.room, "newest_id": None}))

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
        # The page's timer, seen from the test through Playwright's routing: a loaded
        # machine delivers a frame up to a quarter of a second late, or early.
        assert wait >= promised - 0.25, waits

    route.send(frame(3))  # the gap filled: every message in id order, no further ask
    wait_until(
        lambda: [data_id for data_id, _ in shown(page)] == list(range(2, number)),
        message=lambda: f"messages 2 to {number - 1} in order, shown: {shown(page)}",
    )
    route.send(frame(number))  # shown means handled: an ask would have gone out before that
    wait_until(lambda: shown(page)[-1][0] == number, message=f"message {number} shown")
    assert len(asks) == 4, asks


def test_a_page_resends_by_itself_what_a_lost_connection_left_unanswered(played_server):
    # The test answers the first message with the sender's own copy, refuses the second, says
    # nothing to the third, and then the connection drops. Once the page is back in the room,
    # it sends the third again, with the same ref, and nothing else; the refused one is shown
    # as refused, its text kept. Nobody is asked to decide whether to send anything again.
    page, routes = played_server.page, played_server.routes
    for text in ("answered", "refused", "never answered"):
        send_from(page, text)
    received = wait_in_page(
        page,
        lambda: len(played_server.frames()) == 3 and played_server.frames(),
        message=lambda: f"3 frames, got {played_server.frames()}",
    )
    refs = [frame["ref"] for frame in received]
    assert [frame["message"] for frame in received] == ["answered", "refused", "never answered"]
    assert len(set(refs)) == 3 and all(refs), refs  # one ref per message sent
    routes[0].send(
        json.dumps({"id": 1, "previous_id": None, "message": "answered", "ref": refs[0]})
    )
    error = "too many messages: at most 30 at once and 12 a second; message 41 was not sent"
    refusal = {"message": "refused", "ref": refs[1], "number": 41}
    routes[0].send(json.dumps({"error": error, "refused": refusal}))
    wait_in_page(page, lambda: len(shown(page)) == 1)
    routes[0].close(code=1011)
    wait_for_status(page, re.compile(r"^reconnecting in [\d.]+ s, then resend 1 message"))
    wait_in_page(page, lambda: len(routes) == 2 and played_server.by_route[1])
    assert played_server.by_route[1] == [{"message": "never answered", "ref": refs[2]}]
    routes[1].send(
        json.dumps({"id": 2, "previous_id": 1, "message": "never answered", "ref": refs[2]})
    )
    wait_in_page(page, lambda: [number for number, _ in shown(page)] == [1, 2])
    assert page.locator("#outbox li:not(.refused)").count() == 0
    # The refusal as the README shows it; the refused text stays in the outbox, and its
    # button sends it again under a new ref.
    readme = (step_directory(STEP) / "README.md").read_text()
    (shown_in_readme,) = [
        line for line in readme.splitlines() if line.startswith("error: not sent")
    ]
    assert error_lines(page) == [shown_in_readme.replace("<the text>", "refused")]
    assert page.locator("#outbox li.refused").all_text_contents() == [
        "not sent: refused send again"
    ]
    assert page.input_value("#message") == ""  # the input is the person's, never filled for them
    page.click("#outbox li.refused button")
    wait_in_page(page, lambda: len(played_server.by_route[1]) == 2)
    again = played_server.by_route[1][1]
    assert again["message"] == "refused" and again["ref"] not in refs, again
    routes[1].send(json.dumps({"id": 3, "previous_id": 2, "message": "refused", **again}))
    wait_in_page(page, lambda: page.locator("#outbox li").count() == 0)
    # A 2,000-character word wraps instead of widening the page.
    word = "w" * MAX_MESSAGE_LENGTH
    routes[1].send(json.dumps({"id": 4, "previous_id": 3, "message": word}))
    wait_in_page(page, lambda: len(shown(page)) == 4)
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    routes[1].close(code=1011)  # a second drop: nothing is left to resend
    wait_in_page(page, lambda: len(routes) == 3)
    wait_for_status(page, CONNECTED)
    send_from(page, "after the second drop")  # the first frame on the new socket
    wait_in_page(page, lambda: played_server.by_route[2])
    assert [f["message"] for f in played_server.by_route[2]] == ["after the second drop"]


RECONNECT_TRIES = 4  # tries each page makes while Redis is away before the test brings it back


def backoff_floor(number):
    """The least the page waits (ms) before its try `number` (1, 2, ...) after the last close:
    500 ms doubled after each failure, up to 8 s, times a random factor of at least 0.5."""
    return 0.5 * min(500 * 2 ** (number - 1), 8000)


def test_a_redis_outage_closes_sockets_with_4011_pages_back_off_and_catch_up_exactly_once(
    two_processes, redis_server, migrated_step, chromium_browser
):
    directory = migrated_step(STEP)
    daphne, uvicorn = two_processes
    room = new_room()
    pages = [open_room_page(chromium_browser, server, room) for server in two_processes]
    for page in pages:
        count_sockets(page)
    marks = [server.log_mark() for server in two_processes]
    with join(daphne, room) as alice, join(uvicorn, room) as bob:
        said_once_taken(alice, "before the outage")  # sent again if a loaded machine is busy
        heard_message(bob, "before the outage")

        redis_server.stop()
        for ws in (alice, bob):  # every open socket is told, then closed with the stated code
            assert heard_error(ws)["error"].startswith("the chat stopped working")
            assert closed_with(ws) == CHAT_FAILED
    for server in two_processes:
        assert requests.get(f"{server.http_url}/chat/{room}/", timeout=TIMEOUT).status_code == 200
    send_from(pages[0], "typed during the outage")  # kept by the page until it is back
    # Ordinary Django code posts meanwhile: the announcement is stored, and the command says
    # so, with its id, and succeeds; sending it to the room waits for the pages' catch-up.
    printed = manage(
        directory,
        f'announce {room} "said during the outage"',
        env={"REDIS_URL": redis_server.url},
        timeout=60,
    )
    rows = stored(directory, room)
    assert [text for _, text in rows] == ["before the outage", "said during the outage"]
    assert printed.startswith(f"message {rows[1][0]} stored in room {room}, but not sent"), printed
    assert "they will get it when they catch up" in printed and "Traceback" not in printed

    # Each page tries again by itself, waiting longer after each try the server accepted
    # and closed at once.
    for page in pages:
        wait_until(
            lambda page=page: len(sockets_opened(page)) >= RECONNECT_TRIES,
            timeout=90,
            message=lambda page=page: f"{RECONNECT_TRIES} tries, got {sockets_opened(page)}",
        )
    outage_tries = [sockets_opened(page) for page in pages]
    redis_server.restart()
    print("tries per page while Redis was away:", [len(opened) for opened in outage_tries])
    for opened in outage_tries:
        waits = [later - earlier for earlier, later in zip(opened, opened[1:], strict=False)]
        floors = [backoff_floor(number) / 1000 for number in range(2, len(opened) + 1)]
        assert all(wait >= floor * 0.9 for wait, floor in zip(waits, floors, strict=True)), (
            waits,
            floors,
        )
    for page in pages:  # the failure was said once per page, not once per try
        stopped = [line for line in error_lines(page) if "the chat stopped working" in line]
        assert len(stopped) == 1, error_lines(page)
    # One line per failing socket with its cause, one traceback per cause.
    for server, mark in zip(two_processes, marks, strict=True):
        log = server.log_after(mark)
        failures = socket_failures(log)
        causes = {cause for _, cause, _ in failures}
        assert len(failures) >= RECONNECT_TRIES, log[-3000:]
        with_traceback = [cause for _, cause, traceback in failures if traceback]
        assert sorted(with_traceback) == sorted(causes), failures  # each cause's first line
        assert tracebacks_logged(log) == len(causes), log[-5000:]  # ...and nothing else

    for page in pages:  # the pages come back by themselves, catch up and resend
        wait_for_status(page, CONNECTED)
    wait_until_taken(pages[0], "typed during the outage")  # sent again if the room is busy
    rows = wait_until(lambda: len(stored(directory, room)) == 3 and stored(directory, room))
    for page in pages:
        wait_until_shows(page, rows)
    with join(uvicorn, room) as bob:
        say(bob, "after the outage")
        heard_message(bob, "after the outage")
    rows = stored(directory, room)
    assert [text for _, text in rows] == [
        "before the outage",
        "said during the outage",
        "typed during the outage",
        "after the outage",
    ]
    for page in pages:
        wait_until_shows(page, rows, timeout=TIMEOUT)
        wait_in_page(page, lambda page=page: page.locator("#outbox li").count() == 0)


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
