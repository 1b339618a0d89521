"""One track's measurements, in that track's own Python: the worker `make benchmark` starts.

    python -m benchmarks.measure_track --track django30 --into /tmp/django30.json --config tiny

benchmarks/run_benchmark.py runs this module once per track with the track's interpreter (so
the servers are that track's daphne, uvicorn and Django). It starts each server under test in
turn on a free 127.0.0.1 port (tools.step_commands, tools.server_process, tools.redis_server),
measures it with benchmarks/load_generator.py in a separate process, and writes the rows as
JSON. With the "thread_hops" section it also runs benchmarks/thread_hops.py's rows.
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.redis_server import RedisServer
from tools.repository import REPO_ROOT
from tools.server_process import ServerProcess, free_port
from tools.step_commands import (
    ASGI_SERVERS,
    command_with_address,
    copy_step,
    migrate,
    step_server,
)
from tools.tracks import TRACKS

BENCHMARKS = REPO_ROOT / "benchmarks"

DEFAULT_OUTPUT = BENCHMARKS / "results"
LOAD_GENERATOR = BENCHMARKS / "load_generator.py"
CHAT_ROOM = "benchmark"

# How long and how hard: "full" is `make benchmark`, "tiny" only proves the machinery works.
CONFIGS = {
    "full": {
        "http_connections": 10,
        "echo_clients": [1, 50],
        "broadcast_clients": 100,
        "warmup": 0.5,
        "duration": 1.0,
        "repetitions": 3,
        "warmup_rounds": 3,
        "rounds": 10,
    },
    # One echo client count, not two: every kind of server start counts, each one taking seconds.
    "tiny": {
        "http_connections": 2,
        "echo_clients": [3],
        "broadcast_clients": 5,
        "warmup": 0.1,
        "duration": 0.3,
        "repetitions": 2,
        "warmup_rounds": 1,
        "rounds": 3,
    },
}
# "thread_hops" runs benchmarks/thread_hops.py in this worker too; "rooms" (benchmarks/
# room_throughput.py) starts its own per-track processes, so run_benchmark.py runs it.
SECTIONS = ("http", "echo", "broadcast", "thread_hops", "rooms")
WORKER_SECTIONS = ("http", "echo", "broadcast", "thread_hops")


@dataclass
class Subject:
    """One thing to measure: which application, started how, reached at which path."""

    name: str
    kind: str  # "step", "bare_asgi", "bare_wsgi" or "websockets"
    path: str
    step: str = ""
    redis: bool = False
    processes: int = 1
    is_floor: bool = False
    # Step 06 stores every message and sends a joining socket the room's history: each of its
    # rows gets a room of its own, in a migrated copy of the step (tools.step_commands).
    stores: bool = False


HTTP_SUBJECTS = [
    Subject("bare page (floor)", "bare_asgi", "/", is_floor=True),
    Subject("step 03 page", "step", "/", step="03"),
]
ECHO_SUBJECTS = [
    Subject("bare ASGI echo (floor)", "bare_asgi", "/ws/echo/", is_floor=True),
    Subject("step 04 router", "step", "/ws/echo/", step="04"),
    Subject("step 05 Channels, in-memory", "step", "/ws/echo/", step="05"),
    Subject("step 05 Channels, Redis", "step", "/ws/echo/", step="05", redis=True),
]
WEBSOCKETS_FLOOR = Subject("websockets library (floor)", "websockets", "/", is_floor=True)
BROADCAST_SUBJECTS = [
    Subject("bare ASGI room (floor)", "bare_asgi", f"/ws/chat/{CHAT_ROOM}/", is_floor=True),
    Subject("step 05, in-memory", "step", f"/ws/chat/{CHAT_ROOM}/", step="05"),
    Subject("step 05, Redis", "step", f"/ws/chat/{CHAT_ROOM}/", step="05", redis=True),
    Subject("step 05, Redis", "step", f"/ws/chat/{CHAT_ROOM}/", step="05", redis=True, processes=2),
    Subject("step 06, in-memory", "step", f"/ws/chat/{CHAT_ROOM}/", step="06", stores=True),
    Subject("step 06, Redis", "step", f"/ws/chat/{CHAT_ROOM}/", step="06", redis=True, stores=True),
]


@dataclass
class Row:
    """One measured line of the results table: medians over the repetitions."""

    section: str
    track: str
    subject: str
    server: str
    clients: int
    processes: int
    is_floor: bool
    rate: float
    p50_ms: float
    p99_ms: float
    repetitions: list = field(default_factory=list)


# --- measuring, in the track's own Python -----------------------------------------------


def server_process(subject, server, redis_url, copies):
    """A ServerProcess (not started) for `subject` under `server` on a free port; a step that
    stores is served from its migrated copy in `copies` ({step: directory})."""
    env = {"REDIS_URL": redis_url} if subject.redis else None
    if subject.kind == "step":
        return step_server(subject.step, server, env=env, directory=copies.get(subject.step))
    port = free_port()
    if subject.kind == "bare_asgi":
        argv = command_with_address(f"{server} bare_asgi_echo:application", port)
    elif subject.kind == "bare_wsgi":
        argv = [sys.executable, "bare_wsgi_page.py", "--port", str(port)]
    elif subject.kind == "websockets":
        argv = [sys.executable, "websockets_echo_server.py", "--port", str(port)]
    else:
        raise ValueError(subject.kind)
    # The bare applications are modules of this directory, started as top-level names
    # (`uvicorn bare_asgi_echo:application`, `python bare_wsgi_page.py`) from it.
    return ServerProcess(argv, BENCHMARKS, port, env=env, name=f"{subject.kind} {server}")


def run_load_generator(mode, urls, options, expected_seconds):
    argv = [sys.executable, str(LOAD_GENERATOR), mode, *urls]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    # A generous bound: a stuck server fails the run instead of hanging it.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=expected_seconds * 3 + 60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)["repetitions"]


def medians(repetitions):
    return {
        key: statistics.median(r[key] for r in repetitions) for key in ("rate", "p50_ms", "p99_ms")
    }


class Servers:
    """Starts the servers of one measurement and always stops them, deleting their logs
    (an access log line per request adds up); if something went wrong, each log's end is
    printed first (the log files are removed when the worker exits)."""

    def __init__(self, processes):
        self.processes = processes

    def __enter__(self):
        try:
            for process in self.processes:
                process.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self.processes

    def __exit__(self, exc_type, *_):
        for process in self.processes:
            process.stop()
            if exc_type is None:
                Path(process.log_path).unlink(missing_ok=True)
            else:
                print(
                    f"--- end of the log of {process.command_line()}:\n"
                    f"{process.log_text()[-3000:]}",
                    file=sys.stderr,
                )


def room_path(subject, server):
    """The path measured: a room of its own for each row of a step that stores messages, so
    that no row's sockets are sent an earlier row's messages as history when they join."""
    if not subject.stores:
        return subject.path
    layer = "redis" if subject.redis else "memory"
    return subject.path.replace(CHAT_ROOM, f"{CHAT_ROOM}-{server}-{layer}-{subject.processes}")


def measure(section, subject, server, clients, config, redis_url, track, copies):
    processes = [
        server_process(subject, server, redis_url, copies) for _ in range(subject.processes)
    ]
    path = room_path(subject, server)
    timing = {k: config[k] for k in ("warmup", "duration", "repetitions")}
    with Servers(processes):
        if section == "http":
            urls = [processes[0].http_url + subject.path]
            options = dict(timing, connections=clients)
            expected = config["warmup"] + config["duration"] * config["repetitions"]
        elif section == "echo":
            urls = [processes[0].ws_url + subject.path]
            options = dict(timing, clients=clients)
            expected = config["warmup"] + config["duration"] * config["repetitions"]
        else:
            urls = [p.ws_url + path for p in processes]
            options = {
                "clients": clients,
                "repetitions": config["repetitions"],
                "rounds": config["rounds"],
                "warmup_rounds": config["warmup_rounds"],
            }
            expected = 10
        repetitions = run_load_generator(section, urls, options, expected)
    row = Row(
        section=section,
        track=track,
        subject=subject.name,
        server=server,
        clients=clients,
        processes=subject.processes,
        is_floor=subject.is_floor,
        repetitions=repetitions,
        **medians(repetitions),
    )
    print(
        f"  {track:8} {section:9} {subject.name:30} {server:9} clients={clients:<3} "
        f"processes={subject.processes} rate={row.rate:9.1f}/s p50={row.p50_ms:7.2f} ms "
        f"p99={row.p99_ms:7.2f} ms",
        flush=True,
    )
    return row


def measurements(sections, config):
    """(section, subject, server, clients) in the order they run: floors first in each group."""
    if "http" in sections:
        for server in ("runserver",) + ASGI_SERVERS:
            for subject in HTTP_SUBJECTS:
                if subject.is_floor and server == "runserver":
                    subject = Subject("bare page (floor)", "bare_wsgi", "/", is_floor=True)
                yield "http", subject, server, config["http_connections"]
    if "echo" in sections:
        for clients in config["echo_clients"]:
            yield "echo", WEBSOCKETS_FLOOR, "websockets", clients
            for server in ASGI_SERVERS:
                for subject in ECHO_SUBJECTS:
                    yield "echo", subject, server, clients
    if "broadcast" in sections:
        for server in ASGI_SERVERS:
            for subject in BROADCAST_SUBJECTS:
                yield "broadcast", subject, server, config["broadcast_clients"]


def versions():
    names = ["Django", "daphne", "channels", "channels-redis", "uvicorn", "websockets", "Twisted"]
    found = {name: importlib.metadata.version(name) for name in names}
    found["redis-server"] = "not installed"
    if shutil.which("redis-server"):
        redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        found["redis-server"] = (
            redis.stdout.split("v=")[1].split()[0] if "v=" in redis.stdout else "?"
        )
    return found


def measure_track(track, config_name, sections, output_json):
    config = CONFIGS[config_name]
    started = time.monotonic()
    # The machine is shared: the load around the run says how much the figures can be trusted.
    load_before = os.getloadavg()[0]
    rows = []
    needs_redis = any(s.redis for _, s, _, _ in measurements(sections, config))
    storing = {s.step for _, s, _, _ in measurements(sections, config) if s.stores}
    with (
        RedisServer() if needs_redis else contextlib.nullcontext() as redis,
        tempfile.TemporaryDirectory(prefix="benchmark-steps-") as scratch,
    ):
        copies = {step: copy_step(step, scratch) for step in sorted(storing)}
        for directory in copies.values():
            migrate(directory, env={"REDIS_URL": ""})
        for section, subject, server, clients in measurements(sections, config):
            rows.append(
                measure(
                    section, subject, server, clients, config, redis and redis.url, track, copies
                )
            )
    result = {
        "track": track,
        "python": platform.python_version(),
        "versions": versions(),
        "rows": [asdict(row) for row in rows],
    }
    if "thread_hops" in sections:
        from benchmarks.thread_hops import measure_track as measure_thread_hops

        print(f"  {track:8} thread hops:", flush=True)
        result["thread_hops"] = measure_thread_hops(track, config_name)
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["seconds"] = time.monotonic() - started
    Path(output_json).write_text(json.dumps(result, indent=1))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--track", required=True, choices=TRACKS)
    parser.add_argument("--into", required=True, type=Path, help="the JSON file to write")
    parser.add_argument("--config", choices=CONFIGS, default="full")
    parser.add_argument(
        "--sections", nargs="+", choices=WORKER_SECTIONS, default=list(WORKER_SECTIONS)
    )
    args = parser.parse_args()
    measure_track(args.track, args.config, args.sections, args.into)


if __name__ == "__main__":
    main()
