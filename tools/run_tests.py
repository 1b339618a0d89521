"""`make test`: the whole suite, or one step's tests, on every track named on the command line.

    python -m tools.run_tests [--step 06] django30 current [pytest options]

The tracks run side by side, and each track's tests in two lanes side by side: the tests that
talk to steps from outside (servers, browsers, READMEs, notebooks) are split between two pytest
processes (SECOND_PART names the files of the second), and after the second come the
directories under tests/inprocess/, a pytest process each, because every step's package is
called `newtest` and one Python process can import only one of them. A lane spends much of its
time waiting (on servers starting and stopping, on pauses a test needs): four lanes kept the
two cores 92% busy in a CI run. With `--step 06`, only that step's tests run, in
one lane: tests/test_step06_*.py in one process, then tests/inprocess/step06 in another.
Progress is printed as it comes (pytest's line of results per test file, and a line per
finished pytest process); at the end come the full outputs, track by track in a fixed order,
the reasons for every skipped test, the slowest tests of the whole run and each pytest
process's time, a check that no process started by the run is still alive, and one summary
line."""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from tools.durations_plugin import DURATIONS_FILE
from tools.leftover_processes import start_run, stop_leftovers
from tools.repository import REPO_ROOT, STEP_DIRECTORIES, step_directory
from tools.step_commands import MIGRATED_DATABASES
from tools.tracks import TRACKS, track_python

# Names a file to which the run writes every test's time as JSON ({"track test id": seconds}).
TEST_TIMES_FILE = "TEST_TIMES_FILE"

# -rs: pytest's short summary lists every skip with its reason (which tool to install);
# tools/durations_plugin.py writes each test's time for the list of the slowest at the end.
PYTEST_OPTIONS = ["-p", "no:cacheprovider", "-rs", "-p", "tools.durations_plugin"]
SLOWEST_SHOWN = 15
SKIP_LINE = re.compile(r"^SKIPPED \[\d+\] (.*)$", re.MULTILINE)
# A line of pytest's progress: `tests/test_links.py ......  [ 12%]`, or without the file name
# when one file's results need more than one line.
PROGRESS_LINE = re.compile(r"^(?:(\S+\.py) )?([.sFExX]+)\s+\[\s*\d+%\]$")
# ruff (configured in pyproject.toml): lint everywhere; format checked in the harness only.
RUFF_CHECKS = {
    "ruff check": ["check", "--output-format", "concise", "."],
    "ruff format --check": ["format", "--check", "tools", "tests", "benchmarks"],
}


def ruff_findings():
    """Runs ruff's lint and format check, printing a line for each; returns (failure lines, the
    findings in full, printed after the tests' outputs)."""
    failures, findings = [], []
    for label, arguments in RUFF_CHECKS.items():
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *arguments],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines = result.stdout.strip().splitlines()
        verdict = [line for line in lines if re.match(r"(Found|All checks|\d+ files?)", line)]
        print(f"{label}: {(verdict or lines or ['no output'])[-1]}", flush=True)
        if result.returncode != 0:
            findings.append(f"\n===== {label} =====\n{result.stdout}")
            failures.append(f"{label} (exit code {result.returncode}, findings above)")
    return failures, "".join(findings)


# The second of a track's two out-of-process pytest processes: the files that ended last when
# everything ran in one (the benchmark's tiny run, step 07's sites, the fresh install), and the
# READMEs' outputs (django30 only, where the first process took longer), about half of the
# suite's time in a CI run. A new test file goes to the first process unless named here.
SECOND_PART = [
    "tests/test_benchmark.py",
    "tests/test_readme_outputs.py",
    "tests/test_step06_busy_room.py",
    "tests/test_step06_room_throughput.py",
    "tests/test_step07_deploy.py",
    "tests/test_step_requirements.py",
]


def pytest_lanes(track, extra_args, step=None):
    """The pytest processes of one track, as lanes that run side by side, each a list of
    (label, argv) run one after the other: the whole suite in two lanes, or with `step`
    ("06") that step's test files and in-process tests in one."""
    base = [str(track_python(track)), "-m", "pytest", *PYTEST_OPTIONS, *extra_args]
    tests = REPO_ROOT / "tests"
    if step is None:
        in_process = sorted((tests / "inprocess").glob("step*"))
        first = ["tests", "--ignore=tests/inprocess", *(f"--ignore={f}" for f in SECOND_PART)]
        return [
            [("out of process, part 1", base + first)],
            [("out of process, part 2", base + SECOND_PART)]
            + [in_process_run(base, directory) for directory in in_process],
        ]
    lane = []
    files = sorted(tests.glob(f"test_step{step}_*.py"))
    if files:
        lane.append(("out of process", base + [str(f.relative_to(REPO_ROOT)) for f in files]))
    directory = tests / "inprocess" / f"step{step}"
    if directory.is_dir():
        lane.append(in_process_run(base, directory))
    return [lane]


def in_process_run(base, directory):
    return f"in process, {directory.name}", base + [str(directory.relative_to(REPO_ROOT))]


def step_number(step):
    """The two digits of a step given as 6 or 06; exits, naming the steps, if there is none."""
    try:
        return step_directory(step).name[4:6]
    except ValueError:
        numbers = [directory.name[4:6] for directory in STEP_DIRECTORIES]
        sys.exit(f"STEP={step}: there is no such step; the steps are {', '.join(numbers)}")


def follow_progress(lines, report):
    """Passes pytest's output through, calling `report("tests/test_x.py ....")` for each line of
    its progress as it comes (a test file's line is done when the file's last test is)."""
    test_file = ""
    for line in lines:
        progress = PROGRESS_LINE.match(line.rstrip())
        if progress:
            test_file = progress.group(1) or test_file
            report(f"{test_file} {progress.group(2)}")
        yield line


def count(outcome, summary):
    found = re.search(rf"(\d+) {outcome}", summary)
    return int(found.group(1)) if found else 0


def slowest(durations, shown=SLOWEST_SHOWN):
    """The lines naming the `shown` slowest of `durations` ({(track, test id): seconds})."""
    ranked = sorted(durations.items(), key=lambda item: item[1], reverse=True)[:shown]
    return [f"{seconds:7.1f} s  {track:<9} {test}" for (track, test), seconds in ranked]


class TrackRun:
    """One lane of a track's pytest processes, run one after the other in a thread of their
    own."""

    def __init__(self, track, lane, extra_args, started):
        self.track = track
        self.lane = lane
        self.extra_args = extra_args
        self.started = started
        self.outputs = []
        self.failures = []
        self.skip_reasons = []
        self.totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "deselected": 0}
        self.durations = {}  # (track, test id): seconds, setup and teardown included
        self.process_times = []  # (label, seconds, number of tests timed)

    def progress(self, text):
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed / 60:4.1f} min] {self.track}, {text}", flush=True)

    def run(self):
        for label, argv in self.lane:
            with tempfile.NamedTemporaryFile(suffix=".json") as durations_file:
                began = time.monotonic()
                process = subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env={**environment_for_tests(), DURATIONS_FILE: durations_file.name},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                stdout = "".join(follow_progress(process.stdout, self.progress))
                process.wait()
                timed = read_durations(durations_file.name)
            self.durations.update({(self.track, test): s for test, s in timed.items()})
            self.process_times.append((label, time.monotonic() - began, len(timed)))
            self.outputs.append(f"\n===== track {self.track}: {label} =====\n{stdout}")
            lines = stdout.strip().splitlines()
            summary = lines[-1].strip("= ") if lines else "no output"
            for outcome in ("passed", "failed", "skipped", "deselected"):
                self.totals[outcome] += count(outcome, summary)
            self.totals["errors"] += count("error", summary)
            self.skip_reasons += [f"{self.track}: {r}" for r in SKIP_LINE.findall(stdout)]
            self.progress(f"{label}: {summary}")
            # Exit code 5 means "no tests collected": a broken run, never a pass, unless the
            # pytest options given (`make test PYTEST_ARGS="-k ..."`) selected none here.
            if process.returncode == 5 and self.extra_args:
                continue
            if process.returncode != 0:
                self.failures.append(
                    f"{self.track}: {label} (pytest exit code {process.returncode})"
                )


def environment_for_tests():
    """This process's environment without what make passes down to the commands it runs:
    `make test STEP=06` puts STEP=06 in MAKEFLAGS, and a make that a test starts (`make run
    STEP=03`, `make -n notebooks`) would take it as its own."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def read_durations(path):
    """{test id: seconds} as tools/durations_plugin.py wrote them (nothing if pytest stopped
    before its end)."""
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}


def plural(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def print_times(runs):
    """The slowest tests of the whole run, then each pytest process's time."""
    durations = {key: s for run in runs for key, s in run.durations.items()}
    if durations:
        print(
            f"\n===== the {min(SLOWEST_SHOWN, len(durations))} slowest of {len(durations)} "
            "tests (setup and teardown included: a module's server counts in its first test) ====="
        )
        print("\n".join(slowest(durations)))
    times_file = os.environ.get(TEST_TIMES_FILE)
    if times_file:  # every test's time, not only the slowest, for whoever plans a faster suite
        with open(times_file, "w") as file:
            json.dump({f"{track} {test}": s for (track, test), s in durations.items()}, file)
    print("\n===== time per pytest process =====")
    for run in runs:
        for label, seconds, tests in run.process_times:
            print(f"{seconds / 60:5.1f} min  {run.track:<9} {label} ({plural(tests, 'test')})")


def main():
    # `--step NN` first, if given; then the track names choose the tracks; everything after
    # them goes to pytest.
    arguments = sys.argv[1:]
    step = None
    if arguments[:1] == ["--step"]:
        step = step_number(arguments[1])
        arguments = arguments[2:]
    named = 0
    while named < len(arguments) and arguments[named] in TRACKS:
        named += 1
    # The outputs come in the tracks' fixed order (django30 first), whatever order was asked.
    tracks = sorted(arguments[:named] or TRACKS, key=list(TRACKS).index)
    extra_args = arguments[named:]
    run_id = start_run()
    started = time.monotonic()
    which = f"step {step}'s tests" if step else "the tests"
    print(
        f"Running {which} on {', '.join(tracks)} side by side; progress as each test file and "
        "each pytest process finishes, the full outputs and the slowest tests at the end.",
        flush=True,
    )
    # Lint first: it takes a second, and its findings fail the run after the tests have run.
    lint_failures, lint_findings = ruff_findings()
    # The run's migrated databases (tools/step_commands.migrate), removed when it ends.
    databases = tempfile.TemporaryDirectory(prefix="migrated-databases-")
    os.environ[MIGRATED_DATABASES] = databases.name
    # The servers under test take free ports, so the tracks and lanes never collide.
    runs = [
        TrackRun(track, lane, extra_args, started)
        for track in tracks
        for lane in pytest_lanes(track, extra_args, step)
    ]
    threads = [threading.Thread(target=run.run) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "deselected": 0}
    failures, skip_reasons = list(lint_failures), []
    for run in runs:
        sys.stdout.write("".join(run.outputs))
        for outcome, number in run.totals.items():
            totals[outcome] += number
        failures += run.failures
        skip_reasons += run.skip_reasons
    sys.stdout.write(lint_findings)
    print_times(runs)

    leftovers = stop_leftovers(run_id)
    databases.cleanup()
    if leftovers:
        failures.append("processes left running (killed now): " + "; ".join(leftovers))

    minutes = (time.monotonic() - started) / 60
    print(f"\n===== all tracks ({', '.join(tracks)}) in {minutes:.1f} min =====")
    if skip_reasons:
        print(f"Skipped ({len(skip_reasons)} lines, with what to install):")
        for reason in skip_reasons:
            print(f"  {reason}")
    if totals["deselected"]:
        because = "your pytest options, and " if extra_args else ""
        print(
            f"{totals['deselected']} deselected: {because}tests marked for the other track "
            "(@pytest.mark.track), which run on that track: deselected here, not skipped."
        )
    for failure in failures:
        print(f"FAILED: {failure}")
    failed = totals["failed"] + totals["errors"] + (1 if failures and not totals["failed"] else 0)
    print(f"{totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
