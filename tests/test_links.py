"""Every file or directory the Markdown in this repository points a reader to exists."""

import re

import pytest

from tools.repository import REPO_ROOT

MARKDOWN_FILES = sorted(
    p
    for p in REPO_ROOT.rglob("*.md")
    if not {".venv", ".git", ".pytest_cache", "node_modules"} & set(p.parts)
)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# Backticked repository paths in prose, such as `notebooks/03_....ipynb` or `tools/show_tree.py`.
REPO_PATH = re.compile(
    r"`((?:notebooks|tests|tools|requirements|benchmarks|step0\d_\w+)/[\w./-]*)`"
)


@pytest.mark.parametrize("markdown", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_and_named_paths_exist(markdown):
    text = markdown.read_text()
    missing = []
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (markdown.parent / target).exists():
            missing.append(target)
    for path in REPO_PATH.findall(text):
        if "NN" in path:  # a pattern such as tests/inprocess/stepNN/, not one path
            continue
        if not ((REPO_ROOT / path).exists() or (markdown.parent / path).exists()):
            missing.append(path)
    assert not missing, f"{markdown.relative_to(REPO_ROOT)} points at missing paths: {missing}"
