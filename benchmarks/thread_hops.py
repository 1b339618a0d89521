"""Thread hops: how many times a page request, an echoed message or a chat broadcast goes to a
thread and back, on each track, and what removing each cause does to the figures under a real
server; with what else each costs in-process (Django's WSGI handler for runserver, the channel
layer and its Redis commands for a broadcast) and where daphne's slow echo round trips go.

    .venv/current/bin/python -m benchmarks.thread_hops    # this track: counts, rows, the tail
    .venv/current/bin/python -m benchmarks.thread_hops --echo-tail   # the tail alone

A *hop* is one call of asgiref's `SyncToAsync` (what `sync_to_async` and Channels'
`database_sync_to_async` return): the function runs in another thread while the coroutine
waits. The counts come from instrumenting `SyncToAsync.__call__` around the real code (step 03's
page through Django's `ASGIHandler`, step 05's `/ws/echo/` through its whole `application`), in
a process of each track's own Python, one process per step. notebooks/06 explains them.

The rows isolating each cause run under daphne and uvicorn like run_benchmark.py's rows:
step 03's page as it is, with an async view, without middleware, and with both; step 05's
echo (1 and 50 clients) and chat broadcast as they are and, on Channels 4, without the
`aclose_old_connections()` hop that `AsyncConsumer.dispatch` awaits before every handler.
That last one is an EXPERIMENT, NOT A RECOMMENDATION: the hop closes stale database
connections, and a consumer that uses the database needs it. The variants exist only here, in
benchmarks/, as module attributes a server can load
(`daphne benchmarks.thread_hops:page_async_view`, run from step 03's directory).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
PAGE_STEP = "step03_websocket_error"
ECHO_STEP = "step05_channels"
ASGI_SERVERS = ("daphne", "uvicorn")

# The page variants, by the module attribute a server loads. Django 3.0 has no async views and
# runs every middleware inside one hop, so the variants run on Django 4.0+ only.
PAGE_VARIANTS = {
    "page": {"async_view": False, "middleware": True},
    "page_async_view": {"async_view": True, "middleware": True},
    "page_without_middleware": {"async_view": False, "middleware": False},
    "page_async_view_without_middleware": {"async_view": True, "middleware": False},
}
PAGE_LABELS = {
    "page": "step 03 page",
    "page_async_view": "step 03 page, async view",
    "page_without_middleware": "step 03 page, no middleware",
    "page_async_view_without_middleware": "step 03 page, async view, no middleware",
}
# Step 05's whole application, as it is and without the per-message hop: the echo rows and the
# broadcast rows load the same attributes (at /ws/echo/ and /ws/chat/<room>/).
ECHO_VARIANTS = ("echo", "echo_without_per_message_hop")
ECHO_LABELS = {
    "echo": "step 05 Channels, in-memory",
    "echo_without_per_message_hop": "step 05 without the per-message hop (experiment, not a "
    "recommendation)",
}
BROADCAST_LABELS = {
    "echo": "step 05, in-memory",
    "echo_without_per_message_hop": "step 05, in-memory, without the per-message hop "
    "(experiment, not a recommendation)",
}
FLOORS = {
    "http": "bare page (floor)",
    "echo": "bare ASGI echo (floor)",
    "broadcast": "bare ASGI room (floor)",
}
PATHS = {"http": "/", "echo": "/ws/echo/", "broadcast": "/ws/chat/benchmark/"}
# What the in-process timings add to benchmarks/measure_track.py's configurations.
INPROCESS = {
    "full": {
        "inprocess_requests": 300,
        "inprocess_broadcasts": 30,
        "hop_calls": 3000,
        "tail_seconds": 5.0,
        "servers": ASGI_SERVERS,
    },
    # The rows under uvicorn only: the tables' rows already start every application under both.
    "tiny": {
        "inprocess_requests": 20,
        "inprocess_broadcasts": 3,
        "hop_calls": 200,
        "tail_seconds": 0.3,
        "servers": ("uvicorn",),
    },
}


def config_of(name):
    """measure_track.py's configuration `name` (clients, durations) with INPROCESS's keys."""
    from benchmarks.measure_track import CONFIGS  # not at import: servers load this module

    return {**CONFIGS[name], **INPROCESS[name]}


# --- the applications a server loads (run from the step's own directory) --------------------


def page_application(async_view, middleware):
    """Step 03's Django application, optionally with its view made async and/or no middleware."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newtest.settings")
    from django.conf import settings

    if not middleware:
        settings.MIDDLEWARE = []
    if async_view:
        settings.ROOT_URLCONF = __name__  # `urlpatterns` below: the same page, from an async view
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


async def async_echo_page(request):
    """Step 03's `echo_page`, written as a coroutine: Django 4.0+ awaits it without a hop."""
    from django.shortcuts import render

    return render(request, "echo/echo_page.html")


def echo_application(per_message_hop=True):
    """Step 05's application; without `per_message_hop`, Channels 4's dispatch skips
    `aclose_old_connections()`. EXPERIMENT, NOT A RECOMMENDATION: see the module docstring."""
    import channels.consumer

    if not per_message_hop:
        if not hasattr(channels.consumer, "aclose_old_connections"):
            raise RuntimeError(
                f"Channels {channels.__version__} makes no per-message hop to take out"
            )

        async def skip_closing_old_connections():
            return None

        channels.consumer.aclose_old_connections = skip_closing_old_connections
    from newtest.asgi import application

    return application


def __getattr__(name):
    """`benchmarks.thread_hops:page_async_view` and friends, built when a server asks."""
    if name in PAGE_VARIANTS:
        return page_application(**PAGE_VARIANTS[name])
    if name in ECHO_VARIANTS:
        return echo_application(per_message_hop=name == "echo")
    if name == "urlpatterns":
        from django.urls import path

        return [path("", async_echo_page)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- counting, in-process, in the track's own Python -----------------------------------------


class HopCounter:
    """Counts SyncToAsync calls (and AsyncToSync, the other way) while active."""

    def __init__(self):
        self.hops = []

    def __enter__(self):
        from asgiref.sync import AsyncToSync, SyncToAsync

        self.classes = SyncToAsync, AsyncToSync
        self.originals = SyncToAsync.__call__, AsyncToSync.__call__
        to_thread, to_loop = self.originals
        hops = self.hops

        async def counted_to_thread(hop, *args, **kwargs):
            hops.append(("sync_to_async", getattr(hop.func, "__qualname__", repr(hop.func))))
            return await to_thread(hop, *args, **kwargs)

        def counted_to_loop(hop, *args, **kwargs):
            hops.append(
                ("async_to_sync", getattr(hop.awaitable, "__qualname__", repr(hop.awaitable)))
            )
            return to_loop(hop, *args, **kwargs)

        SyncToAsync.__call__, AsyncToSync.__call__ = counted_to_thread, counted_to_loop
        return self

    def __exit__(self, *exc_info):
        (SyncToAsync, AsyncToSync), (to_thread, to_loop) = self.classes, self.originals
        SyncToAsync.__call__, AsyncToSync.__call__ = to_thread, to_loop

    def to_thread(self):
        return [name for direction, name in self.hops if direction == "sync_to_async"]


def http_scope(path="/"):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def websocket_scope(path):
    """The scope of a browser's handshake at `path`: the http scope's keys, plus an Origin."""
    scope = http_scope(path)
    del scope["method"]
    scope.update(
        type="websocket",
        scheme="ws",
        subprotocols=[],
        headers=[(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")],
    )
    return scope


async def one_page(application):
    from asgiref.testing import ApplicationCommunicator

    browser = ApplicationCommunicator(application, http_scope())
    await browser.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await browser.receive_output(timeout=10)
    await browser.receive_output(timeout=10)
    await browser.wait(timeout=10)
    if start["status"] != 200:
        raise RuntimeError(f"step 03's page answered {start['status']}")


def wsgi_page_ms(requests):
    """Milliseconds per request of step 03's page through Django's WSGI handler (what
    runserver runs), in-process: no server, no socket, no thread hop."""
    import io
    import wsgiref.util

    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()

    def one_request():
        environ = {"PATH_INFO": "/", "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO()}
        wsgiref.util.setup_testing_defaults(environ)
        statuses = []
        body = b"".join(application(environ, lambda status, headers: statuses.append(status)))
        if not statuses[0].startswith("200") or not body:
            raise RuntimeError(f"step 03's page answered {statuses[0]} through WSGI")

    one_request()
    started = time.perf_counter()
    for _ in range(requests):
        one_request()
    return (time.perf_counter() - started) / requests * 1000


async def count_page(variant, requests):
    """Hops of one page request, and the in-process time per request (no server, no sockets)."""
    application = __getattr__(variant)
    await one_page(application)  # the first request imports the URLconf and loads the template
    with HopCounter() as counter:
        await one_page(application)
    started = time.perf_counter()
    for _ in range(requests):
        await one_page(application)
    seconds = (time.perf_counter() - started) / requests
    return {
        "hops": len(counter.to_thread()),
        "hop_functions": counter.to_thread(),
        "async_to_sync": len(counter.hops) - len(counter.to_thread()),
        "inprocess_ms": seconds * 1000,
    }


async def open_sockets(application, path, count):
    """`count` accepted WebSockets to `application` at `path`, through asgiref's own
    communicator, not Channels' (which swaps `close_old_connections` for a no-op)."""
    from asgiref.testing import ApplicationCommunicator

    sockets = []
    for _ in range(count):
        socket = ApplicationCommunicator(application, websocket_scope(path))
        await socket.send_input({"type": "websocket.connect"})
        if (await socket.receive_output(timeout=10))["type"] != "websocket.accept":
            raise RuntimeError(f"step 05 refused the handshake at {path}")
        sockets.append(socket)
    return sockets


async def close_sockets(sockets):
    for socket in sockets:
        await socket.send_input({"type": "websocket.disconnect", "code": 1000})
    for socket in sockets:
        await socket.wait(timeout=10)


async def count_echo(variant, messages):
    """Hops per message echoed by step 05's /ws/echo/, through its whole application, and the
    in-process time per message (no server, no socket)."""
    (client,) = await open_sockets(__getattr__(variant), PATHS["echo"], 1)

    async def echo(count):
        for number in range(count):
            await client.send_input({"type": "websocket.receive", "text": f"hop {number}"})
            if (await client.receive_output(timeout=10)).get("text") != f"hop {number}":
                raise RuntimeError("the echo answered something else")

    with HopCounter() as counter:
        await echo(20)
    started = time.perf_counter()
    await echo(messages)
    seconds = (time.perf_counter() - started) / messages
    await close_sockets([client])
    return {
        "hops": len(counter.to_thread()) / 20,
        "hop_functions": sorted(set(counter.to_thread())),
        "inprocess_ms": seconds * 1000,
    }


class RedisCommands:
    """The commands a Redis server ran while active, by name (INFO commandstats, before and
    after); nothing when `url` is None (the in-memory layer)."""

    def __init__(self, url):
        self.url, self.calls = url, {}

    def snapshot(self):
        import redis

        with redis.Redis.from_url(self.url) as client:
            stats = client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): figures["calls"]
            for name, figures in stats.items()
            if name != "cmdstat_info"
        }

    def __enter__(self):
        self.before = self.snapshot() if self.url else {}
        return self

    def __exit__(self, *exc_info):
        if self.url:
            after = self.snapshot()
            self.calls = {
                name: calls - self.before.get(name, 0)
                for name, calls in sorted(after.items())
                if calls > self.before.get(name, 0)
            }


async def count_broadcast(variant, clients, broadcasts, redis_url):
    """One chat message to `clients` sockets of one room through step 05's whole application,
    on the layer its settings pick (Redis when REDIS_URL is set): the hops of one broadcast,
    and the Redis commands and in-process time per broadcast (no server, no sockets)."""
    sockets = await open_sockets(__getattr__(variant), PATHS["broadcast"], clients)

    async def broadcast(token):
        text = json.dumps({"message": token})
        await sockets[0].send_input({"type": "websocket.receive", "text": text})
        for socket in sockets:
            if (await socket.receive_output(timeout=10)).get("text") != text:
                raise RuntimeError("a room member received something else")

    await broadcast("warm-up")
    with HopCounter() as counter:
        await broadcast("counted")
    with RedisCommands(redis_url) as commands:
        started = time.perf_counter()
        for number in range(broadcasts):
            await broadcast(f"timed {number}")
        seconds = (time.perf_counter() - started) / broadcasts
    await close_sockets(sockets)
    return {
        "clients": clients,
        "hops": len(counter.to_thread()),
        "hop_functions": sorted(set(counter.to_thread())),
        # Per broadcast, averaged over the timed ones (the pool's connections are made by then).
        "redis_commands": {name: calls / broadcasts for name, calls in commands.calls.items()},
        "inprocess_ms": seconds * 1000,
        "layer_ms": await layer_broadcast_ms(clients, broadcasts),
    }


async def layer_broadcast_ms(clients, broadcasts):
    """Milliseconds per broadcast of the channel layer alone: one `group_send` to a group of
    `clients` channels, then one `receive` on each, with no consumer and no socket."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(clients)]
    for channel in channels:
        await layer.group_add("layer-only", channel)

    async def broadcast():
        await layer.group_send("layer-only", {"type": "chat.message", "message": "hello"})
        for channel in channels:
            await layer.receive(channel)

    await broadcast()
    started = time.perf_counter()
    for _ in range(broadcasts):
        await broadcast()
    seconds = (time.perf_counter() - started) / broadcasts
    for channel in channels:
        await layer.group_discard("layer-only", channel)
    return seconds * 1000


async def hop_cost(calls):
    """Seconds per `sync_to_async` call of an empty function, alone in the loop."""
    from asgiref.sync import ThreadSensitiveContext, sync_to_async

    def nothing():
        pass

    hop = sync_to_async(nothing)
    async with ThreadSensitiveContext():  # as Django 4.0+ runs a request's hops
        started = time.perf_counter()
        for _ in range(calls):
            await hop()
        return (time.perf_counter() - started) / calls


def count_in_this_process(kind, variant, config):
    """Worker: run from the step's directory with the step on sys.path; prints JSON."""
    sys.path.insert(0, os.getcwd())
    if kind == "page":
        result = asyncio.run(count_page(variant, config["inprocess_requests"]))
        result["hop_us"] = asyncio.run(hop_cost(config["hop_calls"])) * 1e6
        if not PAGE_VARIANTS[variant]["async_view"]:
            result["wsgi_ms"] = wsgi_page_ms(config["inprocess_requests"])
    elif kind == "echo":
        result = asyncio.run(count_echo(variant, config["inprocess_requests"] * 10))
    else:
        result = asyncio.run(
            count_broadcast(
                variant,
                config["broadcast_clients"],
                config["inprocess_broadcasts"],
                os.environ.get("REDIS_URL"),
            )
        )
    print(json.dumps(result))


def variants_on(track_versions):
    """The page and echo variants that exist on a track (async views: Django 4.0+)."""
    django_major = int(track_versions["Django"].split(".")[0])
    channels_major = int(track_versions["channels"].split(".")[0])
    pages = list(PAGE_VARIANTS) if django_major >= 4 else ["page"]
    echoes = list(ECHO_VARIANTS) if channels_major >= 4 else ["echo"]
    return pages, echoes


# --- measuring under real servers, in the track's own Python ----------------------------------


def installed_versions():
    import importlib.metadata

    return {
        name: importlib.metadata.version(name)
        for name in ("Django", "channels", "asgiref", "daphne", "uvicorn")
    }


def run_counter(kind, variant, config_name, redis_url=None):
    step = PAGE_STEP if kind == "page" else ECHO_STEP
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), DJANGO_SETTINGS_MODULE="newtest.settings")
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.thread_hops",
            "--count",
            kind,
            variant,
            "--config",
            config_name,
        ],
        cwd=REPO_ROOT / step,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"counting {kind} {variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def load(section, url, clients, config):
    """The load generator's medians for one server: `section` is its mode."""
    from benchmarks.measure_track import medians, run_load_generator

    if section == "broadcast":
        options = {"rounds": config["rounds"], "warmup_rounds": config["warmup_rounds"]}
    else:
        options = {"warmup": config["warmup"], "duration": config["duration"]}
    options["repetitions"] = config["repetitions"]
    options["connections" if section == "http" else "clients"] = clients
    expected = config["warmup"] + config["duration"] * config["repetitions"]
    return medians(run_load_generator(section, [url], options, expected))


def served(server, module_attribute, cwd, config, section, clients):
    from tools.server_process import ServerProcess, free_port
    from tools.step_commands import command_with_address

    port = free_port()
    argv = command_with_address(f"{server} {module_attribute}", port)
    process = ServerProcess(argv, cwd, port, env={"PYTHONPATH": str(REPO_ROOT)})
    process.start()
    try:
        base = process.http_url if section == "http" else process.ws_url
        return load(section, base + PATHS[section], clients, config)
    finally:
        process.stop()


def measure_track(track, config_name):
    """Worker for one track: counts, then every row under daphne and uvicorn, then the echo's
    one-client tail. Returns a dict."""
    from tools.redis_server import RedisServer

    config = config_of(config_name)
    versions = installed_versions()
    pages, echoes = variants_on(versions)
    counts = {variant: run_counter("page", variant, config_name) for variant in pages}
    counts.update({variant: run_counter("echo", variant, config_name) for variant in echoes})
    broadcasts = {
        variant: {"memory": run_counter("broadcast", variant, config_name)} for variant in echoes
    }
    with RedisServer() as redis:
        broadcasts["echo"]["redis"] = run_counter("broadcast", "echo", config_name, redis.url)
    rows = []

    def measured_rows(section, step, variants, labels, clients):
        """The bare floor, then each variant, under each server."""
        for server in config["servers"]:
            subjects = [(FLOORS[section], 0, "bare_asgi_echo:application", BENCHMARKS)]
            for variant in variants:
                hops = (
                    broadcasts[variant]["memory"] if section == "broadcast" else counts[variant]
                )["hops"]
                subjects.append(
                    (labels[variant], hops, f"benchmarks.thread_hops:{variant}", REPO_ROOT / step)
                )
            for subject, hops, attribute, cwd in subjects:
                figures = served(server, attribute, cwd, config, section, clients)
                rows.append(
                    {
                        "section": section,
                        "track": track,
                        "subject": subject,
                        "server": server,
                        "clients": clients,
                        "hops": hops,
                        **figures,
                    }
                )
                print(
                    f"  {track:8} {section:9} {subject[:48]:48} {server:8} clients={clients:<3} "
                    f"hops={hops:<4g} rate={figures['rate']:9.1f}/s "
                    f"p50={figures['p50_ms']:7.3f} ms",
                    file=sys.stderr,
                    flush=True,
                )

    measured_rows("http", PAGE_STEP, pages, PAGE_LABELS, config["http_connections"])
    for clients in config["echo_clients"]:
        measured_rows("echo", ECHO_STEP, echoes, ECHO_LABELS, clients)
    measured_rows("broadcast", ECHO_STEP, echoes, BROADCAST_LABELS, config["broadcast_clients"])
    return {
        "track": track,
        "versions": versions,
        "config": config_name,
        "counts": counts,
        "broadcast_counts": broadcasts,
        "rows": rows,
        "echo_tail": [tail_of(server, config["tail_seconds"]) for server in ASGI_SERVERS],
    }


# --- the table ---------------------------------------------------------------------------------


def find(rows, **wanted):
    return next((r for r in rows if all(r[k] == v for k, v in wanted.items())), None)


def floor_of(rows, row):
    """The bare application's row under the same server, section and clients."""
    return find(
        rows,
        section=row["section"],
        server=row["server"],
        clients=row["clients"],
        subject=FLOORS[row["section"]],
    )


def ratio(row, floor):
    """Time per request or message against the floor's: the floor's rate ÷ this rate."""
    return floor["rate"] / row["rate"]


UNITS = {"http": "request", "echo": "message", "broadcast": "broadcast"}


def table(runs):
    lines = [
        "| Track | Application | Server | clients | thread hops | requests, messages or "
        "deliveries/s | p50 ms | × floor (time per request, message or delivery) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["rows"]:
            floor = floor_of(run["rows"], row)
            shown = "floor" if row is floor else f"{ratio(row, floor):.2f}×"
            lines.append(
                f"| {run['track']} | {row['subject']} | {row['server']} | {row['clients']} | "
                f"{row['hops']:g} per {UNITS[row['section']]} | {row['rate']:,.0f} | "
                f"{row['p50_ms']:.3f} | {shown} |"
            )
    return "\n".join(lines)


# --- daphne's one-client tail: where a slow echo round trip's time goes ----------------------


def serve_with_logs(server_argv, log_prefix):
    """Run a server CLI with every GC collection and every blocking epoll wait logged, with
    time.monotonic() timestamps (one clock for all processes on Linux)."""
    import gc
    import selectors

    gc_log = open(log_prefix + ".gc", "w", buffering=1)
    wait_log = open(log_prefix + ".wait", "w", buffering=1 << 16)
    gc_started = []

    def on_gc(phase, info):
        if phase == "start":
            gc_started[:] = [time.monotonic()]
        elif gc_started:
            gc_log.write(f"{gc_started[0]:.6f} {time.monotonic() - gc_started[0]:.6f}\n")

    gc.callbacks.append(on_gc)
    select = selectors.EpollSelector.select

    def logged_select(selector, timeout=None):
        started = time.monotonic()
        events = select(selector, timeout)
        if timeout is None or timeout > 0:
            wait_log.write(f"{started:.6f} {time.monotonic() - started:.6f} {timeout}\n")
        return events

    selectors.EpollSelector.select = logged_select
    sys.argv = server_argv
    if Path(server_argv[0]).name == "daphne":
        from daphne.cli import CommandLineInterface

        CommandLineInterface.entrypoint()
    else:
        import uvicorn.main

        uvicorn.main.main()


async def timed_echoes(url, seconds):
    """(monotonic send time, round trip seconds) of one client echoing as fast as it can."""
    from websockets.asyncio.client import connect

    samples = []
    async with connect(url, origin="http://127.0.0.1", compression=None) as websocket:
        for phase_seconds, keep in ((0.5, False), (seconds, True)):
            ends = time.monotonic() + phase_seconds
            while time.monotonic() < ends:
                sent = time.monotonic()
                await websocket.send("hello")
                await websocket.recv()
                if keep:
                    samples.append((sent, time.monotonic() - sent))
    return samples


def tail_of(server, seconds=5.0, slow=0.001):
    """One client against the bare ASGI echo under `server`, with the server's GC and epoll
    waits logged: how many round trips took over `slow` seconds, and where their time went."""
    import tempfile

    from tools.server_process import ServerProcess, free_port
    from tools.step_commands import command_with_address

    with tempfile.TemporaryDirectory(prefix="echo-tail-") as scratch:
        prefix = str(Path(scratch) / server)
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "benchmarks.thread_hops",
            "--serve-with-logs",
            prefix,
            "--",
            *command_with_address(f"{server} bare_asgi_echo:application", port),
        ]
        process = ServerProcess(
            argv, BENCHMARKS, port, env={"PYTHONPATH": str(REPO_ROOT)}, name=server
        )
        process.start()
        try:
            samples = asyncio.run(timed_echoes(process.ws_url + "/ws/echo/", seconds))
        finally:
            process.stop()
        collections = [tuple(map(float, line.split())) for line in open(prefix + ".gc")]
        waits = [tuple(map(float, line.split()[:2])) for line in open(prefix + ".wait")]
    trips = sorted(r for _, r in samples)
    slow_trips = [(t, r) for t, r in samples if r > slow]

    def inside(events, t, r, at_least=0.0):
        return any(
            start < t + r and start + length > t and length >= at_least for start, length in events
        )

    return {
        "server": server,
        "round_trips": len(trips),
        "p50_ms": trips[len(trips) // 2] * 1000,
        "p99_ms": trips[int(len(trips) * 0.99)] * 1000,
        "slow": len(slow_trips),
        "slow_ms": slow * 1000,
        "slow_during_gc": sum(inside(collections, t, r) for t, r in slow_trips),
        "slow_server_idle": sum(inside(waits, t, r, at_least=r / 2) for t, r in slow_trips),
        "waits_logged": len(waits),
    }


def tail_table(runs):
    """One line per track and server: how many of one client's round trips took over 1 ms, and
    how many of those overlapped a collection in the server or found it idle in epoll."""
    lines = [
        "| Track | Server | round trips | p50 ms | p99 ms | over 1 ms | during a GC in the "
        "server | server idle in epoll for half or more |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for tail in run["echo_tail"]:
            idle = tail["slow_server_idle"] if tail["waits_logged"] else "not logged"
            lines.append(
                f"| {run['track']} | {tail['server']} | {tail['round_trips']:,} | "
                f"{tail['p50_ms']:.3f} | {tail['p99_ms']:.3f} | {tail['slow']} "
                f"({tail['slow'] / tail['round_trips']:.2%}) | {tail['slow_during_gc']} | {idle} |"
            )
    return "\n".join(lines)


LAYERS = {"memory": "in-memory layer", "redis": "Redis layer"}


def inprocess_table(runs):
    """The counts: thread hops and milliseconds per request, message or broadcast in-process."""
    lines = [
        "| Track | Work | thread hops | ms in-process | hops to a thread |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        track, counts = run["track"], run["counts"]
        for variant, count in counts.items():
            label = PAGE_LABELS.get(variant) or ECHO_LABELS[variant]
            names = ", ".join(f"`{name}`" for name in dict.fromkeys(count["hop_functions"]))
            lines.append(
                f"| {track} | {label}, per {'request' if variant in PAGE_LABELS else 'message'}"
                f" | {count['hops']:g} | {count['inprocess_ms']:.3f} | {names or '–'} |"
            )
            if "wsgi_ms" in count:
                lines.append(f"| {track} | {label} through WSGI | 0 | {count['wsgi_ms']:.3f} | – |")
        for variant, layers in run["broadcast_counts"].items():
            for layer, count in layers.items():
                commands = sum(count["redis_commands"].values())
                names = ", ".join(f"`{name}`" for name in count["hop_functions"])
                lines.append(
                    f"| {track} | step 05 broadcast to {count['clients']}, {LAYERS[layer]}"
                    + ("" if variant == "echo" else ", without the per-message hop")
                    + f" | {count['hops']:g} | {count['inprocess_ms']:.3f} (the layer alone "
                    f"{count['layer_ms']:.3f}"
                    + (f"; {commands:.0f} Redis commands" if commands else "")
                    + f") | {names or '–'} |"
                )
        hop = counts["page"]["hop_us"]
        lines.append(f"| {track} | one hop of an empty function | 1 | {hop / 1000:.3f} | – |")
    return "\n".join(lines)


# --- running it --------------------------------------------------------------------------------


def main():
    from tools.tracks import running_track

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=INPROCESS, default="full")
    parser.add_argument(
        "--count", nargs=2, metavar=("KIND", "VARIANT"), help=argparse.SUPPRESS
    )  # worker
    parser.add_argument(
        "--echo-tail",
        action="store_true",
        help="only where daphne's and uvicorn's slow one-client round trips go",
    )
    parser.add_argument("--serve-with-logs", help=argparse.SUPPRESS)  # worker: a logged server
    args, server_argv = parser.parse_known_args()

    if args.serve_with_logs:
        serve_with_logs([a for a in server_argv if a != "--"], args.serve_with_logs)
    elif args.count:
        count_in_this_process(*args.count, config_of(args.config))
    elif args.echo_tail:
        tails = [tail_of(server) for server in ASGI_SERVERS]
        print(tail_table([{"track": running_track(), "echo_tail": tails}]))
    else:
        runs = [measure_track(running_track(), args.config)]
        for markdown in (table(runs), inprocess_table(runs), tail_table(runs)):
            print(markdown + "\n")


if __name__ == "__main__":
    main()
