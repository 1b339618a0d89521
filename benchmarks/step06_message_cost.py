"""Where one chat message's time goes in step 06: each part timed on its own, per call.

    python -m benchmarks.step06_message_cost                 # both tracks, results file
    python -m benchmarks.step06_message_cost --tracks django30 --calls 100 --output /tmp/cost.json
    python -m benchmarks.step06_message_cost --update-readme   # step 06's README, from the file

A busy room's figures (benchmarks/room_throughput.py) say how late messages are; these say why.
Each part of handling one message is timed call by call, in a process of the track's own Python
run from a migrated copy of step 06 (nothing is written into the step directory), with the
step's settings: opening the SQLite connection (what CONN_MAX_AGE 0 does around every
database_sync_to_async call), the INSERT, the previous_id query and the commit in SQLite's
default rollback journal and in WAL (synchronous NORMAL and FULL), Django's debug cursor (DEBUG
on), the consumer's call as it is made (one thread hop, connection opened and closed), a bare
thread hop (Channels 4 makes one before every handler, each group event included), storing a
burst of 20 in one transaction, encoding a frame to JSON, and a catch-up answer of 500 messages.

Per-call medians are much less sensitive to a busy machine than throughput is; the load
average before and after each track's run is recorded beside them anyway.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.provenance import described, provenance
from tools.repository import REPO_ROOT, step_directory
from tools.tracks import TRACKS, track_python

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "step06_message_cost.json"
BURST = 20  # messages stored in one transaction in the burst rows
RECIPIENTS = 50  # a room of 50: how many times a frame is encoded when each socket encodes it
CATCH_UP = 500  # messages in one catch-up answer (chat/history.py's CATCH_UP_LIMIT)
MARKER = "<!-- message-cost: step06 -->"
END_MARKER = "<!-- /message-cost -->"
JOURNALS = {
    "rollback journal": ("delete", "full"),  # SQLite's default
    "WAL, synchronous FULL": ("wal", "full"),
    "WAL, synchronous NORMAL": ("wal", "normal"),
}


# --- measuring, in the track's own Python, from a copy of step 06 ------------------------------


def timed(function, calls):
    """function() `calls` times; the per-call times in milliseconds, sorted."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


async def timed_async(function, calls):
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await function()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


def summary(times, per=1):
    """Median and 90th percentile of per-call times, divided by `per` (items in a call)."""
    return {
        "median_ms": statistics.median(times) / per,
        "p90_ms": times[int(0.9 * (len(times) - 1))] / per,
        "calls": len(times),
    }


def set_journal(connection, journal_mode, synchronous):
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA journal_mode={journal_mode}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")


def measure_here(calls):
    """Worker: run from a migrated copy of step 06 (its directory on sys.path)."""
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newtest.settings")
    import django

    django.setup()
    from asgiref.sync import sync_to_async
    from channels.db import database_sync_to_async
    from django.conf import settings
    from django.db import close_old_connections, connection, transaction

    from chat import history
    from chat.models import Message

    rows = {}
    room = "cost"

    def row(name, times, per=1, **facts):
        rows[name] = {**summary(times, per), **facts}

    def next_text():
        next_text.number += 1
        return f"message {next_text.number}"

    next_text.number = 0

    def insert():
        return Message.objects.create(room=room, text=next_text(), author="")

    # Opening the connection: what CONN_MAX_AGE 0 repeats for every call of the consumer's.
    def reconnect():
        connection.close()
        connection.ensure_connection()

    row("open a connection", timed(reconnect, calls))

    # INSERT, previous_id and commit, apart, in each journal mode; DEBUG as the step has it.
    for label, (journal_mode, synchronous) in JOURNALS.items():
        set_journal(connection, journal_mode, synchronous)
        parts = {"INSERT": [], "previous_id query": [], "commit": []}
        for _ in range(calls):
            started = time.perf_counter()
            with transaction.atomic():
                message = insert()
                inserted = time.perf_counter()
                history.previous_id(room, message.id)
                queried = time.perf_counter()
            committed = time.perf_counter()
            parts["INSERT"].append((inserted - started) * 1000)
            parts["previous_id query"].append((queried - inserted) * 1000)
            parts["commit"].append((committed - queried) * 1000)
        for part, times in parts.items():
            row(f"{part}, {label}", sorted(times))
        # store_message as chat/history.py does it (autocommit: the INSERT commits on its own).
        row(
            f"store_message, {label}",
            timed(lambda: history.store_message(room, next_text()), calls),
        )

        def burst():
            with transaction.atomic():
                for _ in range(BURST):
                    message = insert()
                    history.previous_id(room, message.id)

        row(
            f"{BURST} messages in one transaction, per message, {label}",
            timed(burst, calls // 10 or 1),
            per=BURST,
        )

    # Step 06's writer (chat/message_writer.py), when the step has it: a burst in one INSERT.
    set_journal(connection, "wal", "normal")
    if hasattr(history, "store_messages"):
        row(
            f"store_messages of {BURST} (one INSERT), per message, WAL, synchronous NORMAL",
            timed(
                lambda: history.store_messages(
                    [(room, next_text(), None, "") for _ in range(BURST)]
                ),
                calls // 10 or 1,
            ),
            per=BURST,
        )

    # Django's debug cursor (DEBUG = True records every query): the same store without it.
    debug = settings.DEBUG
    settings.DEBUG = False
    row(
        "store_message, WAL NORMAL, DEBUG off",
        timed(lambda: history.store_message(room, next_text()), calls),
    )
    settings.DEBUG = debug
    connection.close()

    # The consumer's call as it makes it: a thread hop, the connection opened and closed around.
    async def consumer_calls():
        store = database_sync_to_async(history.store_message)
        return await timed_async(lambda: store(room, next_text()), calls)

    by_age = {}
    for conn_max_age in (0, None):
        connection.close()  # Django's connection follows the code into asgiref's thread
        connection.settings_dict["CONN_MAX_AGE"] = conn_max_age
        by_age[conn_max_age] = asyncio.run(consumer_calls())
    row("database_sync_to_async(store_message), CONN_MAX_AGE 0", by_age[0])
    row("database_sync_to_async(store_message), CONN_MAX_AGE None", by_age[None])

    # A bare thread hop, and the one Channels 4 makes before every handler it calls.
    async def hops():
        nothing = database_sync_to_async(lambda: None)
        closing = sync_to_async(close_old_connections)
        return await timed_async(nothing, calls * 5), await timed_async(closing, calls * 5)

    bare, closing = asyncio.run(hops())
    row("thread hop (database_sync_to_async of nothing)", bare)
    row("Channels 4's hop before a handler (close_old_connections)", closing)

    # Encoding: the consumer json.dumps a frame once per socket it sends to.
    frame = history.store_message(room, "a chat message of an ordinary length, say this one")
    row("encode one frame to JSON", timed(lambda: json.dumps(frame), calls * 20))
    row(
        f"encode one frame for each of {RECIPIENTS} sockets",
        timed(lambda: [json.dumps(frame) for _ in range(RECIPIENTS)], calls),
    )

    # A catch-up answer: the page's {"after": <id>} when it is far behind, and its encoding.
    first = Message.objects.filter(room=room).order_by("id").values_list("id", flat=True)[0]
    row(
        f"catch-up answer of {CATCH_UP} messages (query and frames)",
        timed(lambda: history.messages_after(room, first), max(5, calls // 20)),
    )
    answer = history.messages_after(room, first)
    row(
        f"encode a catch-up answer of {CATCH_UP} messages",
        timed(lambda: [json.dumps(m) for m in answer], max(5, calls // 20)),
    )
    return rows


# --- running every track -----------------------------------------------------------------------


def measure_track(track, calls):
    """Measures `track` in its own Python, from a fresh migrated copy of step 06."""
    from tools.step_commands import copy_step, migrate

    with tempfile.TemporaryDirectory(prefix="message-cost-") as scratch:
        copy = copy_step("06", scratch)
        migrate(copy, env={"REDIS_URL": ""})
        load_before = os.getloadavg()[0]
        result = subprocess.run(
            [
                str(track_python(track)),
                "-m",
                "benchmarks.step06_message_cost",
                "--worker",
                str(calls),
            ],
            cwd=copy,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), REDIS_URL=""),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"measuring {track} failed:\n{result.stderr[-3000:]}")
        return {
            "track": track,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "rows": json.loads(result.stdout.strip().splitlines()[-1]),
        }


def committed_results():
    """The committed results file's contents, or None if there is none."""
    return json.loads(DEFAULT_RESULTS.read_text()) if DEFAULT_RESULTS.exists() else None


def render(results):
    """The Markdown table step 06's README shows between its message-cost markers."""
    tracks = results["tracks"]
    lines = [
        f"Measured {results['date']} at {described(results['provenance'])} by "
        f"`python -m benchmarks.step06_message_cost` ({results['cores']} cores; the 1-minute "
        "load average before and after each track's run, its own work included: "
        + "; ".join(
            f"{t['track']} {t['load_average'][0]:g} and {t['load_average'][1]:g}" for t in tracks
        )
        + "). Each cell: milliseconds per call, median (90th percentile).",
        "",
        "| part of one message | " + " | ".join(t["track"] for t in tracks) + " |",
        "|---|" + "---|" * len(tracks),
    ]
    for name in tracks[0]["rows"]:
        cells = []
        for track in tracks:
            row = track["rows"].get(name)
            cells.append("" if row is None else f"{row['median_ms']:.3f} ({row['p90_ms']:.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def shown_block(text):
    """The block step 06's README shows after its message-cost marker (None if none)."""
    start = text.find(MARKER + "\n")
    end = text.find(END_MARKER, start)
    return None if start < 0 or end < 0 else text[start + len(MARKER) + 1 : end]


def update_readme(results):
    readme = step_directory("06") / "README.md"
    text = readme.read_text()
    old = shown_block(text)
    if old is None:
        if MARKER not in text:
            raise ValueError(f"step 06's README has no {MARKER} line")
        new = text.replace(MARKER, f"{MARKER}\n{render(results)}{END_MARKER}", 1)
    else:
        new = text.replace(
            f"{MARKER}\n{old}{END_MARKER}", f"{MARKER}\n{render(results)}{END_MARKER}", 1
        )
    readme.write_text(new)
    return readme


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.step06_message_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tracks", nargs="+", choices=TRACKS, default=list(TRACKS))
    parser.add_argument("--calls", type=int, default=300, help="calls timed per row (default 300)")
    parser.add_argument("--output", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--report-from", type=Path, metavar="RESULTS_JSON")
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="measure nothing: write the results file's table into step 06's README",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # internal: one track
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure_here(args.worker)))
        return
    if args.report_from or args.update_readme:
        results = json.loads((args.report_from or args.output).read_text())
        print(render(results))
        if args.update_readme:
            print(f"wrote {update_readme(results).relative_to(REPO_ROOT)}")
        return
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "provenance": provenance(),  # before measuring: the code that runs
        "cores": os.cpu_count(),
        "tracks": [measure_track(track, args.calls) for track in args.tracks],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
