"""The commands a reader types in a step directory, and the ServerProcess that runs them.

The commands are the ones the step READMEs show; only the listening address is added, in
each server's own syntax. Tests never write into a step directory: one that needs a database
serves a copy of the step (copy_step, then migrate).
"""

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tools.repository import step_directory
from tools.server_process import HOST, ServerProcess, free_port, python_environment
from tools.tracks import interpreter_bin_directory

# The command a reader types in a step directory, per server, exactly as the READMEs show it.
README_COMMANDS = {
    "runserver": "python manage.py runserver",
    "daphne": "daphne newtest.asgi:application",
    "uvicorn": "uvicorn newtest.asgi:application",
}
SERVERS = tuple(README_COMMANDS)
ASGI_SERVERS = ("daphne", "uvicorn")
MIGRATE_COMMAND = "python manage.py migrate --noinput"
# Where every step keeps its database unless DATABASE_URL names a PostgreSQL (step 07).
SQLITE_FILE = "db.sqlite3"
# Names a directory for one test run (tools/run_tests.py makes it): migrate() keeps there the
# database and output of the run's first migration of each project, and gives the next fresh
# copy of that project a copy of them. A migration costs about 1.5 s of CPU, and a run makes
# over 30 copies of the same few projects.
MIGRATED_DATABASES = "TUTORIAL_MIGRATED_DATABASES"
# What a copy of a step leaves out: what running it made, not what a learner wrote.
# (Step 07 keeps its secret key and PostgreSQL's cluster in run/.)
NOT_COPIED = shutil.ignore_patterns(
    "db.sqlite3", "db.sqlite3-*", "__pycache__", "*.pyc", "staticfiles", "secret_key", "postgres"
)


def command_with_address(readme_command, port, host=HOST):
    """The README's command with the listening address added, in each server's own syntax.
    A port the README names (`daphne --port 8001 ...`) is replaced by `port`."""
    argv = shlex.split(readme_command)
    program = Path(argv[0]).name
    if "--port" in argv[:-1]:
        argv[argv.index("--port") + 1] = str(port)
        if program == "daphne" and "--bind" not in argv:
            return argv[:1] + ["--bind", host] + argv[1:]
        if program == "uvicorn" and "--host" not in argv:
            return argv + ["--host", host]
        if program in ("daphne", "uvicorn"):
            return argv
    if program == "python" and argv[1:3] == ["manage.py", "runserver"]:
        return argv + [f"{host}:{port}"]
    if program == "daphne":
        return argv[:1] + ["--bind", host, "--port", str(port)] + argv[1:]
    if program == "uvicorn":
        return argv + ["--host", host, "--port", str(port)]
    raise ValueError(f"don't know how to give an address to: {readme_command}")


def split_environment(readme_command):
    """The `NAME=value` assignments in front of a README's command line, and the command."""
    words = shlex.split(readme_command)
    assignments = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        assignments[name] = value
    return assignments, shlex.join(words)


def step_server(step, server, port=None, env=None, host=HOST, directory=None):
    """A ServerProcess (not yet started) for `step` under `server`, as its README runs it,
    from the step's directory or from `directory` (a copy of the step)."""
    port = port or free_port()
    argv = command_with_address(README_COMMANDS[server], port, host)
    cwd = directory or step_directory(step)
    return ServerProcess(argv, cwd, port, env=env, host=host, name=server)


def readme_server(step, readme_command, port=None, env=None, host=HOST, directory=None):
    """A ServerProcess (not yet started) for any server command line a README shows, such as
    `REDIS_URL=redis://127.0.0.1:6379/0 daphne --port 8001 newtest.asgi:application`: its
    port is replaced by `port` (a free one by default), and `env` overrides its assignments
    (a test points REDIS_URL at the Redis it started)."""
    assignments, command = split_environment(readme_command)
    port = port or free_port()
    argv = command_with_address(command, port, host)
    cwd = directory or step_directory(step)
    return ServerProcess(argv, cwd, port, env={**assignments, **(env or {})}, host=host)


def copy_step(step, parent_directory):
    """A copy of the step's directory inside `parent_directory`, without any database or
    byte-code a run of the original left behind; returns the copy's path."""
    source = step_directory(step)
    destination = Path(parent_directory) / source.name
    shutil.copytree(source, destination, ignore=NOT_COPIED)
    return destination


def manage(directory, command, env=None, timeout=120):
    """Runs `python manage.py <command>` (a string, as typed) in a step directory with the
    running track's python; returns its output, or raises with the output if it fails."""
    argv = ["python", "manage.py", *shlex.split(command)]
    result = subprocess.run(
        argv,
        cwd=directory,
        env=python_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} in {directory} failed:\n{result.stdout}")
    return result.stdout


def migrate(directory, env=None):
    """Applies the migrations of the project in `directory` (a copy of a step); returns what
    migrate printed. Within a test run (MIGRATED_DATABASES set) a fresh copy's SQLite
    database comes from the run's first migration of the same project instead."""
    arguments = MIGRATE_COMMAND.removeprefix("python manage.py ")
    databases = os.environ.get(MIGRATED_DATABASES)
    database = Path(directory) / SQLITE_FILE
    postgres = {**os.environ, **(env or {})}.get("DATABASE_URL")  # step 07, when set
    if not databases or database.exists() or postgres:
        return manage(directory, arguments, env=env)
    entry = Path(databases) / migrated_project_key(directory)
    with open(entry.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one migration per project, however many ask at once
        if not entry.is_dir():
            printed = manage(directory, arguments, env=env)
            entry.mkdir()
            shutil.copy2(database, entry / SQLITE_FILE)
            (entry / "printed.txt").write_text(printed)
            return printed
    shutil.copy2(entry / SQLITE_FILE, database)
    return (entry / "printed.txt").read_text()


def migrated_project_key(directory):
    """What a migrated database depends on: the interpreter that ran migrate (so the track's
    Django), the settings and every migration of the project in `directory`."""
    digest = hashlib.sha256(str(interpreter_bin_directory()).encode())
    files = sorted(Path(directory).glob("*/migrations/*.py")) + [
        Path(directory) / "newtest" / "settings.py"
    ]
    for path in files:
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return f"{Path(directory).name}-{digest.hexdigest()[:16]}"
