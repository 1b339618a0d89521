"""`make benchmark`: measure the tutorial's servers and steps side by side, on this machine.

    python -m benchmarks.run_benchmark                      # both tracks, into benchmarks/results/
    python -m benchmarks.run_benchmark --tracks django30    # one track
    python -m benchmarks.run_benchmark --config tiny --output /tmp/bench   # seconds, for tests
    python -m benchmarks.run_benchmark --report-from benchmarks/results/results.json \
        --rooms-from benchmarks/results/room_throughput.json   # rooms from a run of their own

Run from the repository root (`make benchmark` does). For each track it runs
benchmarks/measure_track.py with that track's Python (so the servers are that track's daphne,
uvicorn and Django), then benchmarks/room_throughput.py's sweep of steps 05 and 06 (section
"rooms"). Then it writes results/results.md, results/results.json (with the commit measured and
whether the tree was clean: benchmarks/provenance.py) and results/benchmark.png, and puts the
chart into benchmarks/README.md. benchmarks/README.md explains the method.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.measure_track import CONFIGS, SECTIONS, WORKER_SECTIONS
from benchmarks.provenance import provenance
from tools.repository import REPO_ROOT
from tools.tracks import TRACKS, track_python

BENCHMARKS = REPO_ROOT / "benchmarks"
DEFAULT_OUTPUT = BENCHMARKS / "results"


def track_interpreter(track):
    python = track_python(track)
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracks", nargs="+", choices=TRACKS, default=list(TRACKS))
    parser.add_argument("--config", choices=CONFIGS, default="full")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--report-from",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: rewrite the table, chart and README from an earlier results.json",
    )
    parser.add_argument(
        "--rooms-from",
        type=Path,
        metavar="ROOM_THROUGHPUT_JSON",
        help="the rooms section from a results file of `python -m benchmarks.room_throughput` "
        "(a run of its own, with its own commit and load) instead of measuring it here",
    )
    args = parser.parse_args()
    rooms_from = json.loads(args.rooms_from.read_text()) if args.rooms_from else None

    from benchmarks.results_report import write_results

    readme = BENCHMARKS / "README.md" if args.output.resolve() == DEFAULT_OUTPUT else None
    if args.report_from:
        summary = json.loads(args.report_from.read_text())
        if rooms_from:
            summary["room_throughput"] = rooms_from
        print("wrote " + ", ".join(str(p) for p in write_results(summary, args.output, readme)))
        return

    if {"echo", "broadcast"} & set(args.sections) and not shutil.which("redis-server"):
        sys.exit(
            "redis-server is not installed (sudo apt-get install redis-server); "
            "or measure HTTP only: --sections http"
        )
    started = time.monotonic()
    measured = provenance()  # the code as it was when measuring began
    runs = []
    with tempfile.TemporaryDirectory(prefix="benchmark-") as scratch:
        for track in args.tracks:
            print(f"track {track}:", flush=True)
            into = Path(scratch) / f"{track}.json"
            subprocess.run(
                [
                    str(track_interpreter(track)),
                    "-m",
                    "benchmarks.measure_track",
                    "--track",
                    track,
                    "--into",
                    str(into),
                    "--config",
                    args.config,
                    "--sections",
                    *[s for s in args.sections if s in WORKER_SECTIONS],
                ],
                check=True,
                cwd=REPO_ROOT,
            )
            runs.append(json.loads(into.read_text()))
    rooms = rooms_from
    if "rooms" in args.sections and rooms_from is None:
        from benchmarks.room_throughput import run_tracks as measure_rooms

        print("chat room throughput, steps 05 and 06:", flush=True)
        rooms = measure_rooms(args.tracks, args.config)
    summary = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "provenance": measured,
        "machine": machine(),
        "config_name": args.config,
        "config": CONFIGS[args.config],
        "seconds": time.monotonic() - started,
        "tracks": runs,
    }
    if rooms is not None:
        summary["room_throughput"] = rooms
    written = write_results(summary, args.output, readme)
    print(f"done in {summary['seconds']:.0f} s; wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
