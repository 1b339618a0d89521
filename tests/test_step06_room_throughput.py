"""The room throughput sweep (benchmarks/room_throughput.py) for steps 05 and 06: it runs, its
results are complete, and the figures the step READMEs quote are the block it renders from the
committed results file (freshness, never the speed: speed goals live in the benchmark)."""

import json
import subprocess
import sys

import pytest

from benchmarks import room_throughput, step06_message_cost
from tests.system_tools import require_tool
from tools.repository import REPO_ROOT, step_directory
from tools.tracks import running_track

STEPS = room_throughput.STEPS


def test_a_tiny_sweep_measures_every_step_server_and_layer(tmp_path):
    """Each server and each layer once (the tiny configuration's pairs), for both steps."""
    require_tool("redis-server", "sudo apt-get install redis-server")
    output = tmp_path / "room.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.room_throughput",
            "--config",
            "tiny",
            "--tracks",
            running_track(),
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        check=True,
        timeout=600,
    )
    summary = json.loads(output.read_text())
    rows = room_throughput.all_rows(summary)
    config = room_throughput.CONFIGS["tiny"]
    measured = {(r["step"], r["server"], r["layer"], r["offered_rate"]) for r in rows}
    assert measured == {
        (step, server, layer, rate)
        for step in STEPS
        for server, layer in config["pairs"]
        for rate in config["rates"]
    }
    assert {server for server, _ in config["pairs"]} == set(room_throughput.SERVERS)
    assert {layer for _, layer in config["pairs"]} == set(room_throughput.LAYERS)
    for row in rows:
        assert row["track"] == running_track() and row["clients"] == config["clients"]
        assert row["sent"] > 0 and 0 <= row["delivered_fraction"] <= 1
        assert row["accepted"] + row["refused"] == row["sent"]
        assert row["reached_all"] <= row["accepted"]
    for step in STEPS:
        block = room_throughput.render_block(summary, step)
        assert block.count("\n| " + running_track() + " | ") == len(config["pairs"])


def test_a_readme_block_is_replaced_between_its_markers_and_nothing_else():
    summary = {
        "date": "2026-01-01 00:00 UTC",
        "machine": {"cpu": "CPU", "cores": 2},
        "config_name": "tiny",
        "config": room_throughput.CONFIGS["tiny"],
        "tracks": [
            {
                "rows": [
                    {
                        "track": "django30",
                        "step": "05",
                        "server": "daphne",
                        "layer": "memory",
                        "offered_rate": 20,
                        "sent": 20,
                        "sent_rate": 20.0,
                        "accepted": 20,
                        "refused": 0,
                        "delivered_fraction": 0.5,
                        "reached_all": 3,
                        "p50_ms": 1.5,
                        "p99_ms": 25.0,
                    }
                ]
            }
        ],
    }
    block = room_throughput.render_block(summary, "05")
    assert "| django30 | daphne | in-memory | 50% · 1.5 ms / 25 ms |" in block
    readme = "before\n<!-- room-throughput: step05 -->\nafter\n"
    written = room_throughput.replace_block(readme, "05", block)
    assert (
        written
        == f"before\n<!-- room-throughput: step05 -->\n{block}<!-- /room-throughput -->\nafter\n"
    )
    assert room_throughput.shown_block(written, "05") == block
    assert room_throughput.replace_block(written, "05", "new\n").count("room-throughput") == 2


@pytest.mark.parametrize("step", STEPS)
def test_the_readme_quotes_the_committed_room_throughput_figures(step):
    readme = (step_directory(step) / "README.md").read_text()
    results = room_throughput.load_results()
    shown = room_throughput.shown_block(readme, step)
    assert shown is not None, (
        f"step {step}'s README has no generated block after its room-throughput marker; "
        "write it with: python -m benchmarks.room_throughput --update-readmes"
    )
    assert shown == room_throughput.render_block(results, step), (
        "the README's figures are not the committed results' block; "
        "rewrite it with: python -m benchmarks.room_throughput --update-readmes"
    )


def test_step06s_readme_quotes_the_committed_message_cost_figures():
    readme = (step_directory("06") / "README.md").read_text()
    results = json.loads(step06_message_cost.DEFAULT_RESULTS.read_text())
    assert step06_message_cost.shown_block(readme) == step06_message_cost.render(results), (
        "step 06's README does not show the committed message-cost table; rewrite it with: "
        "python -m benchmarks.step06_message_cost --update-readme"
    )
