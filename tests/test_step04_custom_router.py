"""Step 04: a hand-written ASGI router in front of Django answers WebSockets, under real servers.

Each test talks to a real daphne or uvicorn process serving step04_custom_router exactly as its
README starts it. Every refusal or broken client is followed by proof that the server still
echoes for others, still serves HTTP, and holds no connection it should have let go.
"""

import asyncio
import http.server
import os
import struct
import threading

import psutil
import pytest
import requests
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.raw_websocket import raw_handshake
from tests.readme_console import assert_output_shown, find_command
from tests.system_tools import CHROMIUM_ARGS, require_tool
from tools.chat_driver import run_async
from tools.repository import REPO_ROOT
from tools.server_process import free_port
from tools.step_commands import ASGI_SERVERS, README_COMMANDS, copy_step, step_server
from tools.waiting import wait_until

STEP = REPO_ROOT / "step04_custom_router"
MAX_MESSAGE_BYTES = 64 * 1024  # the limit the step's README states
# Daphne lets an application close only with 1000 or 3000-4999, so the app falls back to 4009.
TOO_BIG_CLOSE_CODE = {"daphne": 4009, "uvicorn": 1009}
TOO_BIG_CLOSE_REASON = {"daphne": "", "uvicorn": "messages are limited to 65536 bytes"}
# Daphne logs every WebSocket that ends, whoever ends it; uvicorn 0.54 logs only its opening.
DAPHNE_ENDED_LOG = '"WSDISCONNECT /ws/echo/"'
LIFESPAN_UNSUPPORTED = "ASGI 'lifespan' protocol appears unsupported."


# --- helpers: a real client, the server's own sockets, and a hand-made broken client ---------


def open_echo(server):
    return connect(server.ws_url + "/ws/echo/", origin=server.http_url, open_timeout=30)


def echo(server, *messages):
    with open_echo(server) as ws:
        replies = []
        for message in messages:
            ws.send(message)
            replies.append(ws.recv(timeout=30))
        return replies


def refusal_status(server, path="/ws/echo/", origin="same site"):
    origin = server.http_url if origin == "same site" else origin
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url + path, origin=origin, open_timeout=30)
    return refused.value.response.status_code


def open_connections(server):
    """The server process's TCP connections other than its listening socket."""
    return [
        c
        for c in psutil.Process(server.process.pid).net_connections(kind="tcp")
        if c.status != psutil.CONN_LISTEN
    ]


def wait_until_no_connections(server, timeout=60):
    wait_until(
        lambda: not open_connections(server),
        timeout=timeout,
        interval=0.1,
        message=lambda: f"the server to let go of {open_connections(server)}",
    )


def wait_for_log_count(server, text, count, timeout=30):
    wait_until(
        lambda: server.log_text().count(text) >= count,
        timeout=timeout,
        message=lambda: f"{count} {text!r} in the log:\n{server.log_text()}",
    )


def assert_still_serving(server):
    """Another client gets its echo, HTTP is answered, and nothing is left open or broken."""
    assert server.process.poll() is None, server.log_text()
    assert echo(server, "still there?", b"\x01\x02") == ["still there?", b"\x01\x02"]
    assert requests.get(server.http_url + "/", timeout=30).status_code == 200
    wait_until_no_connections(server)
    log = server.log_text()
    assert "Traceback" not in log and "took too long to shut down" not in log, log


def client_frame(opcode, payload, final=True, announced_length=None):
    """One masked client frame (RFC 6455, 5.2); announced_length may promise more than is sent."""
    length = len(payload) if announced_length is None else announced_length
    header = bytes([(0x80 if final else 0) | opcode])
    if length < 126:
        header += bytes([0x80 | length])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    mask = os.urandom(4)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


# --- what works --------------------------------------------------------------------------------


def test_echoes_text_and_binary_frames(asgi_server):
    binary = bytes(range(256))
    messages = ["Hello, ASGI!", binary, "ünïcode ✓"]
    assert echo(asgi_server, *messages) == messages
    assert_still_serving(asgi_server)


def test_http_pages_are_still_served_by_django(asgi_server):
    page = requests.get(asgi_server.http_url + "/", timeout=30)
    assert page.status_code == 200
    assert '<button id="send">Send over WebSocket</button>' in page.text
    missing = requests.get(asgi_server.http_url + "/no-such-page/", timeout=30)
    assert missing.status_code == 404
    assert "Page not found" in missing.text  # Django's own debug 404 page
    admin = requests.get(asgi_server.http_url + "/admin/login/", timeout=30)
    assert admin.status_code == 200 and "Django administration" in admin.text


def test_a_message_exactly_at_the_limit_is_echoed(asgi_server):
    text, data = "x" * MAX_MESSAGE_BYTES, os.urandom(MAX_MESSAGE_BYTES)
    assert echo(asgi_server, text, data) == [text, data]


def test_an_empty_message_is_echoed_by_uvicorn_and_dropped_by_daphne(asgi_server):
    # The app sends the empty echo (tests/inprocess/step04 shows it); Daphne's ws_protocol
    # only sends a payload that is truthy, so "" and b"" never leave it. The README says so.
    with open_echo(asgi_server) as ws:
        ws.send("")
        ws.send("after the empty one")
        first = ws.recv(timeout=30)
    assert first == ("after the empty one" if asgi_server.name == "daphne" else "")


# --- bad input: each gets its stated answer, and everyone else is still served -----------------


@pytest.mark.parametrize(
    "path, origin, logged",
    [
        ("/ws/nope/", "same site", "WebSocket /ws/nope/ refused: no WebSocket route for this path"),
        (
            "/ws/echo/",
            "http://evil.example",
            "WebSocket /ws/echo/ refused: Origin http://evil.example is not in ALLOWED_HOSTS",
        ),
        # Our choice: no Origin, no connection. Browsers always send one; anything else can add one.
        ("/ws/echo/", None, "WebSocket /ws/echo/ refused: no Origin header"),
    ],
    ids=["unknown path", "foreign origin", "missing origin"],
)
def test_refused_with_403_before_the_handshake_completes(asgi_server, path, origin, logged):
    assert refusal_status(asgi_server, path, origin) == 403
    asgi_server.wait_for_log(logged)
    assert_still_serving(asgi_server)


def test_a_message_over_the_limit_is_closed_by_the_app(asgi_server):
    with open_echo(asgi_server) as ws:
        ws.send(os.urandom(MAX_MESSAGE_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    # Both servers' own limits are far above 64 KiB + 1 byte: this close comes from the app.
    assert closed.value.rcvd.code == TOO_BIG_CLOSE_CODE[asgi_server.name]
    # The app sends the same reason with either code; daphne passes only the code on.
    assert closed.value.rcvd.reason == TOO_BIG_CLOSE_REASON[asgi_server.name]
    asgi_server.wait_for_log(f"closed: a message of {MAX_MESSAGE_BYTES + 1} bytes")
    assert_still_serving(asgi_server)


def test_a_client_that_disconnects_mid_message_is_let_go(asgi_server):
    ended = asgi_server.log_text().count(DAPHNE_ENDED_LOG)
    sock = raw_handshake(asgi_server, "/ws/echo/")
    assert len(open_connections(asgi_server)) == 1
    # The first fragment of a text message, then a continuation promising 1000 bytes but
    # bringing 10, then the client is gone without a close frame.
    sock.sendall(client_frame(0x1, b"first half, ", final=False))
    sock.sendall(client_frame(0x0, b"0123456789", announced_length=1000))
    sock.close()
    wait_until_no_connections(asgi_server)  # the server let go of it
    if asgi_server.name == "daphne":
        wait_for_log_count(asgi_server, DAPHNE_ENDED_LOG, ended + 1)
    assert_still_serving(asgi_server)


def test_a_client_that_closes_right_after_connecting_gets_a_normal_close(asgi_server):
    with open_echo(asgi_server) as ws:
        ws.close()
    assert ws.close_code == 1000  # the server answered the close frame with its own
    assert_still_serving(asgi_server)


def test_a_client_that_vanishes_right_after_connecting_is_let_go(asgi_server):
    ended = asgi_server.log_text().count(DAPHNE_ENDED_LOG)
    sock = raw_handshake(asgi_server, "/ws/echo/")
    assert len(open_connections(asgi_server)) == 1
    sock.close()  # no close frame: the TCP connection just ends
    wait_until_no_connections(asgi_server)
    if asgi_server.name == "daphne":
        wait_for_log_count(asgi_server, DAPHNE_ENDED_LOG, ended + 1)
    assert_still_serving(asgi_server)


def test_runserver_still_answers_the_handshake_with_404(serve, tmp_path):
    # runserver is WSGI: it never loads asgi.py, so the router changes nothing there.
    # (A copy: runserver's migration check would create db.sqlite3 in the step directory.)
    server = serve(STEP.name, "runserver", directory=copy_step(STEP.name, tmp_path))
    assert refusal_status(server) == 404
    assert requests.get(server.http_url + "/", timeout=30).status_code == 200


# --- load, bounded ----------------------------------------------------------------------------

CLIENTS = 200
MESSAGES_PER_CLIENT = 50


async def many_clients_echo(server):
    """CLIENTS connections open at once, each sending MESSAGES_PER_CLIENT messages before reading
    the echoes. Returns the echoes per client, and the server's connection count with all open."""
    connected = 0
    all_connected = asyncio.Event()
    seen_by_server = []

    async def one_client(number):
        nonlocal connected
        async with async_connect(
            server.ws_url + "/ws/echo/",
            origin=server.http_url,
            open_timeout=120,
            ping_interval=None,
        ) as ws:
            connected += 1
            if connected == CLIENTS:
                seen_by_server.append(len(open_connections(server)))
                all_connected.set()
            await all_connected.wait()
            for index in range(MESSAGES_PER_CLIENT):
                await ws.send(f"client {number} message {index}")
            return [await ws.recv() for _ in range(MESSAGES_PER_CLIENT)]

    echoes = await asyncio.wait_for(
        asyncio.gather(*(one_client(number) for number in range(CLIENTS))), timeout=300
    )
    return echoes, seen_by_server[0]


def test_200_clients_get_every_echo_in_order_and_leave_nothing_behind(asgi_server):
    echoes, open_while_all_connected = run_async(many_clients_echo(asgi_server))
    assert open_while_all_connected >= CLIENTS  # so the drain check below can see connections
    for number, received in enumerate(echoes):
        assert received == [f"client {number} message {i}" for i in range(MESSAGES_PER_CLIENT)]
    wait_until_no_connections(asgi_server)
    assert_still_serving(asgi_server)


# --- lifespan ---------------------------------------------------------------------------------


def test_uvicorn_gets_lifespan_answered_at_startup_and_shutdown():
    server = step_server(STEP.name, "uvicorn")
    with server:
        started = server.wait_for_log("Application startup complete.")
    stopped = server.log_text()
    assert "Waiting for application startup." in started
    assert LIFESPAN_UNSUPPORTED not in stopped
    assert "Waiting for application shutdown." in stopped
    assert "Application shutdown complete." in stopped
    assert "Traceback" not in stopped


# --- the browser -------------------------------------------------------------------------------


@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_browser_page_shows_the_echo(serve, page, server_name):
    server = serve(STEP.name, server_name)
    page.goto(server.http_url + "/")
    page.click("#send")
    events = page.locator("#events")
    events.get_by_text("closed with code 1000").wait_for(timeout=30_000)
    shown = events.inner_text()
    assert "open, sending: Hello, ASGI!" in shown
    assert "received: Hello, ASGI!" in shown
    assert "error:" not in shown


def chromium_browser_path():
    return require_tool("chromium", "sudo apt-get install chromium")


@pytest.fixture
def browser_resolving_evil_example(chromium_browser):
    """A second Chromium in which evil.example is 127.0.0.1, so a real page on another site can
    be served from loopback (Chromium blocks public pages from reaching loopback at all)."""
    browser = chromium_browser.browser_type.launch(
        executable_path=chromium_browser_path(),
        headless=True,
        args=CHROMIUM_ARGS + ["--host-resolver-rules=MAP evil.example 127.0.0.1"],
    )
    yield browser
    browser.close()


@pytest.fixture
def evil_site():
    """A real HTTP server on loopback serving one page that opens a WebSocket to `target`."""
    pages = {}

    class ForeignPage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages["/"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), ForeignPage)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()

    def serve_page_against(target_ws_url):
        pages["/"] = f"""<!DOCTYPE html><ol id="events"></ol><script>
          const show = (text) => document.getElementById("events").append(text + "\\n");
          const socket = new WebSocket("{target_ws_url}");
          socket.addEventListener("open", () => show("open"));
          socket.addEventListener("close", (event) => show(`closed with code ${{event.code}}`));
        </script>"""
        return f"http://evil.example:{site.server_address[1]}/"

    yield serve_page_against
    site.shutdown()
    site.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_browser_page_from_another_site_is_refused(
    serve, browser_resolving_evil_example, evil_site, server_name
):
    """Cross-site WebSocket hijacking, tried for real: a page on another site opens a WebSocket to
    our server (the browser lets it: no CORS for WebSockets) and only the Origin check stops it."""
    server = serve(STEP.name, server_name)
    foreign_url = evil_site(server.ws_url + "/ws/echo/")
    context = browser_resolving_evil_example.new_context()
    try:
        page = context.new_page()
        page.goto(foreign_url)
        page.locator("#events").get_by_text("closed with code 1006").wait_for(timeout=30_000)
        assert "open" not in page.locator("#events").inner_text().split()
    finally:
        context.close()
    origin = foreign_url.rstrip("/")
    server.wait_for_log(f"WebSocket /ws/echo/ refused: Origin {origin} is not in ALLOWED_HOSTS")


# --- the README -------------------------------------------------------------------------------


@pytest.mark.track("django30")
@pytest.mark.parametrize("server_name", ASGI_SERVERS)
def test_readme_shows_the_servers_output_for_the_page_and_its_echo(serve, page, server_name):
    (shown,) = find_command(STEP / "README.md", README_COMMANDS[server_name])
    server = serve(STEP.name, server_name)
    page.goto(server.http_url + "/")
    page.click("#send")
    page.locator("#events").get_by_text("closed with code 1000").wait_for(timeout=30_000)
    log = server.wait_for_log(DAPHNE_ENDED_LOG if server_name == "daphne" else "connection open")
    assert_output_shown(shown.output, log, server.port)
