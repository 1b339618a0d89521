"""Execute the notebooks in notebooks/ and write them back with their fresh outputs.

    .venv/django30/bin/python tools/execute_notebooks.py            # every notebook
    .venv/django30/bin/python tools/execute_notebooks.py 03         # the ones starting with 03

The committed outputs come from the default track, so run it with that track's python.
Each notebook runs in its own kernel, started explicitly with this interpreter (never a
system-wide kernelspec), with notebooks/ as its working directory. tests/test_notebooks.py
uses the same functions to execute the notebooks on every track and to spot stale outputs.
"""

import json
import re
import sys
import sysconfig
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
DEFAULT_TRACK_DJANGO = "3.0.14"
KERNEL_NAME = "tutorial-track"
CELL_TIMEOUT_SECONDS = 120


def notebook_paths(prefixes=()):
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        paths = [p for p in paths if p.name.startswith(tuple(prefixes))]
    return paths


def kernel_manager(kernel_dir, python=sys.executable):
    """A kernel manager that starts `python -m ipykernel_launcher`, whatever else is installed."""
    spec_dir = Path(kernel_dir) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({python})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def execute(notebook, python=sys.executable):
    """Run every cell of `notebook` (a NotebookNode, changed in place) in a fresh kernel."""
    with tempfile.TemporaryDirectory(prefix="tutorial-kernel-") as kernel_dir:
        manager = kernel_manager(kernel_dir, python)
        client = NotebookClient(
            notebook,
            km=manager,
            timeout=CELL_TIMEOUT_SECONDS,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
            allow_errors=False,  # a cell that raises fails the run: claims are assertions
            record_timing=False,  # timings would churn every diff of the committed files
        )
        try:
            client.execute()
        finally:
            # nbclient stops only kernels it created itself; this one was handed to it.
            if manager.has_kernel:
                manager.shutdown_kernel(now=False)
    return notebook


# What may differ between two runs of the same notebook on the same track.
VARYING = [
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0x<address>"),
    (re.compile(r"Task-\d+"), "Task-<n>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|s|seconds)\b"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(,\d+|\.\d+)?"), "<timestamp>"),
    (re.compile(r"\b[a-z]+\.[A-Za-z0-9_]{12}!\w+"), "<channel name>"),
]


def masked(text):
    for root, name in (
        (sysconfig.get_paths()["purelib"], "<site-packages>"),
        (str(REPO_ROOT), "<repo>"),
        (sys.prefix, "<venv>"),
    ):
        text = text.replace(root, name)
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text


def cell_text(cell):
    """The text a reader sees under one code cell. Streams are joined per stream, because
    stdout and stderr may interleave differently from one run to the next."""
    streams = {"stdout": "", "stderr": ""}
    others = []
    for output in cell.outputs:
        if output.output_type == "stream":
            streams[output.name] += output.text
        elif output.output_type == "error":
            others.append(f"[error] {output.ename}: {output.evalue}")
        else:
            data = output.get("data", {})
            others.append(data.get("text/plain", f"[{', '.join(sorted(data))}]"))
    parts = [f"[{name}]\n{text}" for name, text in streams.items() if text] + others
    return masked("\n".join(parts))


def cell_outputs(notebook):
    """Per code cell: its source and what it shows, masked, for comparing two runs."""
    return [(cell.source, cell_text(cell)) for cell in notebook.cells if cell.cell_type == "code"]


def main(argv):
    import django

    if django.get_version() != DEFAULT_TRACK_DJANGO:
        sys.exit(
            f"committed outputs come from the default track (Django {DEFAULT_TRACK_DJANGO}); "
            f"this python has Django {django.get_version()}: run .venv/django30/bin/python"
        )
    for path in notebook_paths(argv):
        notebook = nbformat.read(path, as_version=4)
        execute(notebook)
        nbformat.write(notebook, path)
        print(f"executed {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
