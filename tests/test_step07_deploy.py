"""Step 07: step 06's chat deployed for real, tested as it runs: a real nginx in front of two
real worker processes (daphne, then uvicorn) and a real redis-server, all on free loopback
ports, started the one way `make run STEP=07` starts them (tools/deploy_stack.py), each site
serving a copy of the step of its own. Clients and Chromium pages only ever talk to nginx;
which worker took a WebSocket is read from the workers' own access logs.
"""

import asyncio
import contextlib
import http.client
import os
import re
import signal
import sqlite3
import subprocess
import time

import psutil
import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.readme_console import console_commands
from tests.system_tools import require_deploy_tools
from tools.chat_driver import (
    CONNECTED,
    PAGE_TIMEOUT,
    TIMEOUT,
    ChatClient,
    chat_path,
    close_all,
    frames_before,
    heard_message,
    join,
    new_room,
    open_page,
    run_async,
    say,
    send_from,
    shown,
    wait_for_status,
    wait_until_joined,
    wait_until_shows,
)
from tools.chat_driver import stored as stored_in_copy
from tools.deploy_stack import README_COMMANDS, STEP, DeployStack, free_site_port, tls_port_of
from tools.readme_outputs import SHOWN_OUTPUTS, difference, is_fresh, shown_block
from tools.repository import REPO_ROOT, step_directory
from tools.server_process import port_is_taken
from tools.step_commands import ASGI_SERVERS, copy_step, manage
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


@pytest.fixture(scope="module", params=ASGI_SERVERS)
def site(request, system_programs, tmp_path_factory):
    """The site as deployed (Redis, two workers of one server, nginx), one per server and
    module, for the tests that leave it as they found it."""
    directory = copy_step(STEP, tmp_path_factory.mktemp("site"))
    with DeployStack(directory=directory, server=request.param) as stack:
        yield stack


@pytest.fixture
def deploy(system_programs, tmp_path):
    """deploy(server, **options) starts a site of the test's own (options as DeployStack's:
    channel_layer, edit_config) on a fresh copy of the step; it is stopped after the test."""
    started = []

    def start(server, **options):
        parent = tmp_path / f"site-{len(started)}"
        parent.mkdir()
        stack = DeployStack(directory=copy_step(STEP, parent), server=server, **options)
        started.append(stack)
        return stack.start()

    yield start
    for stack in started:
        stack.stop()


def stored(site, room):
    """[(id, text)] of the room's messages in the site's database, in id order."""
    return stored_in_copy(site.directory, room)


def without(lines, text):
    """`text` with each of `lines` taken out; each must be there, so a renamed line fails here."""
    for line in lines:
        assert text.count(line) == 1, f"nginx.conf no longer has: {line.strip()}"
        text = text.replace(line, "")
    return text


# --- which worker took a connection -------------------------------------------------------


def accepted_websockets(log, path):
    """How many WebSockets to `path` a worker's access log shows accepted: daphne writes
    `"WSCONNECT /ws/chat/lobby/"`, uvicorn `"WebSocket /ws/chat/lobby/?after=0" [accepted]`."""
    return sum(
        1
        for line in log.splitlines()
        if f'"WSCONNECT {path}' in line or (f'"WebSocket {path}' in line and "[accepted]" in line)
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


def test_django_sees_the_clients_address_not_nginxs(site):
    room = new_room()
    marks = log_marks(site)
    # Loopback is all of 127.0.0.0/8: this client comes from 127.0.0.2, nginx from 127.0.0.1.
    connection = http.client.HTTPConnection(
        "127.0.0.1", site.port, timeout=TIMEOUT, source_address=("127.0.0.2", 0)
    )
    connection.request("GET", f"/chat/{room}/")
    assert connection.getresponse().status == 200
    connection.close()
    line = wait_until(
        lambda: next(
            (
                line
                for worker, mark in zip(site.workers, marks, strict=True)
                for line in worker.log_after(mark).splitlines()
                if f"/chat/{room}/" in line
            ),
            None,
        ),
        timeout=TIMEOUT,
    )
    assert "127.0.0.2" in line, line


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
            sent = set()
            for client in clients:
                for number in range(messages_each):
                    text = f"{client.name} #{number}"
                    sent.add(text)
                    await client.say(text)
            for client in clients:
                await client.wait_for(lambda c: sent <= set(c.texts()), PAGE_TIMEOUT)
            return sent
        finally:
            await close_all(clients)

    sent = run_async(chat(), 180)
    assert sorted(text for _, text in stored(site, room)) == sorted(sent)


def test_without_redis_a_room_splits_between_the_workers(deploy, site):
    split = deploy(site.server, channel_layer="in-memory")
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


def test_without_the_upgrade_lines_the_handshake_gets_djangos_404(deploy, site):
    broken = deploy(site.server, edit_config=lambda text: without(UPGRADE_LINES, text))
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
    deploy, site, chromium_browser
):
    broken = deploy(site.server, edit_config=lambda text: without(UPGRADE_LINES, text))
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


def test_a_quiet_chat_stays_open_longer_than_nginx_would_keep_it(deploy, site):
    # nginx's default is 60 s; 2 s shows the same cut without waiting a minute.
    short = deploy(
        site.server,
        edit_config=lambda text: without([READ_TIMEOUT_LINE], text).replace(
            "location / {\n", "location / {\n            proxy_read_timeout 2s;\n"
        ),
    )
    room = new_room()
    with join(short, room) as ws:
        # Nothing comes from the worker (its first ping is 20 s away): nginx drops the socket.
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=15)
    # With deploy/nginx.conf's hour, the same quiet socket is still open, and works.
    with join(site, room) as ws:
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
    send_from(page, "over TLS")
    wait_until_shows(page, stored_eventually(site, room, 1))
    assert USERNAME in shown(page)[0][1]
    context.close()


def create_user(site):
    """The test's user in the site's database, made once per site."""
    uri = f"file:{site.directory / 'db.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=20) as database:
        users = {name for (name,) in database.execute("SELECT username FROM auth_user")}
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


def test_without_x_forwarded_proto_django_takes_https_for_http(deploy, site, track):
    broken = deploy(site.server, edit_config=lambda text: without([FORWARDED_PROTO_LINE], text))
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
    deploy, site, chromium_browser
):
    stack = deploy(site.server)
    room = new_room()
    path = chat_path(room)
    pages = {}
    for _ in range(8):  # pages one at a time until one has its socket on each worker
        marks = log_marks(stack)
        page = open_page(chromium_browser, f"{stack.http_url}/chat/{room}/")
        worker = worker_that_accepted(stack, marks, path)
        if worker in pages:
            page.context.close()
            # nginx gives each request to the next worker in turn, and a page may make an even
            # number of them, so its socket can land on the same worker every time: one more
            # request through nginx shifts the turn.
            requests.get(f"{stack.http_url}/chat/{room}/", timeout=TIMEOUT)
        else:
            pages[worker] = page
        if len(pages) == 2:
            break
    assert len(pages) == 2, "nginx sent every page's socket to the same worker"
    victim, survivor = stack.workers
    send_from(pages[victim], "before the crash")
    for page in pages.values():
        wait_until_shows(page, stored_eventually(stack, room, 1))

    accepted_before = accepted_websockets(survivor.log_text(), path)
    os.killpg(victim.pid, signal.SIGKILL)  # no goodbye: the process is gone
    victim.process.wait(timeout=TIMEOUT)
    # While the victim's page is cut off, the room goes on through nginx (on the survivor).
    with join(stack, room) as ws:
        for number in range(10):
            say(ws, f"while it reconnects {number}")
        heard_message(ws, "while it reconnects 9")
    # The page came back through nginx, on the only worker left, and sends from there.
    wait_until(
        lambda: accepted_websockets(survivor.log_text(), path) > accepted_before + 1,
        timeout=PAGE_TIMEOUT,
        message="the cut-off page to reconnect to the surviving worker",
    )
    wait_for_status(pages[victim], CONNECTED)
    send_from(pages[victim], "after the crash")
    rows = stored_eventually(stack, room, 12)
    for page in pages.values():
        wait_until_shows(page, rows)
    for page in pages.values():
        page.context.close()


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


def test_make_run_starts_the_site_and_ctrl_c_stops_all_of_it(track, tmp_path):
    port = free_site_port()
    copy = copy_step(STEP, tmp_path)
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
        page = requests.get(f"http://127.0.0.1:{port}/chat/lobby/", timeout=TIMEOUT)
        assert page.status_code == 200 and page.headers["Server"].startswith("nginx")
        css = requests.get(f"http://127.0.0.1:{port}/static/admin/css/base.css", timeout=TIMEOUT)
        assert css.status_code == 200
        started = psutil.Process(make.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in started)
        for program in ("nginx", "daphne", "redis-server"):
            assert program in names, names
    finally:
        if not started:
            started = psutil.Process(make.pid).children(recursive=True)
        os.killpg(make.pid, signal.SIGINT)
        remaining, _ = make.communicate(timeout=60)
        _, still_running = psutil.wait_procs(started, timeout=15)
        for process in still_running:
            process.kill()
    assert not still_running, f"left running after Ctrl-C: {still_running}"
    assert make.returncode in (0, 2, -signal.SIGINT), "".join(output) + remaining
    for listening in (port, tls_port_of(port)):
        assert not port_is_taken(listening)
