"""Which ratios above 1.5× one run explains: a check of predictions, not prose.

The ratio checked is a row's time per request, message or broadcast over its floor's (the
floor's rate ÷ the row's: the second figure of each ratio cell in results.md, and the thread-hops
table's ratio). Each one above LIMIT gets a verdict:

- inconclusive: the same ratio, measured twice in the run (its table row and its thread-hops
  row, each against its own floor, minutes apart), came out further apart than the ratio is
  from 1.00×. A ratio measured once takes the largest such factor of its track and section.
- explained: a prediction made of measurements agrees with it within TOLERANCE. The prediction
  is the floor's time per unit plus the same work's in-process time with no server and no
  socket (benchmarks/thread_hops.py times step 03's page, step 05's echo and its broadcast),
  over the floor's time per unit.
- unexplained: the rest. Nothing in the run predicts step 04's router, the Redis echo, two
  server processes or the websockets-library column (the server's own cost per message): they
  are listed as unexplained, not derived from other ratios.
"""

from dataclasses import dataclass

from benchmarks import thread_hops
from benchmarks.figures import (
    BARE_ECHO,
    all_rows,
    find,
    floors,
    milliseconds,
    time_per_message_ratio,
    times,
)

LIMIT = 1.5
TOLERANCE = 1.25  # a prediction within this factor of the measured ratio agrees with it
TABLES = {"http": "HTTP", "echo": "echo", "broadcast": "broadcast"}
# The thread-hops subjects, by the variant benchmarks/thread_hops.py counted in-process; the
# main tables' step 03 page, step 05 in-memory echo and broadcast carry the same labels.
VARIANT_OF = {
    **{label: variant for variant, label in thread_hops.PAGE_LABELS.items()},
    **{label: variant for variant, label in thread_hops.ECHO_LABELS.items()},
    **{label: variant for variant, label in thread_hops.BROADCAST_LABELS.items()},
}
BROADCAST_REDIS = "step 05, Redis"
STEP05_MEMORY, STEP06_MEMORY = "step 05, in-memory", "step 06, in-memory"


@dataclass(frozen=True)
class Ratio:
    table: str  # "HTTP", "echo", "broadcast" or "thread hops"
    column: str  # which floor: "floor", "bare ASGI" or "websockets"
    track: str
    section: str
    subject: str
    server: str
    clients: int
    processes: int
    measured: float
    predicted: float | None = None
    twice: float | None = None  # this ratio's own second measurement in the run
    spread: float | None = None  # the factor between two measurements this verdict uses

    @property
    def key(self):
        """Names the ratio: its table, track, row and the floor it is against."""
        return (
            self.table,
            self.track,
            self.subject,
            self.server,
            self.clients,
            self.processes,
            self.column,
        )

    @property
    def verdict(self):
        if self.spread is not None and self.spread > self.measured:
            return "inconclusive"
        if self.predicted is not None and agrees(self.predicted, self.measured):
            return "explained"
        return "unexplained"


def agrees(predicted, measured):
    return max(predicted / measured, measured / predicted) <= TOLERANCE


def unit_ms(row):
    """Milliseconds per request, message or broadcast at the row's rate (per second)."""
    per_unit = row["clients"] if row["section"] == "broadcast" else 1
    return per_unit / row["rate"] * 1000


def inprocess_ms(hops, row):
    """The in-process time of the work `row` measures under a server, or None if this run
    timed none: step 03's page (through WSGI for runserver), step 05's echo and broadcast."""
    variant = VARIANT_OF.get(row["subject"])
    if row["section"] == "http" and variant:
        count = hops["counts"].get(variant, {})
        return count.get("wsgi_ms") if row["server"] == "runserver" else count.get("inprocess_ms")
    if row["section"] == "echo" and variant in hops["counts"]:
        return hops["counts"][variant]["inprocess_ms"]
    if row["section"] == "broadcast" and row.get("processes", 1) == 1:
        counts = hops["broadcast_counts"]
        if variant in counts:
            return counts[variant]["memory"]["inprocess_ms"]
        if row["subject"] == BROADCAST_REDIS and "redis" in counts["echo"]:
            return counts["echo"]["redis"]["inprocess_ms"]
    return None


def predicted(hops, row, floor):
    work = hops and inprocess_ms(hops, row)
    if not work:
        return None
    return (unit_ms(floor) + work) / unit_ms(floor)


def twin(summary, run, row, in_table):
    """The same ratio measured the other time in the run, or None: a table row's thread-hops
    row (against the thread-hops floor), or a thread-hops row's table row."""
    wanted = {k: row[k] for k in ("section", "subject", "server", "clients")}
    if row.get("processes", 1) != 1:
        return None
    if in_table:
        other = run.get("thread_hops") and thread_hops.find(run["thread_hops"]["rows"], **wanted)
        if other:
            floor = thread_hops.floor_of(run["thread_hops"]["rows"], other)
            return thread_hops.ratio(other, floor) if floor else None
        return None
    rows = [r for r in all_rows(summary) if r["track"] == run["track"]]
    other = find(rows, processes=1, **wanted)
    floor = other and floors(rows, other).get("bare ASGI" if row["section"] == "echo" else "floor")
    return time_per_message_ratio(other, floor) if floor else None


def ratios(summary):
    """Every ratio of the run (floors against themselves left out), each with its prediction
    and its second measurement if it has them; spreads not yet set."""
    found = []
    for run in summary["tracks"]:
        hops = run.get("thread_hops")
        rows = [r for r in all_rows(summary) if r["track"] == run["track"]]
        measured = [
            (row, column, floor, True)
            for row in rows
            for column, floor in floors(rows, row).items()
        ]
        for row in hops["rows"] if hops else []:
            measured.append((row, "floor", thread_hops.floor_of(hops["rows"], row), False))
        for row, column, floor, in_table in measured:
            if floor is row or floor is None or row.get("is_floor") and column != "websockets":
                continue
            found.append(
                Ratio(
                    table=TABLES[row["section"]] if in_table else "thread hops",
                    column=column,
                    track=run["track"],
                    section=row["section"],
                    subject=row["subject"],
                    server=row["server"],
                    clients=row["clients"],
                    processes=row.get("processes", 1),
                    measured=time_per_message_ratio(row, floor),
                    predicted=predicted(hops, row, floor) if column != "websockets" else None,
                    twice=twin(summary, run, row, in_table) if column != "websockets" else None,
                )
            )
    return found


def factor(a, b):
    return max(a, b) / min(a, b)


def verdicts(summary, limit=LIMIT):
    """Every ratio above `limit`, with the spread its verdict uses: its own two measurements'
    factor, or else the largest such factor of its track and section."""
    every = ratios(summary)
    largest = {}
    for r in every:
        if r.twice:
            place = (r.track, r.section)
            largest[place] = max(largest.get(place, 1.0), factor(r.measured, r.twice))
    return [
        Ratio(
            **{
                **r.__dict__,
                "spread": factor(r.measured, r.twice)
                if r.twice
                else largest.get((r.track, r.section)),
            }
        )
        for r in every
        if r.measured > limit
    ]


def uncovered(summary, limit=LIMIT):
    """The keys of the ratios above `limit` that this run does not explain."""
    return sorted(r.key for r in verdicts(summary, limit) if r.verdict != "explained")


# --- the Markdown ---------------------------------------------------------------------------


def counted(found, chosen):
    """ "3 explained, 1 inconclusive, 2 unexplained" of the ratios `chosen` picks, and the
    largest of them in a main table, with its prediction."""
    chosen = [r for r in found if chosen(r)]
    text = ", ".join(
        f"{sum(r.verdict == v for r in chosen)} {v}"
        for v in ("explained", "inconclusive", "unexplained")
    )
    in_tables = [r for r in chosen if r.table != "thread hops"]
    if in_tables:
        r = max(in_tables, key=lambda r: r.measured)
        text += (
            f"; the largest, {times(r.measured)} ({r.subject} under {r.server}, {r.track}), "
            + (f"against {times(r.predicted)} predicted" if r.predicted else "with no prediction")
            + f", is {r.verdict}"
        )
    return text


def summary_table(found):
    lines = [
        "| Table | Track | ratios above the limit | explained | inconclusive | unexplained |",
        "|---|---|---|---|---|---|",
    ]
    for table in ("HTTP", "echo", "broadcast", "thread hops"):
        for track in dict.fromkeys(r.track for r in found):
            chosen = [r for r in found if r.table == table and r.track == track]
            if chosen:
                lines.append(
                    f"| {table} | {track} | {len(chosen)} | "
                    + " | ".join(
                        str(sum(r.verdict == v for r in chosen))
                        for v in ("explained", "inconclusive", "unexplained")
                    )
                    + " |"
                )
    return "\n".join(lines)


def causes(summary, found):
    """One entry of at most three sentences per cause, with its figures."""
    runs = [run for run in summary["tracks"] if run.get("thread_hops")]
    if not runs:
        return []

    def each(text_of):
        return "; ".join(f"{run['track']} {text_of(run['thread_hops'])}" for run in runs)

    def page(hops):
        count = hops["counts"]["page"]
        return (
            f"(Django {hops['versions']['Django']}) {milliseconds(count['wsgi_ms'])} ms through "
            f"WSGI, {milliseconds(count['inprocess_ms'])} ms through ASGI with "
            f"{count['hops']:g} thread hops"
        )

    def echo(hops):
        count, without = hops["counts"]["echo"], hops["counts"].get("echo_without_per_message_hop")
        text = (
            f"(Channels {hops['versions']['channels']}) {count['hops']:g} "
            f"hop{'' if count['hops'] == 1 else 's'} and "
            f"{milliseconds(count['inprocess_ms'])} ms"
        )
        if without:
            text += (
                f", {milliseconds(without['inprocess_ms'])} ms without the per-message hop (an "
                "experiment, not a recommendation: a consumer that uses the database needs it)"
            )
        return text

    def broadcast(hops):
        counts = hops["broadcast_counts"]["echo"]
        text = f"{milliseconds(counts['memory']['inprocess_ms'])} ms in-memory"
        if "redis" in counts:
            commands = sum(counts["redis"]["redis_commands"].values())
            text += (
                f", {milliseconds(counts['redis']['inprocess_ms'])} ms with Redis "
                f"({commands:.0f} commands per broadcast)"
            )
        return text

    def storing(track, server):
        rows = [r for r in all_rows(summary) if r["track"] == track and r["server"] == server]
        row = find(rows, section="broadcast", subject=STEP06_MEMORY, processes=1)
        relay = find(rows, section="broadcast", subject=STEP05_MEMORY, processes=1)
        floor = row and floors(rows, row).get("floor")
        if not (row and relay and floor):
            return None
        return (
            f"{track} {server} {times(time_per_message_ratio(row, floor))} the floor, "
            f"{times(time_per_message_ratio(row, relay))} step 05"
        )

    stored = [
        text
        for run in summary["tracks"]
        for server in ("daphne", "uvicorn")
        if (text := storing(run["track"], server))
    ]
    clients = runs[0]["thread_hops"]["broadcast_counts"]["echo"]["memory"]["clients"]
    servers = [r for r in ratios(summary) if r.column == "websockets" and r.subject == BARE_ECHO]
    return [
        f"- **Django's page (HTTP and its thread-hops rows).** In-process, one request for step "
        f"03's page costs {each(page)}. Added to the floor's own time per request, that predicts "
        f"the ratio: {counted(found, lambda r: r.section == 'http')}.",
        f"- **Channels' echo.** In-process, one message through step 05's whole application "
        f"costs {each(echo)}. Nothing in the run predicts step 04's router or the Redis rows: "
        f"{counted(found, lambda r: r.section == 'echo' and r.column != 'websockets')}.",
        f"- **Broadcast to {clients} clients.** In-process, one chat message through step 05's "
        f"application costs {each(broadcast)}; nothing predicts two server processes. "
        "Verdicts: "
        + counted(found, lambda r: r.section == "broadcast" and not r.subject.startswith("step 06"))
        + ".",
        *(
            [
                "- **Step 06's broadcast.** It stores each message before sending it, with its "
                "id: one thread hop, one INSERT and one commit per burst (one message per burst "
                "here, as rounds follow one another), and the sender's own copy encoded again "
                "with its ref; on Channels 4 it skips the thread hop step 05 makes before every "
                "handler, one per socket and message. Time per delivery, in-memory: "
                + "; ".join(stored)
                + ". Nothing in the run predicts it (its parts are timed in the message-cost "
                "table below): " + counted(found, lambda r: r.subject.startswith("step 06")) + "."
            ]
            if stored
            else []
        ),
        "- **The websockets-library column.** It is the application's ratio times the server's "
        "own cost per message, which is the bare ASGI echo against the websockets library ("
        + ", ".join(
            f"{r.track} {r.server} {r.clients} client{'s' if r.clients > 1 else ''} "
            f"{times(r.measured)}"
            for r in servers
        )
        + f"); nothing in the run predicts the server's: "
        f"{counted(found, lambda r: r.column == 'websockets')}.",
    ]


def section(summary):
    """results.md's section: the rule, the verdicts counted, and the causes."""
    found = verdicts(summary)
    if not found:
        return ""
    return "\n".join(
        [
            f"### What the ratios above {LIMIT}× are made of",
            "",
            f"A ratio (time per request, message or broadcast against the floor) counts as "
            f"**explained** when a prediction from this run's measurements is within a factor of "
            f"{TOLERANCE} of it: the floor's time per unit plus the same work timed in-process, "
            "with no server and no socket (benchmarks/thread_hops.py). It is **inconclusive** "
            "when the same ratio, measured twice in this run (its table row and its thread-hops "
            "row), moved by a larger factor than the ratio itself (a ratio measured once: the "
            "largest such factor of its track and section). The rest are **unexplained**. Every "
            "ratio and its verdict: [Appendix](#every-ratio-above-the-limit).",
            "",
            summary_table(found),
            "",
            *causes(summary, found),
            "",
        ]
    )


def appendix(summary):
    """Every ratio above the limit: measured, predicted, the spread used, the verdict."""
    found = verdicts(summary)
    if not found:
        return ""
    lines = [
        "### Every ratio above the limit",
        "",
        f"Time per unit against the floor, above {LIMIT}×. Spread: the factor between this "
        "ratio's two measurements in the run, or (marked *) its track and section's largest.",
        "",
        "| Table | Track | Application | Server | clients | processes | against | ratio | "
        "predicted | spread | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"explained": 0, "inconclusive": 1, "unexplained": 2}
    for r in sorted(found, key=lambda r: (order[r.verdict], r.table, r.track, r.subject)):
        spread = "–" if r.spread is None else f"{times(r.spread)}{'' if r.twice else ' *'}"
        lines.append(
            f"| {r.table} | {r.track} | {r.subject} | {r.server} | {r.clients} | {r.processes} "
            f"| {r.column} | {times(r.measured)} | "
            f"{times(r.predicted) if r.predicted else '–'} | {spread} | {r.verdict} |"
        )
    return "\n".join(lines + [""])
