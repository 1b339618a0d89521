"""Step 07: step 06's chat deployed for real, tested as it runs: a real nginx in front of
real Uvicorn workers, a real redis-server and real PostgreSQL (SQLite on the django30 track),
all on free loopback ports, started the one way `make run STEP=07` starts them
(tools/deploy_stack.py). The tests that leave the site as they found it share one site per
module; a test that changes the configuration (a line taken out of nginx.conf, four workers, no
Redis) starts its own. Clients and Chromium pages only ever talk to nginx; which worker took a
WebSocket is read from the workers' own access logs.
"""

import asyncio
import contextlib
import http.client
import json
import os
import random
import re
import select
import signal
import struct
import subprocess
import threading
import time
from types import SimpleNamespace

import psutil
import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.raw_websocket import TEXT, raw_handshake
from tests.system_tools import require_deploy_tools
from tools.chat_driver import (
    CONNECTED,
    PAGE_TIMEOUT,
    TIMEOUT,
    ChatClient,
    EventLoopThread,
    chat_path,
    click_send,
    close_all,
    frames_before,
    heard,
    heard_message,
    join,
    new_room,
    run_async,
    said_all_taken,
    said_once_taken,
    say,
    say_all_until_taken,
    send_until_answered,
    shown,
    typed_until_taken,
    wait_for_status,
    wait_until_joined,
    wait_until_shows,
    wait_until_taken,
)
from tools.deploy_stack import (
    DATABASES,
    README_COMMANDS,
    STEP,
    DeployStack,
    copy_of_the_site,
    free_site_port,
    tls_port_of,
)
from tools.readme_console import console_commands
from tools.readme_outputs import SHOWN_OUTPUTS, difference, is_fresh, shown_block
from tools.repository import REPO_ROOT, step_directory
from tools.server_process import HOST, port_is_taken
from tools.step_commands import manage
from tools.waiting import wait_until

USERNAME, PASSWORD = "alice", "a long password for the test"
UPGRADE_LINES = (
    "            proxy_set_header Upgrade $http_upgrade;\n",
    "            proxy_set_header Connection $connection_upgrade;\n",
)
READ_TIMEOUT_LINE = "            proxy_read_timeout 1h;\n"
FORWARDED_PROTO_LINE = "            proxy_set_header X-Forwarded-Proto $scheme;\n"
README = step_directory(STEP) / "README.md"


@pytest.fixture(scope="module")
def system_programs():
    require_deploy_tools()


@pytest.fixture(scope="module")
def site(system_programs):
    """The site as deployed (PostgreSQL, Redis, two workers, nginx), one per module, for the
    tests that leave it as they found it."""
    with copy_of_the_site() as directory, DeployStack(directory=directory) as stack:
        yield stack


@pytest.fixture
def deploy(system_programs):
    """deploy(**options) starts a site of the test's own (options as DeployStack's: workers,
    channel_layer, edit_config) on a fresh copy of the step; it is stopped after the test."""
    with contextlib.ExitStack() as started:

        def start(**options):
            directory = started.enter_context(copy_of_the_site())
            return started.enter_context(DeployStack(directory=directory, **options))

        yield start


def stored(site, room):
    """[(id, text)] of the room's messages in the site's database, in id order."""
    return site.stored(room)


def without(lines, text):
    """`text` with each of `lines` taken out; each must be there, so a renamed line fails here."""
    for line in lines:
        assert text.count(line) == 1, f"nginx.conf no longer has: {line.strip()}"
        text = text.replace(line, "")
    return text


# --- which worker took a connection -------------------------------------------------------


def accepted_websockets(log, path):
    """How many WebSockets to `path` a worker's access log shows accepted: Uvicorn writes
    `"WebSocket /ws/chat/lobby/?after=0" [accepted]`."""
    return sum(
        1 for line in log.splitlines() if f'"WebSocket {path}' in line and "[accepted]" in line
    )


def worker_that_accepted(site, marks, path):
    """The worker whose log shows, after its mark, a WebSocket to `path` accepted."""
    return wait_until(
        lambda: next(
            (
                w
                for w, m in zip(site.workers, marks, strict=True)
                if accepted_websockets(w.log_after(m), path)
            ),
            None,
        ),
        timeout=TIMEOUT,
        message=f"a worker to log a WebSocket to {path}",
    )


def log_marks(site):
    return [worker.log_mark() for worker in site.workers]


def join_on_each_worker(site, room, tries=8):
    """Opens sockets through nginx one at a time until one is on each worker; returns
    {worker: socket} and closes the extra ones."""
    found = {}
    for _ in range(tries):
        marks = log_marks(site)
        ws = join(site, room)
        worker = worker_that_accepted(site, marks, chat_path(room))
        if worker in found:
            ws.close()
        else:
            found[worker] = ws
        if len(found) == len(site.workers):
            return found
    for ws in found.values():
        ws.close()
    raise AssertionError(f"nginx sent {tries} sockets to {len(found)} worker(s) only")


# --- the tests --------------------------------------------------------------------------------


def test_pages_come_from_the_workers_and_static_files_from_nginx(site):
    marks = log_marks(site)
    login = requests.get(f"{site.http_url}/admin/login/", timeout=TIMEOUT)
    assert login.status_code == 200
    assert login.headers["X-Frame-Options"] == "DENY"  # Django's own header: a worker answered
    assert '/static/admin/css/base.css"' in login.text
    css = requests.get(f"{site.http_url}/static/admin/css/base.css", timeout=TIMEOUT)
    assert css.status_code == 200
    assert css.headers["Content-Type"] == "text/css"
    assert css.content == (site.directory / "run/static/admin/css/base.css").read_bytes()
    assert css.headers["Cache-Control"] == "max-age=3600"  # nginx's `expires 1h`
    # None of Django's headers, and no worker saw the request.
    assert "X-Content-Type-Options" not in css.headers
    for worker, mark in zip(site.workers, marks, strict=True):
        assert "/static/" not in worker.log_after(mark)
    # The same file from a worker directly (WhiteNoise, through Django's middleware) would carry
    # Django's header: the checks above can tell the two apart.
    direct = requests.get(f"{site.workers[0].http_url}/static/admin/css/base.css", timeout=10)
    assert direct.headers["X-Content-Type-Options"] == "nosniff"


def test_the_workers_log_the_clients_address_not_nginxs(site):
    room = new_room()
    marks = log_marks(site)
    # Loopback is all of 127.0.0.0/8: this client comes from 127.0.0.2, nginx from 127.0.0.1.
    connection = http.client.HTTPConnection(
        "127.0.0.1", site.port, timeout=TIMEOUT, source_address=("127.0.0.2", 0)
    )
    connection.request("GET", f"/chat/{room}/")
    assert connection.getresponse().status == 200
    connection.close()
    with connect(
        site.ws_url + chat_path(room),
        origin=site.http_url,
        open_timeout=TIMEOUT,
        source_address=("127.0.0.2", 0),
    ) as ws:
        wait_until_joined(ws)

    def logged_lines():
        lines = [
            line
            for worker, mark in zip(site.workers, marks, strict=True)
            for line in worker.log_after(mark).splitlines()
            if f"/chat/{room}/" in line
        ]
        return len(lines) >= 2 and lines

    # The page's GET and its WebSocket, each logged with the client's address.
    for line in wait_until(logged_lines, timeout=TIMEOUT):
        assert line.startswith("INFO:     127.0.0.2:"), line


def test_a_room_spans_the_workers_behind_nginx(site):
    room = new_room()
    clients_count, messages_each = 8, 10

    async def chat():
        clients, workers = [], []
        try:
            for number in range(clients_count):
                marks = log_marks(site)
                client = ChatClient(
                    site.ws_url + chat_path(room),
                    f"client-{number}",
                    origin=site.http_url,
                    catch_up=True,
                )
                clients.append(await client.open())
                workers.append(
                    await asyncio.to_thread(worker_that_accepted, site, marks, chat_path(room))
                )
            for worker in site.workers:
                assert workers.count(worker) >= 2, [w.name for w in workers]
            said = {
                client: [f"{client.name} #{number}" for number in range(messages_each)]
                for client in clients
            }
            # A loaded machine may refuse a message as busy: it is said again, as a page would.
            await asyncio.gather(
                *(say_all_until_taken(client, texts, "spans") for client, texts in said.items())
            )
            sent = {text for texts in said.values() for text in texts}
            for client in clients:
                await client.wait_for(lambda c: sent <= set(c.texts()), PAGE_TIMEOUT)
            return sent
        finally:
            await close_all(clients)

    sent = run_async(chat(), 180)
    assert sorted(text for _, text in stored(site, room)) == sorted(sent)


def test_without_redis_a_room_splits_between_the_workers(deploy, site):
    split = deploy(channel_layer="in-memory")
    room = new_room()
    on = join_on_each_worker(split, room)
    first, second = split.workers
    with contextlib.ExitStack() as open_sockets:  # each closed at the end, whatever happens
        for ws in on.values():
            open_sockets.enter_context(ws)
            wait_until_joined(ws)
        # Once a socket hears its own message, the layer has sent it to the whole group: on a
        # shared layer it would then reach the other socket before anything said after it.
        say(on[first], "only the first worker's sockets hear this")
        heard_message(on[first], "only the first worker's sockets hear this")
        say(on[second], "and this stays on the second")
        assert frames_before(on[second], "and this stays on the second") == []
        say(on[first], "the first again")
        assert frames_before(on[first], "the first again") == []
    # All were stored: only the live delivery split, and a page that joins now sees them all.
    assert [text for _, text in stored(split, room)] == [
        "only the first worker's sockets hear this",
        "and this stays on the second",
        "the first again",
    ]


@pytest.fixture
def behind_nginx(site):
    """behind_nginx(edit_config): the module's site reached through a second nginx, whose
    configuration is the step's as `edit_config` changes it; stopped after the test."""
    with contextlib.ExitStack() as started:
        yield lambda edit_config: started.enter_context(site.another_nginx(edit_config))


@pytest.fixture
def site_without_upgrade_lines(behind_nginx):
    """The site through an nginx.conf without the two lines that pass a handshake on."""
    return behind_nginx(lambda text: without(UPGRADE_LINES, text))


def test_without_the_upgrade_lines_the_handshake_gets_djangos_404(site_without_upgrade_lines, site):
    broken = site_without_upgrade_lines
    room = new_room()
    marks = log_marks(broken)
    with pytest.raises(InvalidStatus) as refused:
        join(broken, room)
    # The request reached Django as a plain GET, and no HTTP URL matches /ws/chat/...
    assert refused.value.response.status_code == 404
    assert b"Not Found" in refused.value.response.body
    logged = "".join(w.log_after(m) for w, m in zip(broken.workers, marks, strict=True))
    assert re.search(rf'"GET /ws/chat/{room}/[^"]*" 404', logged), logged
    # With the lines, as deploy/nginx.conf has them, the same handshake works.
    with join(site, room) as ws:
        say(ws, "upgraded")
        heard_message(ws, "upgraded")


def test_without_the_upgrade_lines_the_browser_reports_what_users_report(
    site_without_upgrade_lines, chromium_browser
):
    broken = site_without_upgrade_lines
    room = new_room()
    page = chromium_browser.new_page()
    # Chromium's words, the ones quoted in the README and in the trackers' issues.
    reported = (
        f"WebSocket connection to '{broken.ws_url}/ws/chat/{room}/' failed: "
        "Error during WebSocket handshake: Unexpected response code: 404"
    )
    with page.expect_console_message(
        lambda message: message.text == reported, timeout=TIMEOUT * 1000
    ) as logged:
        page.goto(f"{broken.http_url}/chat/{room}/")
    assert logged.value.type == "error"
    # The page itself only learns that the socket closed (1006), and keeps retrying.
    wait_for_status(page, re.compile(r"^reconnecting"))


def test_a_quiet_chat_stays_open_longer_than_nginx_would_keep_it(behind_nginx, site):
    # nginx's default is 60 s; 2 s shows the same cut without waiting a minute.
    short = behind_nginx(
        lambda text: without([READ_TIMEOUT_LINE], text).replace(
            "location / {\n", "location / {\n            proxy_read_timeout 2s;\n"
        ),
    )
    room = new_room()
    with join(short, room) as ws:
        assert "joined" in heard(ws)  # step 06's consumer says so once the history is sent
        # Then nothing comes from the worker (its first ping is 20 s away): nginx drops it.
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=15)
    # With deploy/nginx.conf's hour, the same quiet socket is still open, and works.
    with join(site, room) as ws:
        assert "joined" in heard(ws)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=5)
        say(ws, "still here")
        heard_message(ws, "still here")


def test_over_tls_a_page_logs_in_and_chats_through_wss(site, chromium_browser):
    create_user(site)
    room = new_room()
    context = chromium_browser.new_context(ignore_https_errors=True)  # self-signed
    page = context.new_page()
    page.goto(f"{site.https_url}/accounts/login/?next=/chat/{room}/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    # Django 4.0+ accepts this POST only if it knows the request came over https (its Origin
    # check); Django 3.0 checks the Referer of requests it believes secure.
    page.locator("form [type=submit]").click()
    page.wait_for_url(f"{site.https_url}/chat/{room}/", timeout=TIMEOUT * 1000)
    assert page.inner_text("#me") == USERNAME
    wait_for_status(page, CONNECTED)  # the page's socket is wss://, through nginx
    click_send(page, "over TLS")  # the Send button; the rest press Enter
    wait_until_taken(page, "over TLS")  # sent again if a loaded machine is busy
    wait_until_shows(page, stored_eventually(site, room, 1))
    assert USERNAME in shown(page)[0][1]
    context.close()


def create_user(site):
    """The test's user in the site's database, made once per site."""
    users = {name for (name,) in site.query("SELECT username FROM auth_user")}
    if USERNAME not in users:
        manage(
            site.directory,
            f"createsuperuser --noinput --username {USERNAME} --email {USERNAME}@example.com",
            env={**site.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        )


def stored_eventually(site, room, count):
    return wait_until(
        lambda: len(stored(site, room)) == count and stored(site, room),
        timeout=TIMEOUT,
        message=f"{count} message(s) stored in {room}",
    )


def login_over_https(site):
    """Posts the login form over https as a browser does; returns the response to the POST."""
    session = requests.Session()
    # Given per request: a session's `verify` loses to REQUESTS_CA_BUNDLE in the environment.
    trusted = str(site.certificate)
    url = f"{site.https_url}/accounts/login/"
    form = session.get(url, verify=trusted, timeout=TIMEOUT)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return session.post(
        url,
        data={"csrfmiddlewaretoken": token, "username": USERNAME, "password": PASSWORD},
        headers={"Origin": site.https_url, "Referer": url},
        allow_redirects=False,
        verify=trusted,
        timeout=TIMEOUT,
    )


def test_without_x_forwarded_proto_django_takes_https_for_http(behind_nginx, track):
    broken = behind_nginx(lambda text: without([FORWARDED_PROTO_LINE], text))
    create_user(broken)
    answer = login_over_https(broken)
    if track == "django30":
        # Django 3.0 checks the Referer only on requests it believes secure: it notices nothing.
        assert answer.status_code == 302, answer.text[:500]
    else:
        # Django 4.0+ compares the Origin with the scheme it believes: https vs http, refused.
        assert answer.status_code == 403, answer.text[:500]
        assert "CSRF verification failed" in answer.text


def test_a_worker_killed_mid_chat_its_page_reconnects_to_another_and_catches_up(
    site, chromium_browser
):
    room = new_room()
    path = chat_path(room)
    pages = open_a_page_on_each_worker(site, chromium_browser, room)
    victim, survivor = site.workers
    try:
        typed_until_taken(pages[victim], "before the crash")
        for page in pages.values():
            wait_until_shows(page, stored_eventually(site, room, 1))

        accepted_before = accepted_websockets(survivor.log_text(), path)
        os.killpg(victim.pid, signal.SIGKILL)  # no goodbye: the process is gone
        victim.process.wait(timeout=TIMEOUT)
        # While the victim's page is cut off, the room goes on through nginx (on the survivor).
        with join(site, room) as ws:
            said_all_taken(ws, [f"while it reconnects {number}" for number in range(10)])
        # The page came back through nginx, on the only worker left, and sends from there.
        wait_until(
            lambda: accepted_websockets(survivor.log_text(), path) > accepted_before + 1,
            timeout=PAGE_TIMEOUT,
            message="the cut-off page to reconnect to the surviving worker",
        )
        wait_for_status(pages[victim], CONNECTED)
        typed_until_taken(pages[victim], "after the crash")
        rows = stored_eventually(site, room, 12)
        for page in pages.values():
            wait_until_shows(page, rows)
    finally:
        for page in pages.values():
            page.context.close()
        if not victim.is_running():
            victim.start()  # the module's site, whole again for the next test
            wait_until_nginx_sends_to(site, victim)


def open_a_page_on_each_worker(site, browser, room, init_script=None):
    """{worker: page}: one page in the room per worker, opened one after the other (nginx
    gives each new socket to the worker with the fewest open ones)."""
    pages = {}
    for _ in site.workers:
        marks = log_marks(site)
        context = browser.new_context()
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.goto(f"{site.http_url}/chat/{room}/")
        wait_for_status(page, CONNECTED)
        pages[worker_that_accepted(site, marks, chat_path(room))] = page
    assert len(pages) == len(site.workers), "nginx sent two pages' sockets to one worker"
    return pages


def test_nginx_gives_each_new_socket_to_the_worker_with_the_fewest(site):
    """What the README says of `least_conn`: tabs opened one after the other (each a GET,
    then its socket) have their sockets spread evenly, whatever requests came in between."""
    room = new_room()
    taken = []
    with contextlib.ExitStack() as open_sockets:
        for _ in range(6):
            marks = log_marks(site)
            requests.get(f"{site.http_url}/chat/{room}/", timeout=TIMEOUT).raise_for_status()
            ws = open_sockets.enter_context(join(site, room))
            wait_until_joined(ws)
            taken.append(worker_that_accepted(site, marks, chat_path(room)))
            counts = [taken.count(worker) for worker in site.workers]
            assert max(counts) - min(counts) <= 1, [w.name for w in taken]


# --- order with several writers -------------------------------------------------------------

SLOW_INSERTS = """CREATE FUNCTION slow_insert() RETURNS trigger AS $$
BEGIN PERFORM pg_sleep(random() * 0.02); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow_insert BEFORE INSERT ON chat_message
FOR EACH ROW EXECUTE FUNCTION slow_insert()"""


def test_with_four_workers_writing_at_once_every_reader_gets_the_stored_order(deploy):
    """Senders on four workers write to one room at once; every reader (step 06's catch-up
    logic) holds every stored message once, and each frame's previous_id is the id stored
    just before it, the promise the page's gap rule relies on. On PostgreSQL each insert is
    made to take up to 20 ms after its id is drawn (a trigger, as a busy disk would): with
    step 06's history.py, which assumed every lower id already committed, about one frame in
    fifteen then named the wrong predecessor (checked by hand: 14 of 200)."""
    stack = deploy(workers=4)
    if stack.postgres is not None:
        import psycopg  # the current track's driver (the django30 track's site uses SQLite)

        with psycopg.connect(stack.postgres.url, autocommit=True) as database:
            for statement in SLOW_INSERTS.split(";\n"):
                database.execute(statement)
    room = new_room()
    senders_count, messages_each = 8, 25

    async def chat():
        url = stack.ws_url + chat_path(room)
        readers, senders = [], []
        try:
            for number in range(3):
                reader = ChatClient(url, f"reader-{number}", origin=stack.http_url, catch_up=True)
                readers.append(await reader.open())
            for number in range(senders_count):
                sender = ChatClient(url, f"sender-{number}", origin=stack.http_url)
                senders.append(await sender.open())

            # Within flood control's burst of 30; each answered by its copy or a refusal.
            await asyncio.gather(
                *(send_until_answered(s, messages_each, "burst", PAGE_TIMEOUT) for s in senders)
            )
            refusals = [r["error"] for sender in senders for r in sender.refusals()]
            # A loaded machine may make a worker busy: that refusal, by name, is the only one.
            assert all(e.startswith("the room is busy: ") for e in refusals), refusals[:3]
            # Counted from what came back: each sender's own copies (they carry its refs).
            accepted = sum(1 for s in senders for m in s.messages() if m.get("ref"))
            assert accepted + len(refusals) == senders_count * messages_each
            for reader in readers:
                await reader.wait_for(lambda c: len(c.deliveries()) >= accepted, PAGE_TIMEOUT)
            return readers, accepted
        finally:
            await close_all(readers + senders)

    readers, accepted = run_async(chat(), 240)
    rows = stored(stack, room)
    assert len(rows) == accepted >= messages_each  # every accepted message stored, once
    for reader in readers:
        assert_holds_the_stored_order(reader.messages(), rows)


def assert_holds_the_stored_order(frames, rows):
    """Every stored message among `frames`, and every frame's previous_id the id stored just
    before its own (a frame may come twice: the page shows it once)."""
    ids = [number for number, _ in rows]
    before = dict(zip(ids, [None, *ids[:-1]], strict=True))
    assert sorted({frame["id"] for frame in frames}) == ids
    wrong = [f for f in frames if f["previous_id"] != before[f["id"]]]
    assert not wrong, f"{len(wrong)} frames name the wrong previous_id, e.g. {wrong[:3]}"


# --- what one client can cost ---------------------------------------------------------------

MiB = 1 << 20


def site_memory(site):
    """Resident memory of the site's workers and nginx (with their children), in bytes."""
    total = 0
    for server in (*site.workers, site.nginx):
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(server.pid)
            for each in (process, *process.children(recursive=True)):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += each.memory_info().rss
    return total


@contextlib.contextmanager
def peak_memory(site):
    """Samples site_memory every 20 ms while the block runs; yields a list that holds the
    highest sample once the block is done."""
    samples, done = [site_memory(site)], threading.Event()

    def sample():
        while not done.wait(0.02):
            samples.append(site_memory(site))

    sampler = threading.Thread(target=sample)
    sampler.start()
    highest = []
    try:
        yield highest
    finally:
        done.set()
        sampler.join()
        highest.append(max(samples))


def send_a_huge_frame(site, room, size):
    """Announces a text frame of `size` bytes through nginx, gives the site a few seconds to
    answer the header, then sends the payload ("xxx...") a MiB at a time for as long as the
    connection takes it. Returns what came back and how many bytes of the payload went out.
    (A client that keeps sending after a refusal gets its connection reset, and the close
    frame can be lost with it: the pause is what lets it read the code.)"""
    front = SimpleNamespace(host=HOST, port=site.port, http_url=site.http_url)
    sock = raw_handshake(front, chat_path(room))
    mask = os.urandom(4)
    header = bytes([0x80 | TEXT, 0x80 | 127]) + struct.pack("!Q", size) + mask
    chunk = bytes(ord("x") ^ mask[i % 4] for i in range(MiB))  # masked, as a client must
    sent, reply = 0, b""
    with sock:
        try:
            sock.sendall(header)
            answered = select.select([sock], [], [], 5)[0]
            while not answered and sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
                answered = select.select([sock], [], [], 0)[0]
        except OSError:
            pass  # reset: nginx closed while payload was still coming; read what it sent
        try:
            while received := sock.recv(65536):
                reply += received
        except OSError:
            pass  # reset after what nginx sent before it, which `reply` holds
    return reply, sent


def frames_after_the_text_ones(reply):
    """What a server sent after its leading short unmasked text frames (opcode 1, length < 126)."""
    while reply[:1] == b"\x81" and len(reply) >= 2 and reply[1] < 126:
        reply = reply[2 + reply[1] :]
    return reply


def test_a_frame_far_larger_than_a_message_is_refused_before_it_is_read(site):
    room = new_room()
    before = site_memory(site)
    with peak_memory(site) as highest:
        reply, sent = send_a_huge_frame(site, room, 256 * MiB)
    # Uvicorn refuses from the frame's header: a close frame with 1009 ("message too big"),
    # passed on by nginx. (Daphne 3.0.2 answers nothing: it takes all 256 MiB in.)
    reply = frames_after_the_text_ones(reply)  # the consumer's "joined" may come first
    assert reply[:1] == b"\x88", reply[:40]
    assert struct.unpack("!H", reply[2:4])[0] == 1009, reply[:80]
    growth = highest[0] - before
    print(f"256 MiB frame: {sent // MiB} MiB sent, site memory +{growth / MiB:.1f} MiB")
    assert growth < 64 * MiB
    # The site goes on serving everyone else.
    with join(site, room) as ws:
        say(ws, "still serving")
        heard_message(ws, "still serving")


STALLED_READERS = 4
# Nearly the longest message the chat takes (a frame of 2,000 characters at most), in
# characters the chat sends on as 12 bytes each (its json.dumps escapes them as two \\uXXXX):
# a frame of 2,000 characters in, of 23,800 bytes out to every reader.
LONGEST_MESSAGE = "\U0001f600" * 1980
LONGEST_FRAME_OUT = 12 * 1980


def test_clients_that_stop_reading_cost_bounded_memory_and_catch_up_later(site):
    # The flood's own senders read everything too, and on a loaded machine they read slowly:
    # what waits for them is most of the site's growth (18 to 23 MiB with no stalled reader,
    # busy loops taking the cores). So the same flood runs first in a room no one stalls in; the
    # stalled readers' cost is what the second flood needs beyond the first one's peak.
    with peak_memory(site) as without_stalled:
        run_async(flood(site, new_room(), senders=12, messages_each=30), 240)
    room = new_room()
    # The sync client stops reading from its socket once 4 frames wait unread: a tab whose
    # machine went to sleep, or a client that never reads. Such a client never reads as far as
    # the server's answer to its closing handshake either, so it waits 1 s for it, not 10.
    with contextlib.ExitStack() as open_sockets:
        stalled = [
            open_sockets.enter_context(join(site, room, after=0, max_queue=4, close_timeout=1))
            for _ in range(STALLED_READERS)
        ]
        for ws in stalled:
            wait_until_joined(ws)
        with peak_memory(site) as with_stalled:
            run_async(flood(site, room, senders=12, messages_each=30), 240)
        growth = with_stalled[0] - without_stalled[0]
        # What the room took (all of the flood, resent until taken), sent to every stalled
        # reader.
        sent_to_stalled = len(stored(site, room)) * LONGEST_FRAME_OUT * STALLED_READERS
        print(
            f"{STALLED_READERS} stalled readers sent {sent_to_stalled / MiB:.0f} MiB:"
            f" site memory +{growth / MiB:.1f} MiB over the same flood without them"
        )
        # Before the writer split bursts into events of 64K characters, 24 MiB of 33 stayed.
        # The outbox's limits matter little at this size: Linux's socket buffers take several
        # MiB per connection on loopback, and the bound held with those limits raised to 1 GiB.
        # Its limit is tested in-process: tests/inprocess/step06/test_consumers.py.
        assert growth < sent_to_stalled / 2
        # One more message, after the flood: its previous_id shows a reader what it lacks.
        # The room may still be busy with the flood, and say so: then it is sent again.
        with join(site, room) as ws:
            said_once_taken(ws, "after the flood")
        rows = stored(site, room)
        for ws in stalled:
            assert_holds_the_stored_order(catch_up(ws, rows), rows)


async def flood(site, room, senders, messages_each):
    """`senders` clients each send `messages_each` of the longest messages (within flood
    control's burst), and say again what the room refuses, until it has taken them all."""
    url = site.ws_url + chat_path(room)
    clients = [ChatClient(url, f"flood-{n}", origin=site.http_url) for n in range(senders)]
    try:
        for client in clients:
            await client.open()
        texts = [LONGEST_MESSAGE] * messages_each
        await asyncio.gather(*(say_all_until_taken(c, texts, "flood") for c in clients))
    finally:
        await close_all(clients)


def catch_up(ws, rows, timeout=PAGE_TIMEOUT):
    """Reads again, as step 06's page does: holds every message, and when the newest held is
    past the newest with no gap before it, asks {"after": <that one>}; returns the frames
    once every stored row is held."""
    wanted = {number for number, _ in rows}
    frames, following, contiguous, newest, asked = [], {}, 0, 0, None
    deadline = time.monotonic() + timeout
    while not wanted <= {frame["id"] for frame in frames}:
        frame = heard(ws, timeout=max(0.1, deadline - time.monotonic()))
        if "id" not in frame:
            continue
        frames.append(frame)
        following[frame["previous_id"] or 0] = frame["id"]
        newest = max(newest, frame["id"])
        while contiguous in following:
            contiguous = following[contiguous]
        if newest > contiguous and asked != contiguous:
            say_raw(ws, {"after": contiguous})
            asked = contiguous
    return frames


def say_raw(ws, frame):
    ws.send(json.dumps(frame))


# --- restarts -------------------------------------------------------------------------------

# Records the close code of every socket the page opens (the page itself shows it only for
# a moment, in its status line).
RECORD_CLOSE_CODES = """
window.closeCodes = [];
const PageWebSocket = window.WebSocket;
window.WebSocket = class extends PageWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("close", (event) => window.closeCodes.push(event.code));
  }
};
"""
COME_BACK = {1001, 1012}  # "going away", "service restart": reconnect


def test_a_rolling_restart_loses_nothing(site, chromium_browser):
    """SIGTERM one worker, start it again, then the other, while two pages and four raw
    clients (two of them sending throughout) are in the room: every socket is closed with a
    code that says "come back", and once all are back every page and client holds every
    stored message once, in order; every message a sender was answered for is stored."""
    room = new_room()
    url = site.ws_url + chat_path(room)
    pages = open_a_page_on_each_worker(site, chromium_browser, room, RECORD_CLOSE_CODES)
    with EventLoopThread() as loop:
        clients = [
            loop.run(ChatClient(url, f"client-{n}", origin=site.http_url, catch_up=True).open())
            for n in range(4)
        ]
        # Two send and read, two only read; all reconnect when their socket closes.
        still_sending = threading.Event()
        still_sending.set()
        chatting = [
            loop.start(keep_chatting(client, still_sending if number < 2 else None))
            for number, client in enumerate(clients)
        ]
        try:
            typed_until_taken(pages[site.workers[0]], "before the restart")
            for worker in site.workers:
                closed = closes(clients, pages)
                worker.restart()
                # Its sockets were closed, and came back through nginx on the other worker.
                wait_until(
                    lambda closed=closed: closes(clients, pages) > closed,
                    timeout=TIMEOUT,
                    message=f"the sockets on {worker.name} to be closed",
                )
                # Only then the next one, as the README says.
                wait_until_nginx_sends_to(site, worker)
            for page in pages.values():
                wait_for_status(page, CONNECTED)
            for number, page in enumerate(pages.values()):  # sent again if the room is busy
                typed_until_taken(page, f"after the restart, page {number}")
            wait_until(
                lambda: sum("after the restart" in text for text in stored_texts(site, room)) == 2,
                timeout=TIMEOUT,
                message="the pages' messages after the restart to be stored",
            )
            still_sending.clear()
            # A last message from each sender, said until taken: a socket's frames are stored
            # in the order they came, so once it is back, everything that sender said before
            # it is stored (or was refused), and no message is on its way any more.
            for client in clients[:2]:
                loop.run(say_all_until_taken(client, [f"{client.name} done"], "done"))
            # Every client holds what is stored.
            rows = wait_until(
                lambda: (
                    (rows := stored(site, room))
                    and all(set(c.deliveries()) == {number for number, _ in rows} for c in clients)
                    and rows
                ),
                timeout=PAGE_TIMEOUT,
                message="every client to hold every stored message",
            )
        finally:
            for task in chatting:
                task.cancel()
        texts = [text for _, text in rows]
        for page in pages.values():
            wait_until_shows(page, rows)
        for client in clients:
            assert_holds_the_stored_order(client.messages(), rows)
            assert set(client.close_codes) <= COME_BACK, client.close_codes
            # Every message it was answered for (its own copy came back) is stored, once.
            for sent in client.sent:
                if any(m.get("ref") == sent.ref for m in client.messages()):
                    assert texts.count(sent.text) == 1, sent.text
        loop.run(close_all(clients))
    codes = [code for page in pages.values() for code in page.evaluate("window.closeCodes")]
    assert codes and set(codes) <= COME_BACK, codes
    assert all(client.close_codes for client in clients)  # each was closed at least once
    assert len(texts) == len(set(texts)), "a message was stored twice"
    for page in pages.values():
        page.context.close()


def wait_until_nginx_sends_to(site, worker):
    """Opens (and closes) sockets through nginx until one lands on `worker`: nginx tries a
    worker that refused a connection again only after `fail_timeout` (10 s)."""
    room = new_room()

    def lands_there():
        marks = log_marks(site)
        with join(site, room) as ws:
            wait_until_joined(ws)
        return worker_that_accepted(site, marks, chat_path(room)) is worker

    wait_until(lands_there, timeout=TIMEOUT, message=f"nginx to send a socket to {worker.name}")


def closes(clients, pages):
    """How many sockets the clients and pages have seen closed so far."""
    pages_closes = sum(page.evaluate("window.closeCodes.length") for page in pages.values())
    return sum(len(client.close_codes) for client in clients) + pages_closes


def stored_texts(site, room):
    return [text for _, text in stored(site, room)]


async def keep_chatting(client, sending=None):
    """Until cancelled: sends a message every 0.2 s (within flood control) while `sending`
    (a threading.Event) is set; when
    the socket closes, waits a random 0.2-1 s (as a page's jitter would) and reconnects with
    `?after=`, as step 06's page does. A message unanswered when its socket closed is not
    sent again (the page says "not confirmed" and leaves it to its user)."""
    number = 0
    while True:
        if client.reader.done():
            await asyncio.sleep(random.uniform(0.2, 1.0))
            with contextlib.suppress(OSError, InvalidStatus, asyncio.TimeoutError):
                await client.reconnect()
            continue
        if sending is not None and sending.is_set():
            number += 1
            with contextlib.suppress(ConnectionClosed):
                await client.say(f"{client.name} #{number}", ref=f"{client.name}-{number}")
        await asyncio.sleep(0.2)


def test_the_readme_shows_the_commands_the_site_is_started_with():
    shown_commands = {c.command for c in console_commands(README)}
    assert set(README_COMMANDS) <= shown_commands, set(README_COMMANDS) - shown_commands


def test_check_deploy_prints_on_each_track_what_the_readme_shows():
    """The README's block comes from the default track (tools/readme_outputs.py, checked by
    test_readme_outputs.py); Django 5.2 leaves the same four warnings, which this shows."""
    (output,) = [o for o in SHOWN_OUTPUTS if o.step == STEP and "check --deploy" in o.command]
    shown, _, _ = shown_block(README.read_text(), output.command)
    made = output.run()
    assert is_fresh(shown, made), difference(shown, made)


@contextlib.contextmanager
def make_run(track, port, copy):
    """`make run STEP=07` on `copy` until the block ends, then Ctrl-C: yields once it says
    where to open, and checks afterwards that nothing it started is left running or
    listening."""
    argv = ["make", "run", "STEP=07", f"PORT={port}", f"TRACK={track}", f"STEP_COPY={copy}"]
    # A session of its own, so Ctrl-C reaches make and everything below it, as in a terminal.
    make = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    started = []
    try:
        deadline = time.monotonic() + 180
        while not any(
            "Serving" in line and f"open http://127.0.0.1:{port}/" in line for line in output
        ):
            assert time.monotonic() < deadline and make.poll() is None, "".join(output)
            output.append(make.stdout.readline())
        started = psutil.Process(make.pid).children(recursive=True)
        yield started
    finally:
        if not started and make.poll() is None:
            started = psutil.Process(make.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):  # make has stopped by itself: say why
            os.killpg(make.pid, signal.SIGINT)
        remaining, _ = make.communicate(timeout=60)
        _, still_running = psutil.wait_procs(started, timeout=15)
        for process in still_running:
            process.kill()
    assert not still_running, f"left running after Ctrl-C: {still_running}"
    assert make.returncode in (0, 2, -signal.SIGINT), "".join(output) + remaining
    for listening in (port, tls_port_of(port)):
        assert not port_is_taken(listening)


def test_make_run_serves_the_site_and_a_login_outlives_a_restart(track):
    """`make run STEP=07`, Ctrl-C, `make run STEP=07` again: the secret key (run/secret_key)
    and the database (run/postgres/, or db.sqlite3) are the same, so the session cookie of a
    login made before still logs the page and its socket in."""
    port = free_site_port()
    http_url = f"http://127.0.0.1:{port}"
    with copy_of_the_site() as copy:
        with make_run(track, port, copy) as started:
            page = requests.get(f"{http_url}/chat/lobby/", timeout=TIMEOUT)
            assert page.status_code == 200 and page.headers["Server"].startswith("nginx")
            css = requests.get(f"{http_url}/static/admin/css/base.css", timeout=TIMEOUT)
            assert css.status_code == 200
            names = " ".join(" ".join(p.cmdline()) for p in started)
            programs = ["nginx", "uvicorn", "redis-server"]
            if DATABASES[track] == "postgresql":
                programs.append("postgres")
            for program in programs:
                assert program in names, names
            manage(
                copy,
                f"createsuperuser --noinput --username {USERNAME} --email a@example.com",
                env={**running_site_environment(copy), "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
            )
            session = requests.Session()
            form = session.get(f"{http_url}/accounts/login/", timeout=TIMEOUT)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)[1]
            logged_in = session.post(
                f"{http_url}/accounts/login/",
                data={"csrfmiddlewaretoken": token, "username": USERNAME, "password": PASSWORD},
                timeout=TIMEOUT,
            )
            assert f'<strong id="me">{USERNAME}</strong>' in logged_in.text
        with make_run(track, port, copy):
            page = session.get(f"{http_url}/chat/lobby/", timeout=TIMEOUT)
            assert f'<strong id="me">{USERNAME}</strong>' in page.text
            cookie = f"sessionid={session.cookies['sessionid']}"
            with connect(
                f"ws://127.0.0.1:{port}{chat_path(new_room())}",
                origin=http_url,
                additional_headers={"Cookie": cookie},
                open_timeout=TIMEOUT,
            ) as ws:
                say(ws, "after the restart")
                assert heard_message(ws, "after the restart")["author"] == USERNAME


def running_site_environment(copy):
    """The settings `make run` gave the site in `copy`, for a management command beside it:
    its key, and PostgreSQL's address (its port from the cluster's postmaster.pid)."""
    env = {"DJANGO_SECRET_KEY": (copy / "run/secret_key").read_text().strip(), "DATABASE_URL": ""}
    cluster = copy / "run/postgres"
    if (cluster / "data/postmaster.pid").exists():
        postgres_port = (cluster / "data/postmaster.pid").read_text().splitlines()[3]
        password = (cluster / "password").read_text().strip()
        env["DATABASE_URL"] = f"postgresql://newtest:{password}@127.0.0.1:{postgres_port}/newtest"
    return env
