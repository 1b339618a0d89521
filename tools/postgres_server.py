"""Start a private PostgreSQL server (Debian's `postgresql` package) for step 07's site, and
always stop it.

It is a cluster of its own, never the machine's: `initdb` makes it in a directory of ours (a
temporary one, removed when the server stops, unless a directory to keep is given, as
`make run STEP=07` gives the step's run/postgres/), it listens on a free loopback port with a
password (scram-sha-256) and its Unix socket in that directory, and it is a ServerProcess (the
one launcher, tools/server_process.py), ready when it accepts connections.

PostgreSQL refuses to run as root. Started as root (as in CI containers), it runs as the
`postgres` user the Debian package creates, which then owns the directory.
https://www.postgresql.org/docs/15/app-initdb.html
https://www.postgresql.org/docs/15/server-start.html
"""

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tools.server_process import ServerProcess, free_port, group_alive, python_environment
from tools.waiting import wait_until

# Debian keeps PostgreSQL's programs out of PATH, one directory per major version.
DEBIAN_BIN_DIRECTORIES = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "sudo apt-get install postgresql"
# The database and its owner the site uses (the cluster's first, and only, user).
DATABASE = USER = "newtest"
# What step07_deploy/README.md has the reader type, from the step directory, with Debian's
# PostgreSQL directory on PATH: a password, a cluster whose only user has it, the server on
# loopback only, and the site's database. The server runs these lines, with its directory,
# port and socket directory in place of the README's.
PATH_COMMAND = 'export PATH="/usr/lib/postgresql/15/bin:$PATH"'
PASSWORD_COMMAND = (
    "mkdir -p run/postgres"
    " && python -c 'import secrets; print(secrets.token_urlsafe(24))' > run/postgres/password"
)
INITDB_COMMAND = (
    "initdb -D run/postgres/data -U newtest --pwfile=run/postgres/password"
    " --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8"
)
POSTGRES_COMMAND = 'postgres -D run/postgres/data -h 127.0.0.1 -p 5432 -k "$PWD/run/postgres"'
CREATEDB_COMMAND = "createdb -h 127.0.0.1 -p 5432 -U newtest newtest"
README_COMMANDS = (
    PATH_COMMAND,
    PASSWORD_COMMAND,
    INITDB_COMMAND,
    POSTGRES_COMMAND,
    CREATEDB_COMMAND,
)


def with_values(command, values):
    """The README's command line as argv, each option in `values` ({"-D": ...}, or
    {"--pwfile": ...} for `--pwfile=...`) given its value instead of the README's."""
    argv = shlex.split(command)
    for option, value in values.items():
        if option in argv:
            argv[argv.index(option) + 1] = str(value)
        else:
            (index,) = [i for i, word in enumerate(argv) if word.startswith(option + "=")]
            argv[index] = f"{option}={value}"
    return argv


def postgres_bin_directory():
    """The directory of the newest PostgreSQL's programs, Debian's or the first on PATH; None
    if there is none."""
    found = sorted(
        Path("/").glob(DEBIAN_BIN_DIRECTORIES.lstrip("/")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    found = [path for path in found if (path / "postgres").exists()]
    if found:
        return found[-1]
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def as_postgres_user():
    """The words that run a program as the `postgres` user when we are root, else none."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


class PostgresServer(ServerProcess):
    """`with PostgresServer() as database:` gives a running, empty PostgreSQL at
    `database.url` (postgresql://newtest:<password>@127.0.0.1:<port>/newtest).

    directory: where the cluster lives (data/, the socket) and its password file; a temporary
    one by default, removed on stop(). A directory given is kept, with its data, so a site
    restarted on it finds its users, sessions and messages again."""

    def __init__(self, directory=None, port=None):
        self.bin = postgres_bin_directory()
        if self.bin is None:
            raise FileNotFoundError(f"PostgreSQL is not installed: {INSTALL_HINT}")
        self.temporary = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="postgres-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        postgres = with_values(
            POSTGRES_COMMAND, {"-D": self.data_directory, "-p": port, "-k": self.directory}
        )
        argv = [*as_postgres_user(), str(self.bin / postgres[0]), *postgres[1:]]
        super().__init__(argv, cwd=self.directory, port=port, name="postgres")

    @property
    def data_directory(self):
        return self.directory / "data"

    @property
    def password_file(self):
        return self.directory / "password"

    @property
    def password(self):
        return self.password_file.read_text().strip()

    @property
    def url(self):
        return f"postgresql://{USER}:{self.password}@{self.host}:{self.port}/{DATABASE}"

    def run(self, program, *arguments):
        """Runs one of PostgreSQL's programs (as its server runs); raises with its output."""
        argv = [*as_postgres_user(), str(self.bin / program), *arguments]
        env = {**os.environ, "PGPASSWORD": self.password, "LC_ALL": "C.UTF-8"}
        result = subprocess.run(
            argv,
            cwd=self.directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}")
        return result.stdout

    def initialize(self):
        """A new cluster whose one user, newtest, has a new random password; once per
        directory (a kept directory's cluster is reused)."""
        if (self.data_directory / "PG_VERSION").exists():
            return False
        # The README's line, with this server's directory in place of run/postgres.
        subprocess.run(
            PASSWORD_COMMAND.replace("run/postgres", shlex.quote(str(self.directory))),
            shell=True,
            env=python_environment(),
            check=True,
            timeout=60,
        )
        os.chmod(self.password_file, 0o600)
        if as_postgres_user():
            closed = [p for p in self.directory.parents if not os.stat(p).st_mode & 0o001]
            if closed:
                raise PermissionError(
                    f"the postgres user cannot reach {self.directory}: {closed[0]} is closed to"
                    " other users; keep the site in a directory others may enter"
                )
            shutil.chown(self.directory, "postgres", "postgres")
            shutil.chown(self.password_file, "postgres", "postgres")
            os.chmod(self.directory, 0o700)
        initdb = with_values(
            INITDB_COMMAND, {"-D": self.data_directory, "--pwfile": self.password_file}
        )
        self.run(*initdb)
        return True

    def start(self, ready_timeout=60):
        created = self.initialize()
        super().start(ready_timeout)
        if created:
            self.run(*with_values(CREATEDB_COMMAND, {"-h": self.host, "-p": self.port}))
        return self

    def answers(self):
        """pg_isready: the server accepts connections (not merely starting up)."""
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
        )
        return result.returncode == 0

    def stop(self, timeout=10):
        """SIGINT first, PostgreSQL's "fast" shutdown: it ends its sessions and writes a
        checkpoint (SIGTERM would wait for every client to leave); then the launcher's stop."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired, TimeoutError):
                self.process.wait(timeout=timeout)
                wait_until(lambda: not group_alive(self.process.pid), timeout=timeout)
        super().stop(timeout)
        if self.temporary:
            shutil.rmtree(self.directory, ignore_errors=True)
