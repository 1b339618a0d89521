"""Reading one benchmark run's rows: finding a row and the floors it is compared with, the
ratios to them, and the figures written the way results.md writes them."""

from benchmarks.measure_track import ECHO_SUBJECTS

# The echo rows' subjects, as benchmarks/measure_track.py names them.
BARE_ECHO, STEP04, STEP05_MEMORY, STEP05_REDIS = (subject.name for subject in ECHO_SUBJECTS)
ASGI_SERVERS = ("daphne", "uvicorn")


# --- finding a row and its floors ---------------------------------------------------------


def all_rows(summary):
    return [row for run in summary["tracks"] for row in run["rows"]]


def find(rows, **wanted):
    for row in rows:
        if all(row[key] == value for key, value in wanted.items()):
            return row
    return None


def floors(rows, row):
    """The floors a row is compared with, measured in the same run: {label: floor row}."""
    same = {"track": row["track"], "section": row["section"], "clients": row["clients"]}
    if row["section"] == "echo":
        found = {
            "bare ASGI": find(rows, subject=BARE_ECHO, server=row["server"], **same),
            "websockets": find(rows, server="websockets", **same),
        }
    else:
        found = {"floor": find(rows, is_floor=True, server=row["server"], **same)}
    return {label: floor for label, floor in found.items() if floor is not None}


def latency_ratio(row, floor):
    """How many times the floor's median round trip this row's is."""
    return row["p50_ms"] / floor["p50_ms"]


def time_per_message_ratio(row, floor):
    """How many times the floor's time per request or message: floor rate / this rate."""
    return floor["rate"] / row["rate"]


def times(value):
    return f"{value:.2f}×"


def number(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def milliseconds(value):
    if value < 1:
        return f"{value:.3f}"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"
