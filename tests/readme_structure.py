"""The parts of a step README that describe files: "## What changed" and "## Files"."""

import filecmp
import re
from pathlib import Path

from tools.show_tree import IGNORED


def section(readme_text, heading):
    """The text under `## heading`, up to the next `## ` heading."""
    found = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", readme_text, re.M | re.S)
    assert found, f"no '## {heading}' section"
    return found.group(1)


def listed_changes(readme_text):
    """Paths named at the head of the bullets of "## What changed" (before the first colon)."""
    heads = re.findall(r"^- ((?:`[^`]+`(?:, )?)+):", section(readme_text, "What changed"), re.M)
    return {path for head in heads for path in re.findall(r"`([^`]+)`", head)}


def shown_tree(readme_text):
    block = re.search(r"```text\n(.*?)```", section(readme_text, "Files"), re.S)
    assert block, "no ```text block under '## Files'"
    return block.group(1).rstrip("\n")


def files_of(directory):
    return {
        p.relative_to(directory).as_posix()
        for p in Path(directory).rglob("*")
        if p.is_file() and not IGNORED.intersection(p.parts) and p.suffix != ".pyc"
    }


def real_changes(previous, current):
    """Files added, removed or edited between two step directories, README.md aside."""
    before, after = files_of(previous), files_of(current)
    changed = before ^ after
    changed |= {
        name
        for name in before & after
        if not filecmp.cmp(Path(previous) / name, Path(current) / name, shallow=False)
    }
    changed.discard("README.md")
    return changed
