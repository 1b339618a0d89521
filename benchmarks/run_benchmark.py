"""`make benchmark`: measure the tutorial's servers and steps side by side, on this machine.

    python benchmarks/run_benchmark.py                      # both tracks, into benchmarks/results/
    python benchmarks/run_benchmark.py --tracks django30    # one track
    python benchmarks/run_benchmark.py --config tiny --output /tmp/bench   # seconds, for tests

For each track it starts a process running this file with that track's Python (so the
servers are that track's daphne, uvicorn and Django), which starts each server under test
in turn on a free 127.0.0.1 port (tools/step_server.py, tools/redis_server.py) and measures
it with benchmarks/load_generator.py, run as a separate process. Then it writes
results/results.md, results/results.json and results/benchmark.png, and puts the table and
chart into benchmarks/README.md. benchmarks/README.md explains the method.
"""

import argparse
import contextlib
import datetime
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

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
sys.path.insert(0, str(REPO_ROOT / "tools"))

from redis_server import RedisServer  # noqa: E402
from step_server import ServerProcess, command_with_address, free_port, step_server  # noqa: E402

DEFAULT_OUTPUT = BENCHMARKS / "results"
TRACKS = ("django30", "current")
LOAD_GENERATOR = BENCHMARKS / "load_generator.py"
ASGI_SERVERS = ("daphne", "uvicorn")
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
    "tiny": {
        "http_connections": 2,
        "echo_clients": [1, 3],
        "broadcast_clients": 5,
        "warmup": 0.1,
        "duration": 0.3,
        "repetitions": 2,
        "warmup_rounds": 1,
        "rounds": 3,
    },
}
SECTIONS = ("http", "echo", "broadcast")


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


def server_process(subject, server, redis_url):
    """A ServerProcess (not started) for `subject` under `server` on a free port."""
    env = {"REDIS_URL": redis_url} if subject.redis else None
    if subject.kind == "step":
        return step_server(subject.step, server, env=env)
    port = free_port()
    if subject.kind == "bare_asgi":
        argv = command_with_address(f"{server} bare_asgi_echo:application", port)
    elif subject.kind == "bare_wsgi":
        argv = [sys.executable, "bare_wsgi_page.py", "--port", str(port)]
    elif subject.kind == "websockets":
        argv = [sys.executable, "websockets_echo_server.py", "--port", str(port)]
    else:
        raise ValueError(subject.kind)
    return ServerProcess(argv, BENCHMARKS, port, env=env)


def run_load_generator(mode, urls, options, expected_seconds):
    argv = [sys.executable, str(LOAD_GENERATOR), mode, *urls]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    # A generous bound: a stuck server fails the run instead of hanging it.
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=expected_seconds * 3 + 60
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)["repetitions"]


def medians(repetitions):
    return {key: statistics.median(r[key] for r in repetitions) for key in ("rate", "p50_ms", "p99_ms")}


class Servers:
    """Starts the servers of one measurement and always stops them, deleting their logs
    (an access log line per request adds up) unless something went wrong."""

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
                Path(process.log_file.name).unlink(missing_ok=True)
            else:
                print(f"server log kept: {process.log_file.name}", file=sys.stderr)


def measure(section, subject, server, clients, config, redis_url, track):
    processes = [server_process(subject, server, redis_url) for _ in range(subject.processes)]
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
            urls = [p.ws_url + subject.path for p in processes]
            options = {
                "clients": clients,
                "repetitions": config["repetitions"],
                "rounds": config["rounds"],
                "warmup_rounds": config["warmup_rounds"],
            }
            expected = 10
        repetitions = run_load_generator(section, urls, options, expected)
    row = Row(
        section=section, track=track, subject=subject.name, server=server, clients=clients,
        processes=subject.processes, is_floor=subject.is_floor, repetitions=repetitions,
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
        found["redis-server"] = redis.stdout.split("v=")[1].split()[0] if "v=" in redis.stdout else "?"
    return found


def measure_track(track, config_name, sections, output_json):
    config = CONFIGS[config_name]
    started = time.monotonic()
    rows = []
    needs_redis = any(s.redis for _, s, _, _ in measurements(sections, config))
    with RedisServer() if needs_redis else contextlib.nullcontext() as redis:
        for section, subject, server, clients in measurements(sections, config):
            rows.append(measure(section, subject, server, clients, config, redis and redis.url, track))
    Path(output_json).write_text(json.dumps({
        "track": track,
        "python": platform.python_version(),
        "versions": versions(),
        "seconds": time.monotonic() - started,
        "rows": [asdict(row) for row in rows],
    }, indent=1))


# --- running every track, then writing the results ----------------------------------------


def track_python(track):
    python = REPO_ROOT / ".venv" / track / "bin" / "python"
    if not python.exists():
        sys.exit(f"no environment for track {track}: run `make env TRACK={track}` first")
    return python


def machine():
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", nargs="+", choices=TRACKS, default=list(TRACKS))
    parser.add_argument("--config", choices=CONFIGS, default="full")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--report-from", type=Path, metavar="RESULTS_JSON",
        help="measure nothing: rewrite the table, chart and README from an earlier results.json",
    )
    parser.add_argument("--measure-track", help=argparse.SUPPRESS)  # internal: one track's worker
    parser.add_argument("--measure-into", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure_track:
        measure_track(args.measure_track, args.config, args.sections, args.measure_into)
        return

    from results_report import write_results

    readme = BENCHMARKS / "README.md" if args.output.resolve() == DEFAULT_OUTPUT else None
    if args.report_from:
        summary = json.loads(args.report_from.read_text())
        print("wrote " + ", ".join(str(p) for p in write_results(summary, args.output, readme)))
        return

    if {"echo", "broadcast"} & set(args.sections) and not shutil.which("redis-server"):
        sys.exit("redis-server is not installed (sudo apt-get install redis-server); "
                 "or measure HTTP only: --sections http")
    started = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="benchmark-") as scratch:
        for track in args.tracks:
            print(f"track {track}:", flush=True)
            into = Path(scratch) / f"{track}.json"
            subprocess.run([
                str(track_python(track)), __file__, "--measure-track", track,
                "--measure-into", str(into), "--config", args.config,
                "--sections", *args.sections,
            ], check=True)
            runs.append(json.loads(into.read_text()))
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "config_name": args.config,
        "config": CONFIGS[args.config],
        "seconds": time.monotonic() - started,
        "tracks": runs,
    }
    written = write_results(summary, args.output, readme)
    print(f"done in {summary['seconds']:.0f} s; wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
