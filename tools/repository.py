"""Where things are in this repository: its root and its step directories."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STEP_DIRECTORIES = sorted(path for path in REPO_ROOT.glob("step[0-9][0-9]_*") if path.is_dir())


def step_directory(step):
    """The directory of `step`, given as 6, "06" or "step06_reliable_chat"."""
    if isinstance(step, int) or str(step).isdigit():
        prefix = f"step{int(step):02d}_"
        matches = [path for path in STEP_DIRECTORIES if path.name.startswith(prefix)]
        if len(matches) != 1:
            raise ValueError(f"no single step directory for step {step}: {matches}")
        return matches[0]
    path = REPO_ROOT / step
    if not path.is_dir():
        raise ValueError(f"no step directory {step!r}")
    return path
