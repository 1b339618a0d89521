"""Turns one benchmark run into results.md (the conditions and the code measured, the tables,
benchmarks/ratio_causes.py's verdicts, an appendix of the figures behind them), results.json and
benchmark.png, and puts the chart and a pointer into benchmarks/README.md between its results
markers. The rows are read through benchmarks/figures.py.
"""

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks import (  # noqa: E402
    ratio_causes,
    room_throughput,
    step06_message_cost,
    thread_hops,
)
from benchmarks.figures import (  # noqa: E402
    ASGI_SERVERS,
    BARE_ECHO,
    STEP04,
    STEP05_MEMORY,
    STEP05_REDIS,
    all_rows,
    find,
    floors,
    latency_ratio,
    milliseconds,
    number,
    time_per_message_ratio,
    times,
)
from benchmarks.provenance import described  # noqa: E402

README_START = "<!-- results start: written by run_benchmark.py, do not edit by hand -->"
README_END = "<!-- results end -->"


# --- the Markdown -------------------------------------------------------------------------


def table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(cell) for cell in line) + " |" for line in lines]
    return "\n".join(out)


def ratio_cell(row, floor):
    if floor is None:
        return "–"
    if floor is row:
        return "floor"
    return f"{times(latency_ratio(row, floor))} / {times(time_per_message_ratio(row, floor))}"


def http_table(rows):
    lines = []
    for row in (r for r in rows if r["section"] == "http"):
        floor = floors(rows, row).get("floor")
        lines.append(
            [
                row["track"],
                row["subject"],
                row["server"],
                number(row["rate"]),
                milliseconds(row["p50_ms"]),
                milliseconds(row["p99_ms"]),
                ratio_cell(row, floor),
            ]
        )
    return table(
        [
            "Track",
            "Application",
            "Server",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "× floor (p50 / time per request)",
        ],
        lines,
    )


def echo_table(rows, clients):
    lines = []
    for row in (r for r in rows if r["section"] == "echo" and r["clients"] == clients):
        found = floors(rows, row)
        lines.append(
            [
                row["track"],
                row["subject"],
                row["server"],
                number(row["rate"]),
                milliseconds(row["p50_ms"]),
                milliseconds(row["p99_ms"]),
                ratio_cell(row, found.get("bare ASGI")),
                ratio_cell(row, found.get("websockets")),
            ]
        )
    return table(
        [
            "Track",
            "Application",
            "Server",
            "messages/s",
            "p50 ms",
            "p99 ms",
            "× bare ASGI echo, same server (p50 / time per message)",
            "× websockets library (p50 / time per message)",
        ],
        lines,
    )


def broadcast_table(rows):
    lines = []
    for row in (r for r in rows if r["section"] == "broadcast"):
        floor = floors(rows, row).get("floor")
        lines.append(
            [
                row["track"],
                row["subject"],
                row["server"],
                row["processes"],
                milliseconds(row["p50_ms"]),
                milliseconds(row["p99_ms"]),
                number(row["rate"]),
                ratio_cell(row, floor),
            ]
        )
    return table(
        [
            "Track",
            "Application",
            "Server",
            "Server processes",
            "p50 ms to reach all",
            "p99 ms to reach all",
            "deliveries/s",
            "× floor (p50 / time per delivery)",
        ],
        lines,
    )


def conditions(summary):
    """Where, when, on which code and how long: the line above the tables."""
    machine, config = summary["machine"], summary["config"]
    return (
        f"Measured {summary['date']} on {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['os']}, Python {machine['python']}, in {summary['seconds'] / 60:.1f} minutes "
        f"(configuration `{summary['config_name']}`: {config['warmup']} s warm-up, then "
        f"{config['repetitions']} repetitions of {config['duration']} s, medians shown), "
        f"{described(summary.get('provenance'))}." + room_throughput.load_note(summary)
    )


def markdown(summary):
    """results.md's body: conditions, tables, verdicts and causes, chat rooms, then the appendix."""
    rows = all_rows(summary)
    config = summary["config"]
    lines = [
        conditions(summary),
        "",
        table(
            ["Track", *summary["tracks"][0]["versions"].keys()],
            [[run["track"], *run["versions"].values()] for run in summary["tracks"]],
        ),
        "",
        "Each ratio is this row against its floor, measured in the same run: p50 ÷ the floor's "
        "p50, then time per request or message (the floor's rate ÷ this rate). 1.00× is as "
        "fast as the floor; 2.00× takes twice as long.",
        "",
    ]
    if any(r["section"] == "http" for r in rows):
        lines += [
            f"### HTTP: one page, {config['http_connections']} requests at a time, "
            "each on a new connection",
            "",
            "Floor: the same server with a bare page (runserver's own WSGIServer with a bare "
            "WSGI app for runserver).",
            "",
            http_table(rows),
            "",
        ]
    for clients in sorted({r["clients"] for r in rows if r["section"] == "echo"}):
        lines += [
            f"### WebSocket echo, {clients} client{'s' if clients > 1 else ''}",
            "",
            echo_table(rows, clients),
            "",
        ]
    if any(r["section"] == "broadcast" for r in rows):
        lines += [
            f"### Broadcast: one chat message to all {config['broadcast_clients']} "
            "clients of a room",
            "",
            "Time until every client, the sender included, has the message; with two processes "
            "the clients are split between them and Redis carries the message across. Floor: a "
            f"bare ASGI room under the same server. p99 is the slowest of {config['rounds']} "
            "rounds; deliveries/s is clients × rounds ÷ their total time.",
            "",
            broadcast_table(rows),
            "",
        ]
    causes = ratio_causes.section(summary)
    if causes:
        lines += [causes]
    rooms = summary.get("room_throughput")
    if rooms:
        lines += ["### Chat room throughput: steps 05 and 06", ""]
        for step in sorted({row["step"] for row in room_throughput.all_rows(rooms)}):
            lines += [f"**Step {step}.** " + room_throughput.render_block(rooms, step), ""]
    cost = step06_message_cost.committed_results()
    if cost:
        lines += [
            "### Where one step 06 message's time goes",
            "",
            "Each part of handling one message, timed call by call by "
            "`python -m benchmarks.step06_message_cost` (a run of its own, before this one; "
            "step 06's README explains the table and what the step does about each part).",
            "",
            step06_message_cost.render(cost),
        ]
    lines += appendix(summary)
    return "\n".join(lines)


def appendix(summary):
    """The figures the verdicts are read from: every ratio with its verdict, the thread-hops
    rows, the in-process timings and one client's slow round trips."""
    verdicts = ratio_causes.appendix(summary)
    hops = [run["thread_hops"] for run in summary["tracks"] if "thread_hops" in run]
    if not verdicts and not hops:
        return []
    lines = ["## Appendix", ""]
    if verdicts:
        lines += [verdicts]
    if hops:
        lines += [
            "### Thread-hops rows: each cause taken out, under the same servers",
            "",
            "Measured by benchmarks/thread_hops.py after the tables above (notebooks/06 "
            "explains the counts); the step 03 page and step 05 in-memory rows measure the "
            "tables' rows a second time.",
            "",
            thread_hops.table(hops),
            "",
            "### In-process: the same work with no server and no socket",
            "",
            thread_hops.inprocess_table(hops),
            "",
            "### One client's slow round trips against the bare ASGI echo",
            "",
            "Every round trip timed, with the server's garbage collections and its waits in "
            "epoll logged (`python -m benchmarks.thread_hops --echo-tail`); uvloop waits "
            "outside Python's selectors, so uvicorn's waits are not logged.",
            "",
            thread_hops.tail_table(hops),
            "",
        ]
    return lines


def readme_block(summary):
    """What benchmarks/README.md shows of a run: the chart, its conditions and a pointer."""
    return (
        "![benchmark chart](results/benchmark.png)\n\n"
        + conditions(summary)
        + "\n\nThe tables, which ratios above "
        f"{ratio_causes.LIMIT}× the run explains and what they are made of: "
        "[results/results.md](results/results.md).\n"
    )


# --- the chart ------------------------------------------------------------------------------


# One colour per server (or per page), darker for the first track, lighter for the second.
COLOURS = {
    "daphne": ("#1f4e99", "#7fa6e0"),
    "uvicorn": ("#c25400", "#f5a66b"),
    "bare page": ("#555555", "#b0b0b0"),
    "step 03 page": ("#2a7d3a", "#8fd19e"),
}


def colour(label, tracks):
    """Series labels read "<server or page>, <track>"."""
    name, track = label.rsplit(", ", 1)
    shades = COLOURS.get(name, ("#444444", "#999999"))
    return shades[min(tracks.index(track), 1)] if track in tracks else shades[0]


def grouped_bars(axis, groups, series, ylabel, title, tracks):
    """series: {"<name>, <track>": [value or None per group]}."""
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        present = [(p, v) for p, v in zip(positions, values, strict=True) if v is not None]
        if present:
            axis.bar(
                [p for p, _ in present],
                [v for _, v in present],
                width,
                label=label,
                color=colour(label, tracks),
            )
    axis.set_xticks(range(len(groups)))
    axis.set_xticklabels(groups, fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7)
    axis.grid(axis="y", alpha=0.3)


def chart(summary, path):
    rows = all_rows(summary)
    tracks = [run["track"] for run in summary["tracks"]]
    echo_clients = sorted({r["clients"] for r in rows if r["section"] == "echo"})
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))

    servers = ["runserver", *ASGI_SERVERS]
    if any(r["section"] == "http" for r in rows):
        http = {}
        for floor, label in ((True, "bare page"), (False, "step 03 page")):
            for track in tracks:
                http[f"{label}, {track}"] = [
                    (find(rows, section="http", track=track, server=s, is_floor=floor) or {}).get(
                        "rate"
                    )
                    for s in servers
                ]
        grouped_bars(
            axes[0][0], servers, http, "requests/s (higher is better)", "HTTP: one page", tracks
        )
    else:
        axes[0][0].axis("off")

    echo_subjects = [BARE_ECHO, STEP04, STEP05_MEMORY, STEP05_REDIS]
    echo_labels = ["bare ASGI\n(floor)", "step 04\nrouter", "step 05\nin-memory", "step 05\nRedis"]
    echo_panels = (
        [
            (axes[0][1], echo_clients[0], "p50_ms", "p50 round trip, ms (lower is better)"),
            (axes[1][0], echo_clients[-1], "rate", "messages/s (higher is better)"),
        ]
        if echo_clients
        else []
    )
    if not echo_clients:
        axes[0][1].axis("off")
        axes[1][0].axis("off")
    for axis, clients, key, ylabel in echo_panels:
        series = {}
        for server in ASGI_SERVERS:
            for track in tracks:
                series[f"{server}, {track}"] = [
                    (
                        find(
                            rows,
                            section="echo",
                            track=track,
                            subject=s,
                            server=server,
                            clients=clients,
                        )
                        or {}
                    ).get(key)
                    for s in echo_subjects
                ]
        grouped_bars(
            axis,
            echo_labels,
            series,
            ylabel,
            f"WebSocket echo, {clients} client{'s' if clients > 1 else ''}",
            tracks,
        )
        for track, style in zip(tracks, ("--", ":"), strict=False):
            websockets = find(
                rows, section="echo", track=track, server="websockets", clients=clients
            )
            if websockets:
                axis.axhline(
                    websockets[key],
                    color="black",
                    linestyle=style,
                    linewidth=1,
                    label=f"websockets library, {track}",
                )
        axis.legend(fontsize=7)

    broadcast = [r for r in rows if r["section"] == "broadcast"]
    if broadcast:
        subjects = []
        for r in broadcast:
            if (r["subject"], r["processes"]) not in subjects:
                subjects.append((r["subject"], r["processes"]))
        series = {}
        for server in ASGI_SERVERS:
            for track in tracks:
                series[f"{server}, {track}"] = [
                    (
                        find(
                            rows,
                            section="broadcast",
                            track=track,
                            subject=s,
                            processes=p,
                            server=server,
                        )
                        or {}
                    ).get("p50_ms")
                    for s, p in subjects
                ]
        labels = [
            s.replace(" (floor)", "\n(floor)").replace(", ", "\n")
            + f"\n{p} process{'es' if p > 1 else ''}"
            for s, p in subjects
        ]
        grouped_bars(
            axes[1][1],
            labels,
            series,
            "p50 ms to reach all (lower is better)",
            f"Broadcast to {broadcast[0]['clients']} clients",
            tracks,
        )
    else:
        axes[1][1].axis("off")

    machine = summary["machine"]
    figure.suptitle(
        f"{machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{summary['date']} (medians of {summary['config']['repetitions']})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# --- writing it all ---------------------------------------------------------------------------


def write_results(summary, output, readme=None):
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    # The measurements first: a report that fails to render can be rewritten from them
    # (--report-from) without measuring again.
    (output / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    body = markdown(summary)
    results_md = output / "results.md"
    results_md.write_text(
        "# Benchmark results\n\n![benchmark chart](benchmark.png)\n\n" + body + "\n"
    )
    chart(summary, output / "benchmark.png")
    written = [results_md, output / "results.json", output / "benchmark.png"]
    if readme is not None:
        text = Path(readme).read_text()
        block = f"{README_START}\n\n{readme_block(summary)}\n{README_END}"
        pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"{readme} has no results markers")
        Path(readme).write_text(pattern.sub(lambda _: block, text))
        written.append(Path(readme))
    return written
