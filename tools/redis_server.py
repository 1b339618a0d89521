"""Start a private redis-server for a test or a benchmark, and always stop it.

It listens on a free loopback port chosen here, never on a Redis that happens to be running,
and keeps nothing on disk, so every run starts empty. It is a ServerProcess (the one launcher,
tools/server_process.py) that is ready when the Redis answering is the one it started.
"""

import os
import shlex
import shutil
import socket
import tempfile

from tools.server_process import HOST, ServerProcess, free_port


class RedisServer(ServerProcess):
    """`with RedisServer() as redis:` gives a running redis-server at `redis.url`.

    `command` is the command line to start from, such as a README's
    `redis-server --port 6379 --save ""`: its port is replaced by `port` (a free one by
    default), and the flags that keep it private and diskless are added after it."""

    def __init__(self, port=None, command="redis-server"):
        port = port or free_port()
        argv = shlex.split(command)
        if "--port" in argv[:-1]:
            argv[argv.index("--port") + 1] = str(port)
        else:
            argv += ["--port", str(port)]
        self.data_directory = tempfile.mkdtemp(prefix="redis-")
        private_and_diskless = {
            "--bind": HOST,
            "--save": "",  # no snapshots ...
            "--appendonly": "no",  # ... and no append-only file: nothing outlives the test
            "--dir": self.data_directory,
        }
        for flag, value in private_and_diskless.items():
            # A README's line may give some of them already (`--bind 127.0.0.1 --save ""`).
            if flag in argv[:-1] and argv[argv.index(flag) + 1] == value:
                continue
            argv += [flag, value]
        super().__init__(argv, cwd=self.data_directory, port=port, name="redis-server")

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"

    def is_ready(self):
        if self.process.poll() is not None:
            raise RuntimeError(
                f"redis-server on port {self.port} exited with "
                f"{self.process.returncode}:\n{self.log_text()}"
            )
        answering = self.answering_process_id()
        if answering is not None and answering != self.process.pid:
            # Someone else's Redis took the port first: never use it.
            raise RuntimeError(f"port {self.port} is served by another Redis (pid {answering})")
        return answering == self.process.pid

    def answering_process_id(self):
        """The process id of the Redis answering on this port (from INFO), or None if none does."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as connection:
                connection.sendall(b"INFO server\r\n")
                reply = b""
                while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                    chunk = connection.recv(65536)
                    if not chunk:
                        return None
                    reply += chunk
        except OSError:
            return None
        line = next(x for x in reply.split(b"\r\n") if x.startswith(b"process_id:"))
        return int(line.split(b":")[1])

    def ping(self):
        """True if this Redis answers on its port."""
        return self.process is not None and self.answering_process_id() == self.process.pid

    def restart(self):
        """Starts a fresh, empty Redis on the same port, as after an outage; stops it first
        if it is still running."""
        self.stop()
        os.makedirs(self.data_directory, exist_ok=True)
        return self.start()

    def stop(self, timeout=10):
        super().stop(timeout)
        shutil.rmtree(self.data_directory, ignore_errors=True)
