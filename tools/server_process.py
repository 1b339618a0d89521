"""A server process on a loopback port: started, proved ready, and always stopped.

This is the one launcher of the repository. `make run`, the tests and the benchmark start
every server (a step's runserver, daphne or uvicorn, a private redis-server) through
ServerProcess, so they all share the same three promises:
- a port another program already listens on is refused before anything starts (PortTaken);
- "ready" means the process we started listens on the port and answers, never a stranger;
- stop() ends the whole process group (runserver's autoreload child too), politely first.
"""

import atexit
import contextlib
import errno
import fcntl
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools.leftover_processes import note_session
from tools.tracks import interpreter_bin_directory
from tools.waiting import wait_until

HOST = "127.0.0.1"


class PortTaken(RuntimeError):
    """Another program already listens on the port a server was asked to use."""

    def __init__(self, host, port):
        super().__init__(f"port {port} on {host} is already in use by another program")
        self.host = host
        self.port = port


# The line each server logs for the launcher's readiness request (ServerProcess.answers, a GET
# for /): Django's runserver, daphne, uvicorn, and Channels' runserver. A reader never made that
# request, so what shows a server's log to a reader (make run, the README outputs) leaves it out.
READINESS_REQUEST_LINE = re.compile(
    r'^(?:.*"GET / HTTP/1\.1" 200|.*"GET /" 200|HTTP GET / 200 ).*\n?', re.MULTILINE
)

# The ports free_port handed out lately, to any process on this machine: a port is not handed
# out again for RESERVATION_SECONDS, time enough for whoever got it to bind it. Without it two
# pytest processes (make test runs the tracks side by side), or two servers of one deploy
# stack, could be given the same free port, and the second server to start fails to bind.
PORT_RESERVATIONS = Path(tempfile.gettempdir()) / "tutorial-port-reservations.json"
RESERVATION_SECONDS = 120


def free_port(candidates=None):
    """A TCP port on the loopback interface that no socket is bound to right now and that no
    other caller got lately, chosen below the kernel's range for outgoing connections: a port
    from that range (what binding to port 0 hands out) can be taken by any client's socket
    before the server gets to bind it. `candidates` narrows the choice (a range of ports)."""
    lowest_outgoing = outgoing_port_range()[0]
    candidates = candidates or range(max(1024, lowest_outgoing - 12000), lowest_outgoing)
    with open(PORT_RESERVATIONS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one reader-and-writer of the reservations at a time
        now = time.time()
        try:
            reserved = json.loads(PORT_RESERVATIONS.read_text())
        except (OSError, ValueError):
            reserved = {}
        reserved = {port: at for port, at in reserved.items() if now - at < RESERVATION_SECONDS}
        for _ in range(200):
            port = random.choice(candidates)
            if str(port) in reserved:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind((HOST, port))  # no SO_REUSEADDR: any socket on the port refuses it
                except OSError:
                    continue
            reserved[str(port)] = now
            PORT_RESERVATIONS.write_text(json.dumps(reserved))
            return port
    raise RuntimeError(f"no free port in {candidates} after 200 tries")


def outgoing_port_range():
    """The ports the kernel picks for outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_is_taken(port, host=HOST):
    """True if something listens on host:port (a connection merely in TIME_WAIT does not count)."""
    with socket.socket() as probe:
        # The same option the servers set, so a port our last server just left is not "taken".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def python_environment(extra=None):
    """Environment for a child process: this interpreter's bin directory first on PATH, so
    `python`, `daphne` and `uvicorn` are the ones of the running track."""
    env = dict(os.environ)
    env["PATH"] = str(interpreter_bin_directory()) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"  # so the log file shows each line as it is written
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra or {})
    return env


class ServerProcess:
    """A server started from a directory, its output (stdout and stderr) going to a log file
    that survives restarts, so a mark taken before a restart still means the same place."""

    def __init__(self, argv, cwd, port, env=None, host=HOST, name=None):
        self.argv = list(argv)
        self.cwd = Path(cwd)
        self.port = port
        self.host = host
        self.name = name or Path(self.argv[0]).name
        self.env = python_environment(env)
        self.log_path = new_log_path()
        self.process = None

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} on {self.host}:{self.port}>"

    @property
    def http_url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self):
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self):
        return self.process.pid

    def start(self, ready_timeout=60):
        # Any failure stops what was started, and lets a subclass's stop() remove what it
        # made before starting (Redis's and PostgreSQL's directories), even when nothing ran.
        try:
            if port_is_taken(self.port, self.host):
                raise PortTaken(self.host, self.port)
            with open(self.log_path, "ab") as log:
                # A session of its own, so stop() can signal runserver's autoreload child too.
                self.process = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            # Found at the end of a test run even if it writes over its environment (nginx).
            note_session(self.process.pid)
            wait_until(
                self.is_ready,
                timeout=ready_timeout,
                message=lambda: (
                    f"{self.command_line()} to answer on {self.http_url}:\n" + self.log_text()
                ),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def command_line(self):
        return shlex.join(self.argv)

    def is_ready(self):
        """True once our own process group listens on the port and answers on it."""
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.command_line()} exited with {self.process.returncode}:\n{self.log_text()}"
            )
        return self.listens() and self.answers()

    def listens(self):
        """True if a process of this server's process group holds the listening socket."""
        # The readiness poll asks 20 times a second while a server loads. A refused connection
        # costs next to nothing, while the kernel's table of TCP sockets lists every socket on
        # the machine, each connection a load test left in TIME_WAIT included: read at that
        # rate it cost the benchmark's tiny run 14 of its 16 CPU-s. So the table is read only
        # once something accepts connections, and the group's sockets (a walk of every
        # process in /proc) only once something listens.
        if not accepts_connections(self.host, self.port):
            return False
        listening = listening_socket_inodes(self.port)
        return bool(listening and listening & group_socket_inodes(self.process.pid))

    def answers(self):
        """Any HTTP answer, even an error page, means the server is serving."""
        try:
            urllib.request.urlopen(self.http_url + "/", timeout=2).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def log_text(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """A place in the log: what is logged after it is what `log_after(mark)` returns."""
        return len(self.log_text())

    def log_after(self, mark):
        return self.log_text()[mark:]

    def wait_for_log(self, text, after=0, timeout=10):
        """Waits until `text` is in the log after `after` (a log_mark() taken before the
        action that should log it); returns the log after that mark."""
        return wait_until(
            lambda: text in self.log_after(after) and self.log_after(after),
            timeout=timeout,
            message=lambda: f"{text!r} in the log of {self.name}:\n{self.log_after(after)}",
        )

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=10):
        """Stops the whole process group: politely first, then for good."""
        if self.process is None:
            return
        group = self.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
            try:
                self.process.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        # runserver's autoreload child may outlive its parent for a moment.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not group_alive(group), timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)

    def restart(self, ready_timeout=60):
        """Stops the server and starts it again on the same port, as after a crash or deploy."""
        self.stop()
        return self.start(ready_timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


@contextlib.contextmanager
def running(*servers):
    """`with running(a, b, c):` starts the servers in order and always stops every one."""
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(server)
        yield servers


def new_log_path():
    """A file for a server's output, readable after the server stops, removed when we exit."""
    descriptor, path = tempfile.mkstemp(prefix="server-", suffix=".log")
    os.close(descriptor)
    atexit.register(_remove_if_present, path)
    return path


def _remove_if_present(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def accepts_connections(host, port):
    """True if a TCP connection to host:port is accepted (and at once closed)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def listening_socket_inodes(port):
    """Inodes of the TCP sockets (IPv4 and IPv6) in LISTEN state on `port`, from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "0A":  # 0A is TCP_LISTEN
                    inodes.add(fields[9])
    return inodes


def group_socket_inodes(pgid):
    """Inodes of the sockets held open by the processes of process group `pgid`."""
    inodes = set()
    for process_directory in Path("/proc").glob("[0-9]*"):
        try:
            stat = (process_directory / "stat").read_text()
            # Fields after the command name (which may hold spaces) start at ") ".
            if int(stat.rsplit(") ", 1)[1].split()[2]) != pgid:
                continue
            for descriptor in (process_directory / "fd").iterdir():
                target = os.readlink(descriptor)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
            continue
    return inodes
