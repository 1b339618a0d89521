"""Which code a results file measured, so two runs can be tied to the code behind them.

    from benchmarks.provenance import provenance, described
    summary["provenance"] = provenance()  # before measuring
    described(summary.get("provenance"))  # "commit 3a8f04d, tree clean", for a report

`provenance()` returns {"commit": the full hash of HEAD, "tree_clean": whether no tracked file
differs from it, "measured_at": "YYYY-MM-DD HH:MM UTC"}. Untracked files do not count against a
clean tree (a worktree's `.venv` link is one). Outside a git checkout, or without git, "commit"
and "tree_clean" are None.
"""

import datetime
import subprocess

from tools.repository import REPO_ROOT


def git(*args, repo=REPO_ROOT):
    """git's output, or None if git is missing or fails (no checkout)."""
    try:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return result.stdout if result.returncode == 0 else None


def provenance(repo=REPO_ROOT):
    commit = git("rev-parse", "HEAD", repo=repo)
    changes = git("status", "--porcelain", "--untracked-files=no", repo=repo)
    return {
        "commit": commit.strip() if commit else None,
        "tree_clean": None if commit is None or changes is None else changes.strip() == "",
        "measured_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def described(record):
    """One phrase for a report: "commit 3a8f04d, tree clean", "commit 3a8f04d with uncommitted
    changes", or "commit not recorded" (a results file from before this module, or no git)."""
    if not record or not record.get("commit"):
        return "commit not recorded"
    state = ", tree clean" if record["tree_clean"] else " with uncommitted changes"
    return f"commit {record['commit'][:7]}{state}"
