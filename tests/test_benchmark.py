"""The benchmark keeps working: a tiny run, out of process, on the running track, writes a
complete table, a paragraph and a chart. The speed figures themselves are never asserted."""

import json
import re
import subprocess
import sys

import pytest

from benchmarks import ratio_causes, thread_hops
from benchmarks.router_explanation import step04_names
from tests.system_tools import require_tool
from tools.repository import REPO_ROOT
from tools.step_commands import copy_step
from tools.tracks import running_track

BENCHMARKS = REPO_ROOT / "benchmarks"
# Every row the tables must have, per track: (section, application, server, clients, processes).
ECHO_APPLICATIONS = [
    "bare ASGI echo (floor)",
    "step 04 router",
    "step 05 Channels, in-memory",
    "step 05 Channels, Redis",
]
EXPECTED_ROWS = (
    [
        ("http", app, server, 2, 1)
        for server in ("runserver", "daphne", "uvicorn")
        for app in ("bare page (floor)", "step 03 page")
    ]
    + [("echo", "websockets library (floor)", "websockets", clients, 1) for clients in (1, 3)]
    + [
        ("echo", app, server, clients, 1)
        for clients in (1, 3)
        for server in ("daphne", "uvicorn")
        for app in ECHO_APPLICATIONS
    ]
    + [
        ("broadcast", app, server, 5, processes)
        for server in ("daphne", "uvicorn")
        for app, processes in (
            ("bare ASGI room (floor)", 1),
            ("step 05, in-memory", 1),
            ("step 05, Redis", 1),
            ("step 05, Redis", 2),
        )
    ]
)
RATIO = re.compile(r"(\d+\.\d\d)×")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    require_tool("redis-server", "sudo apt-get install redis-server")
    output = tmp_path_factory.mktemp("benchmark")
    readme_before = (BENCHMARKS / "README.md").read_text()
    # The README's `make benchmark`, narrowed to this track and the tiny configuration.
    result = subprocess.run(
        [
            "make",
            "benchmark",
            f"TRACKS={running_track()}",
            f"TRACK={running_track()}",
            f"BENCHMARK_ARGS=--config tiny --output {output}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (BENCHMARKS / "README.md").read_text() == readme_before, "wrote to the README"
    return output, json.loads((output / "results.json").read_text())


def table_rows(markdown):
    """The cells of every data row of every Markdown table."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| Track"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_every_row_is_measured_once(tiny_run):
    _, results = tiny_run
    (run,) = results["tracks"]
    assert run["track"] == running_track()
    measured = [
        (r["section"], r["subject"], r["server"], r["clients"], r["processes"]) for r in run["rows"]
    ]
    assert sorted(measured) == sorted(EXPECTED_ROWS)


def test_every_figure_is_positive_and_every_repetition_kept(tiny_run):
    _, results = tiny_run
    for row in results["tracks"][0]["rows"]:
        assert len(row["repetitions"]) == results["config"]["repetitions"], row["subject"]
        for figures in [row, *row["repetitions"]]:
            assert figures["rate"] > 0 and figures["p50_ms"] > 0, row
            assert figures["p99_ms"] >= figures["p50_ms"], row


def test_the_table_has_every_row_with_numbers_and_ratios(tiny_run):
    output, results = tiny_run
    # The main tables come before the thread hops and room sections, which have tests of their own.
    markdown = (output / "results.md").read_text().split("### Thread hops", 1)[0]
    rows = [r for r in table_rows(markdown) if r[0] == running_track() and len(r) > 5]
    # The versions table has one row per track too; the measurement tables have the rest.
    measurement_rows = [r for r in rows if r[1] in {e[1] for e in EXPECTED_ROWS}]
    assert len(measurement_rows) == len(EXPECTED_ROWS)
    for cells in measurement_rows:
        figures = [c for c in cells[3:] if re.fullmatch(r"[\d,]+(\.\d+)?", c)]
        assert len(figures) >= 3, cells
        assert all(float(f.replace(",", "")) > 0 for f in figures), cells
        ratio_cells = [c for c in cells if "×" in c or c == "floor"]
        assert ratio_cells, cells
        assert all(float(r) > 0 for c in ratio_cells for r in RATIO.findall(c)), cells
        if "(floor)" in cells[1] and cells[2] != "websockets":
            assert "floor" in ratio_cells, cells


def test_ratios_are_the_figures_divided_by_the_floor(tiny_run):
    output, results = tiny_run
    rows = results["tracks"][0]["rows"]

    def find(**wanted):
        (match,) = [r for r in rows if all(r[k] == v for k, v in wanted.items())]
        return match

    step, floor = (
        find(section="echo", subject=s, server="uvicorn", clients=1)
        for s in ("step 04 router", "bare ASGI echo (floor)")
    )
    expected = f"{step['p50_ms'] / floor['p50_ms']:.2f}× / {floor['rate'] / step['rate']:.2f}×"
    markdown = (output / "results.md").read_text()
    one_client = markdown.split("### WebSocket echo, 1 client\n", 1)[1].split("###", 1)[0]
    (line,) = [
        line
        for line in one_client.splitlines()
        if line.startswith(f"| {running_track()} | step 04 router | uvicorn |")
    ]
    assert expected in line


def test_the_paragraph_on_step_04_reads_this_runs_figures(tiny_run):
    output, results = tiny_run
    markdown = (output / "results.md").read_text()
    (paragraph,) = [
        line for line in markdown.splitlines() if line.startswith(f"**{running_track()} track.**")
    ]
    step = next(
        r
        for r in results["tracks"][0]["rows"]
        if r["subject"] == "step 04 router" and r["server"] == "uvicorn" and r["clients"] == 1
    )
    for name in step04_names().values():
        assert f"`{name}" in paragraph, name
    assert f"{step['p50_ms']:.3f} ms" in paragraph or f"{step['p50_ms']:.2f} ms" in paragraph
    assert "daphne" in paragraph and "uvicorn" in paragraph


def test_the_chart_is_a_png_image(tiny_run):
    output, _ = tiny_run
    png = output / "benchmark.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert width > 800 and height > 600


def test_the_report_is_rewritten_identically_from_the_json(tiny_run, tmp_path):
    output, _ = tiny_run
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run_benchmark",
            "--report-from",
            str(output / "results.json"),
            "--output",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "results.md").read_text() == (output / "results.md").read_text()
    assert (tmp_path / "benchmark.png").stat().st_size > 0


def test_the_thread_hops_section_has_a_row_per_server_and_variant(tiny_run):
    output, results = tiny_run
    (run,) = results["tracks"]
    hops = run["thread_hops"]
    assert hops["track"] == running_track()
    # Django's handler always hops for a page; Channels 3's echo may make none per message.
    assert hops["counts"]["page"]["hops"] > 0 and hops["counts"]["echo"]["hops"] >= 0
    section = (
        (output / "results.md").read_text().split("### Thread hops: what each cause costs\n", 1)[1]
    )
    section = section.split("\n### ", 1)[0]
    shown = [r for r in table_rows(section) if r[0] == running_track()]
    assert len(shown) == len(hops["rows"]) and len(shown) >= 6
    assert {r[2] for r in shown} == {"daphne", "uvicorn"}
    # Every section, under both servers, with its floor: the page, the echo with 1 and with 3
    # clients, and the broadcast; the variants that exist on this track each once.
    pages, consumers = thread_hops.variants_on(hops["versions"])
    config = thread_hops.CONFIGS["tiny"]
    expected = []
    for server in ("daphne", "uvicorn"):
        expected += [("http", thread_hops.FLOORS["http"], server, config["http_connections"])]
        expected += [
            ("http", thread_hops.PAGE_LABELS[v], server, config["http_connections"]) for v in pages
        ]
        for clients in config["echo_clients"]:
            expected += [("echo", thread_hops.FLOORS["echo"], server, clients)]
            expected += [("echo", thread_hops.ECHO_LABELS[v], server, clients) for v in consumers]
        clients = config["broadcast_clients"]
        expected += [("broadcast", thread_hops.FLOORS["broadcast"], server, clients)]
        expected += [
            ("broadcast", thread_hops.BROADCAST_LABELS[v], server, clients) for v in consumers
        ]
    measured = [(r["section"], r["subject"], r["server"], r["clients"]) for r in hops["rows"]]
    assert sorted(measured) == sorted(expected)
    for row in hops["rows"]:
        assert row["rate"] > 0 and row["p50_ms"] > 0 and row["hops"] >= 0, row


def test_the_thread_hops_counts_have_every_figure_the_report_reads(tiny_run):
    _, results = tiny_run
    hops = results["tracks"][0]["thread_hops"]
    page = hops["counts"]["page"]
    assert page["inprocess_ms"] > 0 and page["wsgi_ms"] > 0 and page["hop_us"] > 0
    assert len(page["hop_functions"]) == page["hops"]
    assert hops["counts"]["echo"]["inprocess_ms"] > 0
    broadcast = hops["broadcast_counts"]["echo"]
    assert set(broadcast) == {"memory", "redis"}
    for layer in broadcast.values():
        assert layer["clients"] == thread_hops.CONFIGS["tiny"]["broadcast_clients"]
        assert layer["inprocess_ms"] > 0 and layer["layer_ms"] > 0
    # The in-memory layer sends no Redis command; the Redis layer sends some for every broadcast.
    assert broadcast["memory"]["redis_commands"] == {}
    assert sum(broadcast["redis"]["redis_commands"].values()) > 0
    tails = hops["echo_tail"]
    assert [t["server"] for t in tails] == ["daphne", "uvicorn"]
    assert all(t["round_trips"] > 0 and t["p99_ms"] >= t["p50_ms"] for t in tails)


def test_each_track_records_the_load_around_its_run(tiny_run):
    output, results = tiny_run
    (run,) = results["tracks"]
    assert len(run["load_average"]) == 2 and all(load >= 0 for load in run["load_average"])
    assert "1-minute load average before and after" in (output / "results.md").read_text()


def test_every_ratio_above_the_limit_has_a_measured_cause(tiny_run):
    output, results = tiny_run
    assert ratio_causes.uncovered(results, limit=0) == []
    markdown = (output / "results.md").read_text()
    section = markdown.split(f"### Every ratio above {ratio_causes.LIMIT}×", 1)[1]
    section = section.split("\n### ", 1)[0]
    assert "NOT EXPLAINED" not in section
    # One line per ratio above the limit, each naming the paragraph that explains it.
    listed = [r for r in table_rows(section) if r[1] == running_track()]
    assert len(listed) == len(ratio_causes.above(results))
    titles = {text.split("**")[1].rstrip(".") for text, _ in ratio_causes.paragraphs(results)}
    titles.add("Step 04's router against the bare ASGI echo")
    assert {r[-1] for r in listed} <= titles
    for track in (running_track(),):
        for topic in ("HTTP", "Echo", "Broadcast"):
            assert f"**{topic}, {track} (" in section, topic
        assert f"**Daphne's one-client echo tail, {track}.**" in section


def test_the_committed_results_explain_every_ratio_above_the_limit():
    results = json.loads((BENCHMARKS / "results" / "results.json").read_text())
    assert ratio_causes.uncovered(results) == []
    assert "NOT EXPLAINED" not in (BENCHMARKS / "results" / "results.md").read_text()


def test_the_room_throughput_section_shows_steps_05_and_06(tiny_run):
    output, results = tiny_run
    rows = [row for run in results["room_throughput"]["tracks"] for row in run["rows"]]
    assert {row["step"] for row in rows} == {"05", "06"}
    assert {(row["server"], row["layer"]) for row in rows} == {
        (server, layer) for server in ("daphne", "uvicorn") for layer in ("memory", "redis")
    }
    markdown = (output / "results.md").read_text()
    section = markdown.split("### Chat room throughput: steps 05 and 06\n", 1)[1]
    for step in ("05", "06"):
        assert f"**Step {step}.** Measured" in section
    # One table row per (step, server, layer), each with a delivered share.
    shown = [r for r in table_rows(section) if r[0] == running_track()]
    assert len(shown) == 8
    assert all(re.fullmatch(r"\d+%.*", r[3]) for r in shown), shown


def test_the_router_paragraph_takes_its_names_from_step_04s_code(tmp_path):
    assert step04_names() == {
        "router": "route_by_scope_type",
        "websocket_app": "websocket_echo",
        "origin_check": "reason_to_refuse",
        "size_limit": "MAX_MESSAGE_BYTES",
    }
    # Renamed in a copy of the step, each name follows the code.
    copy = copy_step("04", tmp_path)
    renames = {
        "route_by_scope_type": "route",
        "websocket_echo": "echo_socket",
        "reason_to_refuse": "refusal_reason",
        "MAX_MESSAGE_BYTES": "LIMIT",
    }
    for path in (copy / "newtest").glob("*.py"):
        text = path.read_text()
        for old, new in renames.items():
            text = text.replace(old, new)
        path.write_text(text)
    # The application's module is named after it.
    (copy / "newtest" / "websocket_echo.py").rename(copy / "newtest" / "echo_socket.py")
    assert set(step04_names(copy).values()) == set(renames.values())
