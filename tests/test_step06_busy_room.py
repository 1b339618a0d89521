"""Step 06 past its ceiling: a room sent more than one server process can store and deliver
refuses the excess at once, naming each refused message, and everything it accepted is stored
and reaches every client and every page, once each, in id order.

Real daphne and uvicorn processes serve a migrated copy of the step; 80 asyncio clients
(tools/chat_driver.py, following the page's catch-up logic) send 10 messages a second each, 800
a second into a room of 82, within each socket's flood-control allowance, so that what is
refused is refused because the room is busy; two headless Chromium pages read, and one of them
sends too. No timing is asserted: how late the accepted messages are is the benchmark's
(benchmarks/room_throughput.py).
"""

import re

import pytest

from tools.chat_driver import (
    EventLoopThread,
    chat_page_url,
    new_room,
    open_page,
    room_load,
    send_from,
    stored,
    wait_until_shows,
)
from tools.waiting import wait_until

STEP = "step06_reliable_chat"
SERVE_MIGRATED_COPY = True
SERVER_ENV = {"REDIS_URL": ""}  # one process, the in-memory layer
CLIENTS = 80
RATE = 10  # messages a second per client: inside flood control's 12, so none is refused for it
SECONDS = 2  # 800 a second for 2 s: well past what the README measures one process taking in full
PAGE_MESSAGES = 10
BUSY = re.compile(r"^the room is busy: message (\d+) was not sent, send it again in a moment$")


@pytest.fixture
def server(asgi_server):
    return asgi_server


def test_a_room_past_its_ceiling_refuses_by_name_and_delivers_all_it_accepted(
    machine_to_itself, server, migrated_step, chromium_browser
):
    directory = migrated_step(STEP)
    mark = server.log_mark()
    room = new_room()
    url = chat_page_url(server, room)
    sender_page, reader_page = open_page(chromium_browser, url), open_page(chromium_browser, url)

    with EventLoopThread() as loop:
        pending = loop.start(
            room_load(
                [server.ws_url],
                room,
                clients=CLIENTS,
                rate=RATE,
                seconds=SECONDS,
                catch_up=True,
                until_answered=True,
                label="busy",
                timeout=120,
            )
        )
        # The page sends while the room is overloaded.
        page_texts = [f"from the page #{number}" for number in range(PAGE_MESSAGES)]
        for text in page_texts:
            send_from(sender_page, text)
        run = pending.result(timeout=240)

    # Every sender heard back about every message: its own copy or a refusal naming it.
    assert not run.unanswered()
    refusals = [(client, r) for client in run.senders for r in client.refusals()]
    assert refusals, "a room sent 800 messages a second refused none"
    for client, refusal in refusals:
        named = BUSY.match(refusal["error"])
        assert named, refusal["error"]  # busy, not flood control
        sent = {s.ref: s for s in client.sent}[refusal["refused"]["ref"]]
        assert int(named.group(1)) == refusal["refused"]["number"] == sent.number
        assert refusal["refused"]["message"] == sent.text  # the text comes back with it
    assert len(run.refused_texts()) == len(refusals)  # one refusal per refused message
    # ...and the server says so in its log, once for many refusals.
    busy_lines = server.log_after(mark).count("busy: refusing new messages")
    assert 1 <= busy_lines < len(refusals), busy_lines

    page_refusals = sender_page.locator("#messages li.error", has_text="the room is busy")

    def page_messages_answered():
        texts = {text for _, text in stored(directory, room)}
        return sum(text in texts for text in page_texts) + page_refusals.count() == PAGE_MESSAGES

    # Each of the page's messages is stored or refused on the page; none disappears.
    wait_until(page_messages_answered, timeout=60, message="the page's messages to be answered")
    rows = stored(directory, room)
    stored_texts = [text for _, text in rows]
    assert len(stored_texts) == len(set(stored_texts))  # nothing stored twice
    run_texts = {text for text in stored_texts if text.startswith("busy ")}
    assert run_texts == run.accepted_texts()  # accepted = stored; nothing refused is stored
    assert run.confirmed_texts() == run.accepted_texts()  # each sender got its own copy back

    for client in run.clients:
        deliveries = client.deliveries()  # id -> frames with that id (a catch-up may repeat)
        assert sorted(deliveries) == [number for number, _ in rows], client.name
        ids_by_text = {}
        for message in client.messages():
            ids_by_text.setdefault(message["message"], set()).add(message["id"])
        assert all(len(ids) == 1 for ids in ids_by_text.values()), client.name
        assert not client.errors(), client.errors()[:3]

    for page in (reader_page, sender_page):
        wait_until_shows(page, rows)  # every stored message, once, in id order
