"""`make test`: the whole suite, on every track named on the command line.

The tracks run side by side. Per track, one pytest process runs everything that talks to
steps from outside (servers, browsers, READMEs, notebooks), and each directory under
tests/inprocess/ gets a pytest process of its own, because every step's package is called `newtest` and one Python
process can import only one of them. At the end it checks that no process started by the
run is still alive, and prints one summary line for the whole run.
"""

import concurrent.futures
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_MARKER = "TUTORIAL_TEST_RUN"


def pytest_runs(track, extra_args):
    python = REPO_ROOT / ".venv" / track / "bin" / "python"
    base = [str(python), "-m", "pytest", "-p", "no:cacheprovider", *extra_args]
    yield "out of process", base + ["tests", "--ignore=tests/inprocess"]
    for step_tests in sorted((REPO_ROOT / "tests" / "inprocess").glob("step*")):
        yield f"in process, {step_tests.name}", base + [str(step_tests.relative_to(REPO_ROOT))]


def count(outcome, summary):
    found = re.search(rf"(\d+) {outcome}", summary)
    return int(found.group(1)) if found else 0


def leftover_processes(run_id):
    """Processes that inherited this run's marker in their environment and still live."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(RUN_MARKER) == run_id:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_track(track, extra_args):
    """Runs one track's pytest processes one after the other; returns output, counts, failures."""
    output, failures = [], []
    totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for label, argv in pytest_runs(track, extra_args):
        result = subprocess.run(
            argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        output.append(f"\n===== track {track}: {label} =====\n{result.stdout}")
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        for outcome in ("passed", "failed", "skipped"):
            totals[outcome] += count(outcome, summary)
        totals["errors"] += count("error", summary)
        print(f"track {track}, {label}: {summary.strip('= ')}", flush=True)
        # Exit code 5 means "no tests collected": a broken run, never a pass.
        if result.returncode != 0:
            failures.append(f"{track}: {label} (pytest exit code {result.returncode})")
    return "".join(output), totals, failures


def main():
    tracks = [a for a in sys.argv[1:] if not a.startswith("-")] or ["django30", "current"]
    extra_args = [a for a in sys.argv[1:] if a.startswith("-")]
    run_id = uuid.uuid4().hex
    os.environ[RUN_MARKER] = run_id
    totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    started = time.monotonic()
    # The tracks run side by side (the servers under test take free ports, so they never
    # collide); each track's output is printed whole when that track is done.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(tracks)) as pool:
        runs = {pool.submit(run_track, track, extra_args): track for track in tracks}
        for finished in concurrent.futures.as_completed(runs):
            output, track_totals, track_failures = finished.result()
            sys.stdout.write(output)
            sys.stdout.flush()
            for outcome, number in track_totals.items():
                totals[outcome] += number
            failures += track_failures

    time.sleep(1)
    leftovers = leftover_processes(run_id)
    if leftovers:
        failures.append(
            "processes left running: "
            + "; ".join(f"{p.pid} {' '.join(p.info['cmdline'][:4])}" for p in leftovers)
        )
        for process in leftovers:
            process.kill()

    minutes = (time.monotonic() - started) / 60
    print(f"\n===== all tracks ({', '.join(tracks)}) in {minutes:.1f} min =====")
    for failure in failures:
        print(f"FAILED: {failure}")
    failed = totals["failed"] + totals["errors"] + (1 if failures and not totals["failed"] else 0)
    print(f"{totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
