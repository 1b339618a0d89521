"""Prints a step directory as the tree its README shows under "## Files"."""

import sys
from pathlib import Path

# db.sqlite3 and the WAL files SQLite keeps beside it while step 06 and 07 run (chat/sqlite_wal.py)
IGNORED = {"__pycache__", "db.sqlite3", "db.sqlite3-shm", "db.sqlite3-wal", ".ipynb_checkpoints"}


def tree_lines(directory, prefix=""):
    entries = sorted(
        (
            p
            for p in Path(directory).iterdir()
            if p.name not in IGNORED and not p.name.endswith(".pyc")
        ),
        key=lambda p: p.name,
    )
    for index, entry in enumerate(entries):
        last = index == len(entries) - 1
        yield prefix + ("└── " if last else "├── ") + entry.name + ("/" if entry.is_dir() else "")
        if entry.is_dir():
            yield from tree_lines(entry, prefix + ("    " if last else "│   "))


def render_tree(directory):
    directory = Path(directory)
    return "\n".join([directory.name + "/", *tree_lines(directory)])


if __name__ == "__main__":
    print(render_tree(sys.argv[1]))
