"""Room throughput: how much of a busy chat room's traffic reaches everyone, in steps 05 and 06.

    python -m benchmarks.room_throughput                   # both tracks, full sweep, results file
    python -m benchmarks.room_throughput --config tiny --tracks django30 --output /tmp/room.json
    python -m benchmarks.room_throughput --report-from benchmarks/results/room_throughput.json
    python -m benchmarks.room_throughput --update-readmes  # the READMEs' figures, from the file

A room of 50 clients on one server process (daphne or uvicorn; in-memory or Redis channel
layer). Every client sends at 1/50 of the offered rate (50, 100, 200, 500 and 1000 messages/s
into the room) for a few seconds, and every client reads everything. Per offered rate it
reports the share of deliveries that arrived (each message once to each client) and the time
from sending a message until the last client had it (p50 and p99, over the messages that
reached everyone). Step 06's clients do what its page does: they join with ?after=0 and ask
for what a gap in the ids says they missed; its flood control refuses what a client sends past
10 messages/s, and the table says how much.

Each track is measured by its own Python (so the servers are that track's), in a process that
starts every server through tools.step_commands on a free loopback port, serving a migrated
copy of the step (nothing is written into a step directory) and a private redis-server. The
clients (tools/chat_driver.py) run in that process on uvloop, sharing the machine with the
server as a browser on a laptop would. Run from the repository root.
"""

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.provenance import described, provenance
from tools.chat_driver import room_load, stored_texts
from tools.repository import REPO_ROOT, step_directory
from tools.step_commands import copy_step, migrate, step_server
from tools.tracks import TRACKS, running_track, track_python

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "room_throughput.json"
STEPS = ("05", "06")
SERVERS = ("daphne", "uvicorn")
LAYERS = ("memory", "redis")
LAYER_NAMES = {"memory": "in-memory", "redis": "Redis"}
# Step 06 asks its clients to catch up on gaps, as its page does; step 05 has no ids to do it with.
CATCHES_UP = {"05": False, "06": True}

# "full" is the sweep the READMEs quote; "tiny" only proves the machinery works.
CONFIGS = {
    "full": {
        "clients": 50,
        "rates": [50, 100, 200, 300, 500, 1000],
        "seconds": 3.0,
        "settle": 0.5,
        "quiet": 2.0,
        "timeout": 20.0,
    },
    # The rates around step 06's ceiling, for a sweep of a few minutes on a busy machine.
    "ceiling": {
        "clients": 50,
        "rates": [200, 300, 500, 1000],
        "seconds": 3.0,
        "settle": 0.5,
        "quiet": 2.0,
        "timeout": 20.0,
    },
    # Every server and every layer once, not every pairing: half the server starts.
    "tiny": {
        "pairs": [("daphne", "memory"), ("uvicorn", "redis")],
        "clients": 5,
        "rates": [20],
        "seconds": 1.0,
        "settle": 0.3,
        "quiet": 1.0,
        "timeout": 15.0,
    },
}

MARKER = "<!-- room-throughput: step{step} -->"
END_MARKER = "<!-- /room-throughput -->"


# --- measuring, in the track's own Python ---------------------------------------------------


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list (None for an empty one)."""
    if not sorted_values:
        return None
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def run_event_loop(coroutine):
    """uvloop when installed: the cheaper each client is, the more is left for the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def measure_rate(server, step, rate, config, label, directory):
    """One offered rate against one running server: a fresh room, every client sending. For
    step 06, what the database holds afterwards is read too: an accepted message that is not
    stored is lost, whatever the clients saw."""
    clients = config["clients"]
    room = f"bench-{label}-{rate}"
    run = run_event_loop(
        room_load(
            [server.ws_url],
            room,
            clients=clients,
            rate=rate / clients,
            seconds=config["seconds"],
            settle=config["settle"],
            quiet=config["quiet"],
            timeout=config["timeout"],
            label=f"r{rate}",
            catch_up=CATCHES_UP[step],
            # Step 06 answers every message (its copy or a refusal): wait for the answers.
            until_answered=CATCHES_UP[step],
        )
    )
    sent = len(run.sent())
    times = run.times_to_reach_all()
    accepted = run.accepted_texts()
    row = {
        "offered_rate": rate,
        "sent": sent,
        "sent_rate": sent / max(run.sending_done - run.started, config["seconds"]),
        "accepted": len(accepted),
        "refused": len(run.refused_texts()),
        "delivered_fraction": run.delivered_fraction(),
        "reached_all": len(times),
        "p50_ms": None if not times else percentile(times, 0.50) * 1000,
        "p99_ms": None if not times else percentile(times, 0.99) * 1000,
        "errors": sum(len(c.errors()) for c in run.clients),
        # A client that was sent one text under two ids would show it twice.
        "duplicated": sum(
            len(client.texts()) - len(set(client.texts())) - repeated_ids(client)
            for client in run.clients
        ),
        "load_average": round(os.getloadavg()[0], 2),
    }
    if step == "06":
        texts = stored_texts(directory, room)
        row["stored"] = len(texts)
        # Lost: a sender heard its own copy back, and the database does not hold it.
        row["lost"] = len(run.confirmed_texts() - set(texts))
        # Unanswered when the clients stopped waiting: neither its copy nor a refusal came back.
        row["unanswered"] = len(run.unanswered())
        row["stored_twice"] = len(texts) - len(set(texts))
        row["refused_but_stored"] = len(run.refused_texts() & set(texts))
    return row


def repeated_ids(client):
    """Frames of a message the client already had under the same id: a catch-up answer
    overlapping what arrived live; the page keeps one."""
    return sum(count - 1 for count in client.deliveries().values())


def measure_track(config, steps, servers, layers):
    """Every step of this track under every (server, layer) pairing (the configuration's
    "pairs", if it names some), at every offered rate; returns the rows."""
    from tools.redis_server import RedisServer

    track = running_track()
    rows = []
    with tempfile.TemporaryDirectory(prefix="room-throughput-") as scratch:
        copies = {}
        for step in steps:
            copies[step] = copy_step(step, Path(scratch) / f"step{step}")
            migrate(copies[step], env={"REDIS_URL": ""})
        redis = RedisServer().start() if "redis" in layers else None
        try:
            pairs = [
                (server_name, layer)
                for server_name in servers
                for layer in layers
                if (server_name, layer) in config.get("pairs", [(server_name, layer)])
            ]
            for step in steps:
                for server_name, layer in pairs:
                    env = {"REDIS_URL": redis.url if layer == "redis" else ""}
                    server = step_server(step, server_name, env=env, directory=copies[step])
                    with server:
                        for rate in config["rates"]:
                            row = {
                                "track": track,
                                "step": step,
                                "server": server_name,
                                "layer": layer,
                                "clients": config["clients"],
                                "seconds": config["seconds"],
                            }
                            row.update(
                                measure_rate(
                                    server,
                                    step,
                                    rate,
                                    config,
                                    f"{server_name}-{layer}",
                                    copies[step],
                                )
                            )
                            rows.append(row)
                            print(describe(row), flush=True)
        finally:
            if redis is not None:
                redis.stop()
    return rows


def versions():
    names = ["Django", "daphne", "channels", "channels-redis", "uvicorn", "websockets"]
    return {name: importlib.metadata.version(name) for name in names}


def machine():
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def run_tracks(tracks, config_name, steps=STEPS, servers=SERVERS, layers=LAYERS):
    """Measures each track in a process of its own (that track's Python); returns the summary."""
    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    measured = provenance()  # before measuring: the code that runs
    runs = []
    with tempfile.TemporaryDirectory(prefix="room-throughput-") as scratch:
        for track in tracks:
            print(f"track {track}:", flush=True)
            into = Path(scratch) / f"{track}.json"
            subprocess.run(
                [
                    str(track_python(track)),
                    "-m",
                    "benchmarks.room_throughput",
                    "--measure-into",
                    str(into),
                    "--config",
                    config_name,
                    "--steps",
                    *steps,
                    "--servers",
                    *servers,
                    "--layers",
                    *layers,
                ],
                check=True,
                cwd=REPO_ROOT,
            )
            runs.append(json.loads(into.read_text()))
    return {
        "date": date,  # when the run started
        "provenance": measured,
        "machine": machine(),
        "config_name": config_name,
        "config": CONFIGS[config_name],
        "seconds": round(time.monotonic() - started),
        "tracks": runs,
    }


# --- reporting ---------------------------------------------------------------------------------


def all_rows(summary):
    return [row for run in summary["tracks"] for row in run["rows"]]


def describe(row):
    """One console line per measurement."""
    times = (
        "no message reached everyone"
        if row["p50_ms"] is None
        else (f"p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms")
    )
    stored = (
        f", {row['stored']} stored, {row['lost']} lost, {row['stored_twice']} stored twice, "
        f"{row.get('unanswered', 0)} unanswered"
        if "stored" in row
        else ""
    )
    return (
        f"  step {row['step']} {row['track']:8} {row['server']:7} {row['layer']:6} "
        f"{row['offered_rate']:5}/s offered ({row['sent_rate']:6.0f}/s sent): "
        f"{row['refused'] / max(row['sent'], 1):4.0%} refused, "
        f"{row['delivered_fraction']:6.1%} delivered, {times}{stored}, "
        f"{row.get('duplicated', 0)} duplicated (load {row.get('load_average', '?')})"
    )


def render_table(summary):
    return "\n".join(describe(row) for row in all_rows(summary))


def cell(row):
    """A table cell: delivered share, p50 / p99 time to reach everyone, and what was refused."""
    parts = [f"{row['delivered_fraction']:.0%}"]
    if row["p50_ms"] is None:
        parts.append("none reached all")
    else:
        parts.append(f"{format_ms(row['p50_ms'])} / {format_ms(row['p99_ms'])}")
    if row["refused"]:
        share = row["refused"] / row["sent"]
        parts.append(f"{share:.0%} refused" if share >= 0.01 else f"{row['refused']} refused")
    if row.get("unanswered"):
        parts.append(f"{row['unanswered']} unanswered")
    if row.get("lost") or row.get("stored_twice") or row.get("duplicated"):
        parts.append(
            f"{row.get('lost', 0)} lost, {row.get('stored_twice', 0)} stored twice, "
            f"{row.get('duplicated', 0)} duplicated"
        )
    if row["sent_rate"] < 0.9 * row["offered_rate"]:
        parts.append(f"sent {row['sent_rate']:.0f}/s")
    return " · ".join(parts)


def format_ms(ms):
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def render_block(summary, step):
    """The Markdown the step's README shows between its room-throughput markers."""
    step = f"{int(step):02d}"
    rows = [row for row in all_rows(summary) if row["step"] == step]
    if not rows:
        raise ValueError(f"the results have no rows for step {step}")
    rates = sorted({row["offered_rate"] for row in rows})
    config = summary["config"]
    machine_ = summary["machine"]
    lines = [
        f"Measured {summary['date']}{commit_note(summary)} on {machine_['cpu']} "
        f"({machine_['cores']} cores) by "
        f"`python -m benchmarks.room_throughput` (configuration `{summary['config_name']}`): "
        f"a room of {config['clients']} clients on one server process, every client sending "
        f"its share of the offered rate for {config['seconds']:g} s and reading everything. "
        "Each cell: the share of deliveries that arrived (every message once to every client), "
        "then p50 / p99 of the time from sending a message until the last client had it. "
        f"The clients wait at most {config['timeout']:g} s after the last message is sent "
        "(less once the room has been quiet for "
        f"{config['quiet']:g} s): a share below 100% is what had not arrived by then."
        + load_note(summary),
        "",
        "| Track | Server | Layer | " + " | ".join(f"{rate}/s" for rate in rates) + " |",
        "|---|---|---|" + "---|" * len(rates),
    ]
    keys = []
    for row in rows:
        key = (row["track"], row["server"], row["layer"])
        if key not in keys:
            keys.append(key)
    for track, server, layer in keys:
        by_rate = {
            r["offered_rate"]: r
            for r in rows
            if (r["track"], r["server"], r["layer"]) == (track, server, layer)
        }
        cells = [cell(by_rate[rate]) if rate in by_rate else "" for rate in rates]
        lines.append(f"| {track} | {server} | {LAYER_NAMES[layer]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def commit_note(summary):
    """at commit <sha> (and whether the tree had changes besides), when the results say."""
    record = summary.get("provenance")
    return f" at {described(record)}" if record else ""


def load_note(summary):
    """How busy the machine was (1-minute load average before and after each track's run)."""
    loads = [
        f"{run['track']} {run['load_average'][0]:g} and {run['load_average'][1]:g}"
        for run in summary["tracks"]
        if "load_average" in run
    ]
    if not loads:
        return ""
    return (
        f" On {summary['machine']['cores']} cores, the 1-minute load average before and after "
        "each track's run (the run's own work counts in it; above the number of cores, other "
        "work shared them): " + "; ".join(loads) + "."
    )


def replace_block(text, step, block):
    """`text` (a README) with the block after its room-throughput marker replaced by `block`."""
    marker = MARKER.format(step=f"{int(step):02d}")
    pattern = re.compile(re.escape(marker) + r"\n.*?" + re.escape(END_MARKER), re.S)
    if marker not in text:
        raise ValueError(f"no {marker} line")
    if not pattern.search(text):
        # The marker alone, as the README's author left it: the block goes right after it.
        return text.replace(marker, f"{marker}\n{block}{END_MARKER}", 1)
    return pattern.sub(lambda _: f"{marker}\n{block}{END_MARKER}", text, count=1)


def shown_block(text, step):
    """The block a README shows after its room-throughput marker (None if there is none)."""
    marker = MARKER.format(step=f"{int(step):02d}")
    match = re.search(re.escape(marker) + r"\n(.*?)" + re.escape(END_MARKER), text, re.S)
    return match and match.group(1)


def update_readmes(summary, steps=STEPS):
    written = []
    for step in steps:
        readme = step_directory(step) / "README.md"
        text = readme.read_text()
        new = replace_block(text, step, render_block(summary, step))
        if new != text:
            readme.write_text(new)
            written.append(readme)
    return written


def load_results(path=DEFAULT_RESULTS):
    return json.loads(Path(path).read_text())


# --- command line ------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.room_throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tracks", nargs="+", choices=TRACKS, default=list(TRACKS))
    parser.add_argument(
        "--config",
        choices=CONFIGS,
        default="full",
        help="tiny: 5 clients, one rate, 1 s: proves the machinery in seconds",
    )
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"results file (default {DEFAULT_RESULTS.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--report-from",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: print a results file's table and README blocks",
    )
    parser.add_argument(
        "--update-readmes",
        action="store_true",
        help="write the figures of the results file into the step READMEs",
    )
    parser.add_argument("--measure-into", help=argparse.SUPPRESS)  # internal: one track's worker
    args = parser.parse_args(argv)

    if args.measure_into:
        config = CONFIGS[args.config]
        # The machine is shared: the load around the run says how much the figures can be trusted.
        load_before = os.getloadavg()[0]
        rows = measure_track(config, args.steps, args.servers, args.layers)
        measured = {
            "track": running_track(),
            "versions": versions(),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "rows": rows,
        }
        Path(args.measure_into).write_text(json.dumps(measured, indent=1))
        return
    if args.report_from or args.update_readmes:
        summary = load_results(args.report_from or args.output)
        print(render_table(summary))
        for step in sorted({row["step"] for row in all_rows(summary)}):
            print(f"\n{MARKER.format(step=step)}\n{render_block(summary, step)}{END_MARKER}")
        if args.update_readmes:
            for readme in update_readmes(summary):
                print(f"wrote {readme.relative_to(REPO_ROOT)}")
        return

    summary = run_tracks(args.tracks, args.config, args.steps, args.servers, args.layers)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=1) + "\n")
    print(render_table(summary))
    print(f"done in {summary['seconds']} s; wrote {args.output}")


if __name__ == "__main__":
    main()
