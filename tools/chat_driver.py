"""The one chat driver: everything the tests, the tools and the benchmark do to a chat room.

- Load clients (asyncio): many ChatClients join one room, send back to back or at a paced
  rate, record every frame they receive with its arrival time, and close (`room_load`, a
  RoomRun). `run_async(coroutine)` runs one from synchronous code, on a loop in a thread of
  its own, so it works beside Playwright's sync API, which keeps a loop in the main thread.
- A raw socket (sync): `join(server, room)`, `say`, `heard`, `heard_message`, `heard_error`,
  `closed_with`, `wait_until_joined`, `nothing_before(ws, text)`.
- A page in Chromium: `open_page`, `wait_for_status`, `shown`, `wait_until_shows`, `send_from`,
  `error_lines`, `wait_in_page`, `count_sockets` and `sockets_opened` (when a page opened each
  WebSocket), `CuttingProxy` (a page's sockets pass through the test, which cuts a connection
  between a message and its answer).
- What a step's database holds: `stored(directory, room)`; a step's own constants:
  `step_constants(directory, "chat/flood_control.py")`; what its server logged about failing
  sockets: `socket_failures(log)`.

`server` is anything with `http_url` and `ws_url` (a ServerProcess, step 07's DeployStack).
Everything here is bounded: the number of clients and messages is given, every wait has a
timeout, and a run ends when every client has what was accepted or when the room goes quiet
(with until_answered=True, quiet counts only once every sender has heard back on what it sent).

    run = run_async(room_load([server.ws_url], "lobby", clients=20, messages_each=20))
    run.accepted_texts(), run.refused_texts(), run.client_counts(), run.times_to_reach_all()

Frames are the chat's JSON: step 05 sends {"message": ...}; step 06 adds "id" and
"previous_id" (and "ref" on the sender's own copy), and answers a refused message with
{"error": ..., "refused": {"message", "ref", "number"}}, and ends a join's history with
{"joined": <room>, "newest_id": <id>}; a frame sent again with a ref the room holds is answered
with the stored message (its id, that ref) and not stored again. A client built with catch_up=True
does what step 06's page does: it joins with ?after=0 and, when a message's previous_id is one
it has not seen, asks {"after": <newest id with no gap before it>} until the gap is filled.
"""

import asyncio
import collections
import contextlib
import json
import re
import runpy
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as connect_sync

from tools.waiting import wait_until

# Open at most this many connections at a time: Twisted (daphne) listens with a backlog of 50.
CONNECT_BATCH = 25
# How long a catch-up request may stay unanswered before the client asks again for the same
# gap: 1 s, then twice as long each time, up to 8 s, as step 06's page does.
CATCH_UP_FIRST_WAIT = 1.0
CATCH_UP_LONGEST_WAIT = 8.0
TIMEOUT = 30  # seconds any single wait of a raw socket or a page may take
PAGE_TIMEOUT = 60  # seconds for a page to show everything after a load (2 shared cores)
# Seconds between one client's resends of refused messages: below flood control's 12 a second.
RESEND_INTERVAL = 0.1
BUSY_REFUSAL = "the room is busy: "  # step 06's refusal when the process is behind
CONNECTED = re.compile(r"^connected")  # the page's status, not "disconnected ..."


def new_room():
    """A room name no other test uses."""
    return "room-" + uuid.uuid4().hex[:8]


def chat_path(room):
    return f"/ws/chat/{room}/"


def chat_page_url(server, room):
    return f"{server.http_url}/chat/{room}/"


def origin_of(ws_url):
    """The Origin a page served by the same server would send (the chat refuses others)."""
    parts = urlsplit(ws_url)
    return f"http://{parts.netloc}"


@dataclass
class Received:
    at: float  # time.perf_counter() when the frame arrived
    frame: object  # the decoded JSON, or the raw str/bytes when it is not JSON


@dataclass
class Sent:
    number: int  # 1-based count of the frames this client has sent, as step 06 counts them
    text: str
    ref: str
    at: float  # time.perf_counter() just before the frame went out


class ChatClient:
    """One WebSocket in a chat room; a reader task records every frame it receives."""

    def __init__(self, url, name, origin=None, headers=None, catch_up=False, open_timeout=30):
        self.url = url
        self.name = name
        # Refs are a message's id in its room: unique to this client, whatever its name.
        self.ref_prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self.origin = origin or origin_of(url)
        self.headers = headers
        self.catch_up = catch_up
        self.open_timeout = open_timeout
        self.received = []
        self.sent = []
        self.frames_sent = 0
        self.websocket = None
        self.reader = None
        self.close_code = None
        self.close_codes = []  # of every socket it had, as each closed (see reconnect)
        self.new_frame = asyncio.Event()
        # What a catch-up client holds: message ids, and the newest with no gap before it.
        self.following = {}  # previous_id -> id, for every message held
        self.contiguous = 0
        self.newest = 0
        self.requested = None  # (after, when, wait before asking again) of the last request

    async def open(self):
        url = self.url + ("?after=0" if self.catch_up else "")
        self.websocket = await connect(
            url,
            origin=self.origin,
            additional_headers=self.headers,
            open_timeout=self.open_timeout,
            compression=None,  # the servers differ in offering it: measure them all without
            max_queue=None,  # the reader keeps up; a bound here would only slow the server
        )
        self.reader = asyncio.create_task(self._read())
        return self

    async def reconnect(self):
        """Opens a new socket after the last one closed, as step 06's page does: with
        `?after=<newest id with no gap before it>` for a catch-up client, keeping what it
        holds. Every socket's close code is kept in `close_codes`."""
        if self.reader is not None:
            await self.reader
        url = self.url + (f"?after={self.contiguous}" if self.catch_up else "")
        self.websocket = await connect(
            url,
            origin=self.origin,
            additional_headers=self.headers,
            open_timeout=self.open_timeout,
            compression=None,
            max_queue=None,
        )
        self.close_code = None
        self.requested = None
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self):
        try:
            async for raw in self.websocket:
                try:
                    frame = json.loads(raw)
                except (ValueError, TypeError):
                    frame = raw
                self.received.append(Received(time.perf_counter(), frame))
                self.new_frame.set()
                if self.catch_up and isinstance(frame, dict) and "id" in frame:
                    await self._follow(frame)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.websocket.close_code
            self.close_codes.append(self.close_code)
            self.new_frame.set()

    async def _follow(self, frame):
        """Step 06's page logic: hold ids, advance past what has no gap, ask for the rest."""
        self.following.setdefault(frame.get("previous_id"), frame["id"])
        self.newest = max(self.newest, frame["id"])
        while True:
            start = None if self.contiguous == 0 else self.contiguous
            if self.following.get(start, 0) > self.contiguous:
                self.contiguous = self.following[start]
            else:
                break
        if self.newest > self.contiguous:
            now = time.perf_counter()
            if self.requested is None or self.requested[0] != self.contiguous:
                wait = CATCH_UP_FIRST_WAIT
            elif now - self.requested[1] >= self.requested[2]:
                wait = min(self.requested[2] * 2, CATCH_UP_LONGEST_WAIT)
            else:
                return  # the same gap, asked for too recently
            self.requested = (self.contiguous, now, wait)
            await self.send_frame(json.dumps({"after": self.contiguous}))

    async def send_frame(self, data):
        """Sends any frame (str or bytes) as it is; it counts as one frame sent."""
        self.frames_sent += 1
        await self.websocket.send(data)

    def new_ref(self, label, number):
        return f"{self.ref_prefix}-{label}#{number}"

    async def say(self, text, ref=None):
        """Sends a chat message {"message": text} (with "ref" when given) and records it."""
        frame = {"message": text} if ref is None else {"message": text, "ref": ref}
        self.sent.append(Sent(self.frames_sent + 1, text, ref, time.perf_counter()))
        # As a browser's JSON.stringify sends it: characters as they are, not \uXXXX escapes.
        await self.send_frame(json.dumps(frame, ensure_ascii=False))

    async def close(self):
        if self.websocket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(), 10)
        if self.reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.reader), 10)
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader

    async def wait_for(self, predicate, timeout):
        """Waits until predicate(self) is true; raises TimeoutError after `timeout` seconds."""
        deadline = time.perf_counter() + timeout
        while not predicate(self):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: waited {timeout}s; got {self.frames()[-5:]}")
            self.new_frame.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.new_frame.wait(), min(remaining, 0.5))

    # --- what the client received ---------------------------------------------------------

    def frames(self):
        return [r.frame for r in self.received]

    def messages(self):
        """The chat messages received, in arrival order (duplicates kept)."""
        frames = self.frames()
        return [f for f in frames if isinstance(f, dict) and "message" in f and "error" not in f]

    def texts(self):
        return [m["message"] for m in self.messages()]

    def refusals(self):
        return [f for f in self.frames() if isinstance(f, dict) and "refused" in f]

    def errors(self):
        """Error frames that are not refusals of a message."""
        frames = self.frames()
        return [f for f in frames if isinstance(f, dict) and "error" in f and "refused" not in f]

    def deliveries(self):
        """id -> how many times a message with that id arrived (a page shows each id once)."""
        counts = {}
        for message in self.messages():
            if "id" in message:
                counts[message["id"]] = counts.get(message["id"], 0) + 1
        return counts

    def held_ids(self):
        """The ids held once each, in id order: what the page would show."""
        return sorted(self.deliveries())

    def duplicate_deliveries(self):
        """id -> times it arrived, for the ids that arrived more than once."""
        return {number: count for number, count in self.deliveries().items() if count > 1}

    def first_arrivals(self):
        """text -> when it first arrived."""
        first = {}
        for received in self.received:
            frame = received.frame
            if isinstance(frame, dict) and "message" in frame and "error" not in frame:
                first.setdefault(frame["message"], received.at)
        return first


async def open_clients(urls, room, count, first_number=0, **options):
    """`count` clients in `room`, spread round-robin over `urls` (ws://host:port of each
    server), opened a batch at a time; all of them joined when this returns."""
    clients = [
        ChatClient(urls[i % len(urls)] + chat_path(room), f"client-{first_number + i}", **options)
        for i in range(count)
    ]
    opened = []
    try:
        for first in range(0, count, CONNECT_BATCH):
            batch = clients[first : first + CONNECT_BATCH]
            await asyncio.gather(*(client.open() for client in batch))
            opened += batch
    except BaseException:
        await close_all(opened)
        raise
    return clients


async def close_all(clients):
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def send_burst(client, count, label):
    """`count` messages back to back, as fast as the socket takes them."""
    for number in range(count):
        await client.say(f"{label} {client.name} #{number}", ref=client.new_ref(label, number))


async def send_paced(client, rate, seconds, label, offset=0.0):
    """Messages at `rate` per second for `seconds`, on a schedule (a late one does not push
    the rest back); `offset` spreads the clients' first messages over the first interval."""
    start = time.perf_counter() + offset
    count = max(1, round(rate * seconds))
    for number in range(count):
        delay = start + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.say(f"{label} {client.name} #{number}", ref=client.new_ref(label, number))


async def send_until_answered(client, count, label, timeout=TIMEOUT):
    """`count` messages back to back on `client`'s socket, then waits until each one is
    answered: by its own copy coming back (its ref) or by a refusal naming its ref."""
    first = len(client.sent)
    for number in range(count):
        await client.say(f"{label} {client.name} #{number}", ref=client.new_ref(label, number))
    refs = {sent.ref for sent in client.sent[first:]}

    def answered(c):
        heard = {m.get("ref") for m in c.messages()} | {r["refused"]["ref"] for r in c.refusals()}
        return refs <= heard

    await client.wait_for(answered, timeout)
    return client


async def say_all_until_taken(client, texts, label, timeout=PAGE_TIMEOUT):
    """Says each of `texts` with a ref of its own, then waits until the room has taken every
    one (its own copy came back), saying again, with the same ref, each one the room refuses
    (busy, or past flood control): one every RESEND_INTERVAL seconds, below flood control's
    rate, as a page's "send again" would. A ref the room has stored already is answered with
    the stored copy, so nothing is stored twice."""
    refs = {client.new_ref(label, number): text for number, text in enumerate(texts)}
    for ref, text in refs.items():
        await client.say(text, ref=ref)
    deadline = time.perf_counter() + timeout
    refusals_read, to_resend = 0, []
    while True:
        seen = len(client.received)
        taken = {m.get("ref") for m in client.messages()}
        if refs.keys() <= taken:
            return
        refusals = client.refusals()
        for refusal in refusals[refusals_read:]:
            ref = refusal["refused"].get("ref")
            if ref in refs and ref not in taken and ref not in to_resend:
                to_resend.append(ref)
        refusals_read = len(refusals)
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{client.name}: {len(refs.keys() - taken)} never taken")
        if to_resend:
            await asyncio.sleep(RESEND_INTERVAL)
            ref = to_resend.pop(0)
            if ref not in {m.get("ref") for m in client.messages()}:
                await client.say(refs[ref], ref=ref)
        else:  # until a frame comes, or half a second
            with contextlib.suppress(TimeoutError):
                await client.wait_for(lambda c, seen=seen: len(c.received) > seen, 0.5)


@dataclass
class RoomRun:
    """What a load run sent and what every client received."""

    clients: list
    senders: list
    started: float = 0.0
    sending_done: float = 0.0
    finished: float = 0.0
    extra_readers: list = field(default_factory=list)

    def sent(self):
        return [s for client in self.senders for s in client.sent]

    def sent_texts(self):
        return {s.text for s in self.sent()}

    def refused_texts(self):
        return {r["refused"]["message"] for client in self.senders for r in client.refusals()}

    def accepted_texts(self):
        """What the server took: everything sent that was not refused (step 05 refuses nothing)."""
        return self.sent_texts() - self.refused_texts()

    def duplicate_deliveries(self):
        """client name -> {id: times it arrived} for every client that got an id twice or more
        (a page shows each id once; a layer and a catch-up answer can both bring one)."""
        found = {c.name: c.duplicate_deliveries() for c in self.clients}
        return {name: duplicates for name, duplicates in found.items() if duplicates}

    def confirmed_texts(self):
        """What the senders heard back as a message, counted from what came back (not derived
        from what was refused): a sender's own copy, or the message arriving in a catch-up."""
        confirmed = set()
        for client in self.senders:
            confirmed |= {s.text for s in client.sent} & set(client.texts())
        return confirmed

    def client_counts(self):
        """How many of the accepted messages each client received (each counted once)."""
        accepted = self.accepted_texts()
        return [len(accepted & set(client.texts())) for client in self.clients]

    def delivered_fraction(self):
        accepted = self.accepted_texts()
        if not accepted or not self.clients:
            return 0.0
        return sum(self.client_counts()) / (len(accepted) * len(self.clients))

    def times_to_reach_all(self):
        """For every accepted message that reached every client: seconds from its sending to
        its arrival at the last client. Messages some client never got are not in it."""
        sent_at = {s.text: s.at for s in self.sent()}
        arrivals = [client.first_arrivals() for client in self.clients]
        times = []
        for text in self.accepted_texts():
            if all(text in first for first in arrivals):
                times.append(max(first[text] for first in arrivals) - sent_at[text])
        return sorted(times)

    def everyone_has_everything(self):
        accepted = self.accepted_texts()
        return all(accepted <= set(client.texts()) for client in self.clients)

    def unanswered(self):
        """What senders sent and have heard nothing back about: neither the message itself
        (their own copy, or a catch-up answer) nor a refusal. Until a sender hears back, the
        message may still be waiting in the server; a sender that left then would take with
        it whatever the server had not read yet, so nobody could say it was lost."""
        missing = set()
        for client in self.senders:
            heard = set(client.texts()) | {r["refused"]["message"] for r in client.refusals()}
            missing |= {s.text for s in client.sent} - heard
        return missing


async def wait_for_room(run, quiet, timeout, until_answered=False):
    """Waits until every client has every accepted message, or no client got a frame for
    `quiet` seconds, or `timeout` seconds passed: whichever comes first. With
    `until_answered`, a quiet room does not end the wait while a sender has not heard back
    about a message it sent (see RoomRun.unanswered): a loaded server can go quiet for a
    while and still answer."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if run.everyone_has_everything():
            return
        last = max((c.received[-1].at for c in run.clients if c.received), default=run.sending_done)
        if time.perf_counter() - max(last, run.sending_done) > quiet:
            if not until_answered or not run.unanswered():
                return
        await asyncio.sleep(0.05)


async def room_load(
    urls,
    room,
    clients,
    messages_each=0,
    rate=None,
    seconds=None,
    senders=None,
    settle=0.3,
    quiet=1.5,
    timeout=60,
    label="load",
    catch_up=False,
    until_answered=False,
    clients_open=None,
):
    """Opens `clients` clients in `room` (spread over `urls`), lets `senders` of them (all by
    default) send: `messages_each` back to back, or at `rate` per second each for `seconds`;
    then waits for the room (see wait_for_room, which `until_answered` is passed to) and closes
    everything. `clients_open` is an optional coroutine function called with the run once
    everyone has joined (a test starts its readers' checks there). Returns a RoomRun."""
    opened = await open_clients(urls, room, clients, catch_up=catch_up)
    run = RoomRun(opened, opened[: senders if senders is not None else clients])
    try:
        await asyncio.sleep(settle)  # let every join reach the group before the first message
        if clients_open is not None:
            await clients_open(run)
        run.started = time.perf_counter()
        if rate is None:
            sending = [send_burst(c, messages_each, label) for c in run.senders]
        else:
            count = len(run.senders)
            sending = [
                send_paced(c, rate, seconds, label, offset=i / (rate * count))
                for i, c in enumerate(run.senders)
            ]
        await asyncio.wait_for(asyncio.gather(*sending), timeout)
        run.sending_done = time.perf_counter()
        await wait_for_room(run, quiet, timeout, until_answered)
        run.finished = time.perf_counter()
    finally:
        await close_all(opened)
    return run


class EventLoopThread:
    """An asyncio event loop in a thread of its own, for tests that drive load clients while
    Playwright's sync API (which keeps an event loop in the main thread) reads real pages.

        with EventLoopThread() as loop:
            clients = loop.run(open_clients(...))
            pending = loop.start(room_load(...))   # runs while the test reads pages
            run = pending.result(timeout=60)
    """

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def start(self, coroutine):
        """Starts `coroutine` on the loop; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine, timeout=120):
        """Runs `coroutine` on the loop and returns its result (or raises its error)."""
        return self.start(coroutine).result(timeout)

    def __exit__(self, *exc_info):
        async def cancel_the_rest():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_the_rest(), timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)
        self.loop.close()


def run_async(coroutine, timeout=120):
    """Runs `coroutine` to its end on a fresh event loop in a thread of its own and returns
    its result; raises TimeoutError after `timeout` seconds. Safe beside Playwright's sync API,
    which keeps an event loop running in the main thread (asyncio.run would refuse there)."""
    with EventLoopThread() as loop:
        return loop.run(asyncio.wait_for(coroutine, timeout), timeout=timeout + 15)


# --- a raw socket (sync) ----------------------------------------------------------------------


def join(
    server, room, after=None, headers=None, origin=None, url=None, open_timeout=TIMEOUT, **options
):
    """A WebSocket to the room, opened as a page of `server` would open it (its Origin);
    `?after=<id>` when `after` is given. `url` replaces the server's ws:// base."""
    query = "" if after is None else f"?after={after}"
    return connect_sync(
        (url or server.ws_url) + chat_path(room) + query,
        origin=origin or server.http_url,
        additional_headers=headers,
        open_timeout=open_timeout,
        **options,
    )


def say(ws, text, ref=None):
    ws.send(json.dumps({"message": text} if ref is None else {"message": text, "ref": ref}))


def heard(ws, timeout=TIMEOUT):
    """The next frame, decoded."""
    return json.loads(ws.recv(timeout=timeout))


def heard_message(ws, text):
    """Reads frames until the message `text` arrives; returns that frame. If this socket's
    `text` is refused because the room is busy (a loaded machine), it is sent again, as the
    refusal asks."""
    return heard_all_taken(ws, [text])[0]


def heard_all_taken(ws, texts):
    """Reads until the room has taken every one of `texts` (said on this socket), saying again
    any the room refused as busy; returns their frames in arrival order. A resent message
    arrives after the ones sent behind it: the order is the room's, not the order of `texts`."""
    waiting, arrived = set(texts), []
    while waiting:
        frame = heard(ws)
        refused = (frame.get("refused") or {}).get("message")
        if refused in waiting and busy_refusal_of(frame, refused):
            say_again_in_a_moment(ws, frame)
        elif frame.get("message") in waiting and "error" not in frame:
            waiting.discard(frame["message"])
            arrived.append(frame)
    return arrived


def busy_refusal_of(frame, text):
    """Whether `frame` refuses the message `text` because the room is busy."""
    refused = frame.get("refused") or {}
    return refused.get("message") == text and frame["error"].startswith(BUSY_REFUSAL)


def say_again_in_a_moment(ws, refusal):
    """Says a message the room refused as busy again, with the ref it had, as a page does."""
    time.sleep(0.5)
    say(ws, refusal["refused"]["message"], ref=refusal["refused"].get("ref"))


def said_once_taken(ws, text):
    """Says `text` until the room takes it (see heard_message); returns the stored frame."""
    say(ws, text)
    return heard_message(ws, text)


def said_all_taken(ws, texts):
    """Says every one of `texts`, then reads until the room has taken them all (see
    heard_all_taken); returns their frames in arrival order."""
    for text in texts:
        say(ws, text)
    return heard_all_taken(ws, texts)


def heard_error(ws):
    """Reads frames (messages still on their way, say) until an error arrives; returns it."""
    while True:
        frame = heard(ws)
        if "error" in frame:
            return frame


def frames_before(ws, text):
    """Every frame that arrives before the message `text` (which the test sends after the
    thing that must not reach this socket: its arrival proves the other had its chance)."""
    before = []
    while True:
        frame = heard(ws)
        if busy_refusal_of(frame, text):  # not something on its way: the room was busy
            say_again_in_a_moment(ws, frame)
        elif frame.get("message") == text and "error" not in frame:
            return before
        else:
            before.append(frame)


def closed_with(ws):
    """The close code the server sent, once the socket has ended (frames before it are read
    and printed); raises TimeoutError if the socket stays open."""
    try:
        while True:
            print("before the close:", ws.recv(timeout=TIMEOUT))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def wait_until_joined(ws):
    """Returns once the socket's consumer has finished connecting, its history sent: a step 06
    consumer handles frames only after that, so its refusal of an empty frame marks the moment."""
    ws.send("{}")
    while "error" not in heard(ws):
        pass


# --- a page in Chromium -----------------------------------------------------------------------


def open_page(browser, url, cookies=None, **context_options):
    """A page of its own (a fresh browser context: its own cookies) at `url`, once it says
    it is connected. `cookies` are added for the url's site first."""
    context = browser.new_context(**context_options)
    if cookies:
        context.add_cookies([dict(cookie, url=url) for cookie in cookies])
    page = context.new_page()
    page.goto(url)
    wait_for_status(page, CONNECTED)
    return page


def wait_for_status(page, pattern, timeout=TIMEOUT):
    page.locator("#status", has_text=pattern).wait_for(timeout=timeout * 1000)


def shown(page):
    """[(id, text of the item)] of the messages the page shows, top to bottom."""
    return [
        (int(data_id), text)
        for data_id, text in page.eval_on_selector_all(
            "#messages li[data-id]", "items => items.map(li => [li.dataset.id, li.textContent])"
        )
    ]


def wait_until_shows(page, rows, timeout=PAGE_TIMEOUT):
    """Waits until the page shows exactly the stored rows [(id, text)]: their ids, in order,
    each once, each item holding its message's text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    expected = [number for number, _ in rows]
    try:
        # Checked in the page, every 100 ms: reading the whole list out of the page 20 times
        # a second, as a poll from here would, cost Chromium more CPU than the chat itself.
        page.wait_for_function(
            """expected => {
              const ids = Array.from(document.querySelectorAll("#messages li[data-id]"),
                                     (item) => Number(item.dataset.id));
              return ids.length === expected.length && ids.every((id, i) => id === expected[i]);
            }""",
            arg=expected,
            polling=100,
            timeout=timeout * 1000,
        )
    except PlaywrightTimeoutError:
        ids = [number for number, _ in shown(page)]
        missing = sorted(set(expected) - set(ids))
        extra = sorted(set(ids) - set(expected))
        duplicates = len(ids) - len(set(ids))
        raise AssertionError(
            f"page shows {len(ids)} items; {len(missing)} stored ones missing {missing[:10]}, "
            f"{len(extra)} not stored {extra[:10]}, {duplicates} duplicates, "
            f"in order: {ids == sorted(ids)}; status: {page.inner_text('#status')!r}"
        ) from None
    for (_, text), (_, item) in zip(rows, shown(page), strict=True):
        assert text in item, (text, item)
    return True


def send_from(page, text):
    """Types `text` into the page's message box and presses Enter. Not a click on Send: while
    messages arrive, each one pushes the button down the page, and Playwright checks what is
    under the pointer only when the mouse button goes down (its injected script: "check that
    we hit the right element at the first event"). A message arriving before it comes up
    moves the button away, no click happens, and the line is never sent: a test then waits
    for it in vain. Enter goes to the box wherever the page has moved it.
    `click_send` tests the button itself."""
    page.fill("#message", text)
    page.press("#message", "Enter")


def click_send(page, text):
    """Types `text` and clicks Send, on a page nothing else is writing to (see send_from).
    The page empties its box once it has the line: a click that missed leaves it full."""
    page.fill("#message", text)
    page.click("#send")
    assert page.input_value("#message") == "", f"the click on Send did not send {text!r}"


def typed_until_taken(page, text, timeout=PAGE_TIMEOUT):
    """Types `text` on the page until the room takes it (the page shows it): a busy refusal
    (a loaded machine) is sent again with its "send again" button, as the refusal asks."""
    send_from(page, text)
    wait_until_taken(page, text, timeout)


def wait_until_taken(page, text, timeout=PAGE_TIMEOUT):
    """Waits until the page shows `text`, which it sent or keeps to send; a busy refusal of it
    is sent again with its "send again" button."""
    busy = f'error: not sent: "{text}": {BUSY_REFUSAL}'

    def taken():
        again = page.locator("#outbox li.refused", has_text=text).locator("button")
        if again.count() and any(line.startswith(busy) for line in error_lines(page)):
            page.wait_for_timeout(500)
            again.first.click()
        return any(item.endswith(f": {text}") for _, item in shown(page))

    def what_the_page_shows():
        outbox = page.locator("#outbox li").all_text_contents()
        return f"{text!r} shown (page's errors: {error_lines(page)}; its outbox: {outbox})"

    wait_in_page(page, taken, timeout=timeout, message=what_the_page_shows)


def wait_in_page(page, predicate, timeout=TIMEOUT, message=None):
    """wait_until for what Playwright's event handlers (route_web_socket, page.on) record: its
    sync API runs them only while the test is inside a Playwright call, so every check first
    lets the page run for 50 ms."""

    def check():
        page.wait_for_timeout(50)
        return predicate()

    return wait_until(check, timeout=timeout, interval=0, message=message)


def error_lines(page):
    return page.locator("#messages li.error").all_text_contents()


def count_sockets(page):
    """From now on the page notes when it opens each WebSocket (read them with
    `sockets_opened`): noted in the page itself, since Playwright's sync API would deliver its
    own "websocket" events late, in a batch, whenever the test next calls it."""
    page.evaluate(
        """() => {
          const Original = window.WebSocket;
          window.socketsOpened = [];
          window.WebSocket = function (...args) {
            window.socketsOpened.push(performance.now());
            return new Original(...args);
          };
          window.WebSocket.prototype = Original.prototype;
        }"""
    )


def sockets_opened(page):
    """Seconds (the page's clock) at which the page opened each socket since count_sockets."""
    return [ms / 1000 for ms in page.evaluate("window.socketsOpened")]


class CuttingProxy:
    """The page's chat sockets pass through the test (Playwright's route_web_socket, connected
    to the real server). When the server answers a message whose number (1, 2, ... in the order
    the page's messages were stored: their own copies coming back, resends not counted, a
    refusal stores nothing) is in `cut_after`, the proxy drops that answer and closes the
    connection, as a network failure between the message and its answer would. `sent` holds
    every chat message frame the page sent, resends included."""

    def __init__(self, page, cut_after):
        self.page = page
        self.cut_after = set(cut_after)
        self.sent = []  # {"message", "ref"} frames, in the order the page sent them
        self.refs = []  # each ref once, in the order the page first sent it
        self.answered = []  # each ref once, in the order its first own copy came back
        self.cuts = []  # the refs whose answer was dropped
        page.route_web_socket(re.compile(r"/ws/chat/"), self._connect)

    def _connect(self, page_side):
        server_side = page_side.connect_to_server()

        def from_page(raw):
            frame = json.loads(raw)
            if "message" in frame:
                self.sent.append(frame)
                if frame.get("ref") not in self.refs:
                    self.refs.append(frame.get("ref"))
            server_side.send(raw)

        def from_server(raw):
            frame = json.loads(raw)
            ref = frame.get("ref") if isinstance(frame, dict) else None
            if ref in self.refs and ref not in self.answered:
                self.answered.append(ref)
                if len(self.answered) in self.cut_after:
                    self.cuts.append(ref)
                    page_side.close(code=1011)  # closes the server's side too
                    return
            page_side.send(raw)

        page_side.on_message(from_page)
        server_side.on_message(from_server)

    def resent(self):
        """ref -> times the page sent it, for the refs it sent more than once."""
        counts = collections.Counter(frame["ref"] for frame in self.sent)
        return {ref: count for ref, count in counts.items() if count > 1}


# --- what the database holds ------------------------------------------------------------------


def stored(directory, room, column="text"):
    """[(id, text)] of the room's stored messages, in id order, read from the SQLite file of a
    step copy in `directory` (read-only: the servers keep writing); another `column` (such as
    "ref") instead of the text when asked."""
    assert column in ("text", "ref"), column  # a column name cannot be a query parameter
    uri = f"file:{directory / 'db.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=20) as database:
        return database.execute(
            f"SELECT id, {column} FROM chat_message WHERE room = ? ORDER BY id", (room,)
        ).fetchall()


def stored_texts(directory, room):
    return [text for _, text in stored(directory, room)]


def stored_refs(directory, room):
    """[(id, ref)] of the room's stored messages ('' for a message sent without one)."""
    return stored(directory, room, column="ref")


def step_constants(directory, relative_path):
    """The module-level names of a step's file that imports nothing of Django (such as
    chat/flood_control.py), run on its own: the tests compare the step's real values."""
    return runpy.run_path(str(directory / relative_path))


# What step 06's consumer logs for a socket it stops (one line each; the first one of each
# cause carries its traceback): "chat socket in room <room> stopped: <cause>[ (traceback...)]".
SOCKET_FAILURE = re.compile(r"chat socket in room (\S+) stopped: (.*?)( \(traceback logged .*)?$")
# A traceback of chained exceptions prints one "Traceback (most recent call last)" per link.
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


def socket_failures(log):
    """[(room, cause, whether the line came with its traceback)] of every failing-socket line
    in a server's log."""
    found = []
    for line in log.splitlines():
        match = SOCKET_FAILURE.search(line)
        if match:
            found.append((match.group(1), match.group(2), match.group(3) is None))
    return found


def tracebacks_logged(log):
    """How many tracebacks a log holds, a chain of exceptions counted once."""
    links = log.count("Traceback (most recent call last)")
    return links - sum(log.count(phrase) for phrase in CHAINED)
