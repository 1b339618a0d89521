"""The notebooks run, on this track, in a kernel of this track's own interpreter, and the outputs
committed with them are the ones they produce today on the default track.

One exception to "the same outputs": a code cell tagged `measurement` (notebook 06 times a thread
hop) prints figures of the machine it runs on. Its source is compared, its outputs are not, and it
may assert nothing, so a figure can never fail the build.

Each notebook runs in a kernel process of its own (started by nbclient, see
tools/execute_notebooks.py), so each may import its own step's `newtest`.
"""

import json
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import nbformat
import pytest

from tools.execute_notebooks import NOTEBOOKS, cell_outputs, execute, notebook_paths
from tools.repository import REPO_ROOT
from tools.server_process import HOST, free_port
from tools.tracks import running_track

PATHS = notebook_paths()
EXPECTED = [
    "01_what_is_asgi.ipynb",
    "02_reading_djangos_asgihandler.ipynb",
    "03_the_error_without_a_server.ipynb",
    "04_a_router_by_hand.ipynb",
    "05_inside_channels.ipynb",
    "06_async_safety_and_thread_hops.ipynb",
]
MEASUREMENT_TAG = "measurement"
# Prepended to every notebook before it runs, and dropped again before outputs are compared.
KERNEL_CHECK = f"""\
import sys, pathlib
assert sys.executable == {sys.executable!r}, sys.executable
assert pathlib.Path.cwd() == pathlib.Path({str(NOTEBOOKS)!r}), pathlib.Path.cwd()
print("kernel:", sys.executable)
"""

_executed = {}


def executed(path):
    """The notebook at `path`, run once per test session on this track."""
    if path not in _executed:
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.insert(0, nbformat.v4.new_code_cell(KERNEL_CHECK))
        execute(notebook)
        kernel_check = notebook.cells.pop(0)
        assert kernel_check.outputs[0].text == f"kernel: {sys.executable}\n"
        _executed[path] = notebook
    return _executed[path]


def test_the_notebooks_are_there():
    assert [p.name for p in PATHS] == EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_runs_without_error_in_this_tracks_kernel(path):
    notebook = executed(path)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count for c in code_cells)
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_every_notebook_asserts_its_claims(path):
    code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert sum(source.count("assert ") for source in code) >= 5


@pytest.mark.track("django30")
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_committed_outputs_are_what_the_notebook_prints_today(path):
    committed_notebook = nbformat.read(path, as_version=4)
    committed = cell_outputs(committed_notebook)
    fresh = cell_outputs(executed(path))
    assert [source for source, _ in committed] == [source for source, _ in fresh]
    measured = measurement_cells(committed_notebook)
    stale = [
        f"cell {number}:\n--- committed\n{old}\n--- today\n{new}"
        for number, ((_, old), (_, new)) in enumerate(zip(committed, fresh, strict=False))
        if old != new and number not in measured
    ]
    assert not stale, (
        "regenerate with: .venv/django30/bin/python tools/execute_notebooks.py\n" + "\n".join(stale)
    )


def measurement_cells(notebook):
    """Positions, among the code cells, of the cells tagged as measurements."""
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    return {n for n, c in enumerate(code_cells) if MEASUREMENT_TAG in c.metadata.get("tags", [])}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_measurement_cells_print_and_assert_nothing(path):
    notebook = nbformat.read(path, as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number in measurement_cells(notebook):
        assert "assert" not in code_cells[number].source, f"measurement cell {number} asserts"
    fresh = [c for c in executed(path).cells if c.cell_type == "code"]
    for number in measurement_cells(notebook):
        assert any(o.output_type == "stream" and o.text.strip() for o in fresh[number].outputs)


def test_notebook_06_measures_a_hop_in_a_tagged_cell():
    notebook = nbformat.read(NOTEBOOKS / "06_async_safety_and_thread_hops.ipynb", as_version=4)
    assert len(measurement_cells(notebook)) == 1


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_outputs_name_no_absolute_path_of_this_machine(path):
    for notebook in (nbformat.read(path, as_version=4), executed(path)):
        shown = json.dumps([c.get("outputs", []) for c in notebook.cells])
        assert str(REPO_ROOT) not in shown
        assert sys.prefix not in shown
        assert "site-packages/" not in shown


def test_committed_outputs_come_from_the_default_track():
    notebook = nbformat.read(NOTEBOOKS / "02_reading_djangos_asgihandler.ipynb", as_version=4)
    assert "Django 3.0.14\n" in notebook.cells[1].outputs[0].text


def test_notebooks_readme_links_every_notebook():
    readme = (NOTEBOOKS / "README.md").read_text()
    linked = re.findall(r"\]\((\d\d_\w+\.ipynb)\)", readme)
    assert linked == EXPECTED


def make_notebooks_command(track):
    """The command `make notebooks` runs for `track`, as make itself prints it."""
    printed = (
        subprocess.run(
            ["make", "-n", "notebooks", f"TRACK={track}"],
            cwd=REPO_ROOT,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        .stdout.strip()
        .splitlines()
    )
    (command,) = [line for line in printed if "jupyter" in line]
    return shlex.split(command)


def test_make_notebooks_serves_the_notebooks_with_this_tracks_jupyter(tmp_path):
    """`make notebooks`'s own command, on a free loopback port and without a browser."""
    argv = make_notebooks_command(running_track())
    assert argv[0] == f".venv/{running_track()}/bin/jupyter" and "notebooks/" in argv
    port, token = free_port(), "tutorial-test"
    log_path = tmp_path / "jupyter.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            argv
            + [
                "--no-browser",
                f"--ServerApp.ip={HOST}",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        contents = wait_for_json(
            f"http://{HOST}:{port}/api/contents?token={token}", process, log_path
        )
        names = sorted(item["name"] for item in contents["content"] if item["type"] == "notebook")
        assert names == EXPECTED
        specs = wait_for_json(
            f"http://{HOST}:{port}/api/kernelspecs?token={token}", process, log_path
        )
        # jupyter_client starts a kernelspec's "python" as the server's own interpreter, which
        # for .venv/<track>/bin/jupyter is the track's python.
        assert specs["default"] == "python3"
        assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] in ("python", sys.executable)
    finally:
        stop_jupyter(process)


def wait_for_json(url, process, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text()
            hint = ""
            if "Running as root is not recommended" in log:
                hint = (
                    "\nmake notebooks runs as root here (CI does): its jupyter needs --allow-root"
                )
            raise AssertionError(
                f"jupyter notebook exited with {process.returncode}{hint}\n{log[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise AssertionError(f"no answer from {url} within {timeout}s")


def stop_jupyter(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # jupyter asks to confirm on SIGINT; TERM just stops
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
