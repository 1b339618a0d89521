"""Start one step's Django project under a real server process, and always stop it.

This is the one launcher of the repository: `make run` uses it to serve a step to a
reader, and the test suite uses it to serve a step to a test. The commands it runs are
the ones the step READMEs show, with only the address added.
"""

import atexit
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# The command a reader types in a step directory, per server, exactly as the READMEs show it.
README_COMMANDS = {
    "runserver": "python manage.py runserver",
    "daphne": "daphne newtest.asgi:application",
    "uvicorn": "uvicorn newtest.asgi:application",
}
SERVERS = tuple(README_COMMANDS)


def step_directory(step):
    """`step` is "04" or 4 or "step04_custom_router"; returns that step's directory."""
    if isinstance(step, int) or str(step).isdigit():
        matches = sorted(REPO_ROOT.glob(f"step{int(step):02d}_*"))
        if len(matches) != 1:
            raise ValueError(f"no single step directory for step {step}: {matches}")
        return matches[0]
    return REPO_ROOT / step


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


def free_port():
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def python_environment(extra=None):
    """Environment for a child process: this interpreter's bin directory first on PATH, so
    `python`, `daphne` and `uvicorn` are the ones of the running track."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"  # so the log file shows each line as it is written
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra or {})
    return env


class ServerProcess:
    """A server started from a step directory, its output going to a log file."""

    def __init__(self, argv, cwd, port, env=None, host=HOST):
        self.argv = list(argv)
        self.cwd = Path(cwd)
        self.port = port
        self.host = host
        self.env = python_environment(env)
        self.log_file = new_log_file()
        self.process = None

    @property
    def http_url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self):
        return f"ws://{self.host}:{self.port}"

    def start(self, ready_timeout=60):
        # A session of its own, so stop() can signal runserver's autoreload child as well.
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_until_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{shlex.join(self.argv)} exited with {self.process.returncode}:\n"
                    + self.log_text()
                )
            try:
                # Any HTTP answer, even an error page, means the server is serving.
                urllib.request.urlopen(self.http_url + "/", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(
            f"{shlex.join(self.argv)} did not answer on {self.http_url} within "
            f"{timeout}s:\n{self.log_text()}"
        )

    def log_text(self):
        return Path(self.log_file.name).read_text(errors="replace")

    def wait_for_log(self, text, timeout=10, since=0):
        """Waits until `text` appears in the log after its first `since` characters (take
        len(log_text()) before acting, to wait for what that action logs); returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            if text in log[since:]:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the server log:\n{log}")
            time.sleep(0.05)

    def stop(self, timeout=10):
        """Stops the whole process group: politely first, then for good."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        # runserver's autoreload child may outlive its parent for a moment.
        deadline = time.monotonic() + timeout
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log_file.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def new_log_file():
    """A file for a server's output, readable after the server stops, removed when we exit."""
    log_file = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
    atexit.register(_remove_if_present, log_file.name)
    return log_file


def _remove_if_present(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def step_server(step, server, port=None, env=None, host=HOST):
    """A ServerProcess (not yet started) for `step` under `server`, as its README runs it."""
    port = port or free_port()
    argv = command_with_address(README_COMMANDS[server], port, host)
    return ServerProcess(argv, step_directory(step), port, env=env, host=host)


def readme_server(step, readme_command, port=None, env=None, host=HOST):
    """A ServerProcess (not yet started) for any server command line a README shows, such as
    `REDIS_URL=redis://127.0.0.1:6379/0 daphne --port 8001 newtest.asgi:application`: its
    port is replaced by `port` (a free one by default), and `env` overrides its assignments
    (a test points REDIS_URL at the Redis it started)."""
    assignments, command = split_environment(readme_command)
    port = port or free_port()
    argv = command_with_address(command, port, host)
    return ServerProcess(
        argv, step_directory(step), port, env={**assignments, **(env or {})}, host=host
    )
