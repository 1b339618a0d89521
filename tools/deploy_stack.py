"""Step 07's whole site on loopback ports: PostgreSQL, a redis-server, Django workers, and
nginx in front.

`make run STEP=07` (tools/run_step.py) and the tests start the site here and nowhere else, with
the commands step07_deploy/README.md shows a reader (their ports replaced by free ones): a
secret key kept in the step's run/, a PostgreSQL cluster kept in run/postgres/ (the current
track; Django 3.0 stays on SQLite, see the README), migrate, collectstatic, a self-signed
certificate, then postgres, redis-server, the Uvicorn workers and nginx, each a ServerProcess
(tools/server_process.py) that is ready only when it answers, and all of them stopped, in the
reverse order, by stop(). What run/ holds outlives stop(): a site started again on the same
directory has its key, users, sessions and messages.

    with DeployStack(directory=copy_of_the_step) as site:
        site.http_url, site.https_url, site.ws_url, site.wss_url, site.workers, site.nginx
"""

import concurrent.futures
import contextlib
import copy
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.nginx_server import NginxServer, nginx_program
from tools.postgres_server import INSTALL_HINT as POSTGRES_INSTALL_HINT
from tools.postgres_server import README_COMMANDS as POSTGRES_COMMANDS
from tools.postgres_server import PostgresServer, postgres_bin_directory
from tools.redis_server import RedisServer
from tools.repository import step_directory
from tools.server_process import HOST, PortTaken, free_port, port_is_taken, python_environment
from tools.step_commands import copy_step, manage, migrate, readme_server
from tools.tracks import running_track
from tools.waiting import wait_until

STEP = "step07_deploy"
# The commands of step07_deploy/README.md, in the order it has the reader type them.
SECRET_KEY_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(50))' > run/secret_key"
ENVIRONMENT_COMMAND = (
    'export DJANGO_SECRET_KEY="$(cat run/secret_key)" DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost'
    " REDIS_URL=redis://127.0.0.1:6379/0"
)
DATABASE_URL_COMMAND = (
    'export DATABASE_URL="postgresql://newtest:$(cat run/postgres/password)@127.0.0.1:5432/newtest"'
)
COLLECTSTATIC_COMMAND = "python manage.py collectstatic --noinput"
CERTIFICATE_COMMAND = (
    "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=127.0.0.1"
    " -addext subjectAltName=IP:127.0.0.1 -keyout run/localhost.key -out run/localhost.crt"
)
REDIS_COMMAND = 'redis-server --port 6379 --bind 127.0.0.1 --save ""'
# Uvicorn, on both tracks: it refuses a frame above --ws-max-size (64 KiB, far above a chat
# message of 2,000 characters) from its header, before reading it, with close code 1009; it
# stops reading from the channel layer for a client that stops reading; on SIGTERM it closes
# every WebSocket with 1012 ("service restart") and waits up to 10 s for the handlers to finish.
# Daphne 3.0.2 has no size limit, and no Daphne bounds what it keeps for a stalled reader.
WORKER_COMMAND = (
    "uvicorn --proxy-headers --forwarded-allow-ips 127.0.0.1 --ws-max-size 65536"
    " --timeout-graceful-shutdown 10 --port 8001 newtest.asgi:application"
)
WORKER_SERVER = "uvicorn"
NGINX_COMMAND = "nginx -p . -c deploy/nginx.conf -e stderr -g 'daemon off;'"
CHECK_DEPLOY_COMMAND = "python manage.py check --deploy"
# The database each track's site runs on: no PostgreSQL driver Django 3.0 can use works on
# Python 3.11 (psycopg2 2.9: "database connection isn't set to UTC"; 2.8 does not import),
# so that track keeps step 06's SQLite file.
DATABASES = {"django30": "sqlite", "current": "postgresql"}
# Every command the README shows for this step, for tests/test_readmes.py: the worker lines
# once per port the README gives them (8001 and 8002).
README_COMMANDS = (
    SECRET_KEY_COMMAND,
    ENVIRONMENT_COMMAND,
    *POSTGRES_COMMANDS,
    DATABASE_URL_COMMAND,
    COLLECTSTATIC_COMMAND,
    CERTIFICATE_COMMAND,
    CHECK_DEPLOY_COMMAND,
    REDIS_COMMAND,
    WORKER_COMMAND,
    WORKER_COMMAND.replace("8001", "8002"),
    NGINX_COMMAND,
)
# What the configuration's `listen` and `upstream` lines look like, so their ports can be replaced.
LISTEN = re.compile(r"^(\s*listen 127\.0\.0\.1:)(\d+)((?: ssl)?;)$", re.M)
UPSTREAM_SERVERS = re.compile(
    r"^(\s*)server 127\.0\.0\.1:\d+;\n(?:\s*server 127\.0\.0\.1:\d+;\n)*", re.M
)
CONFIG = Path("deploy") / "nginx.conf"
# Where the stack writes the configuration with its own ports (the step's run/ is git-ignored).
RENDERED_CONFIG = Path("run") / "nginx.conf"
HOSTS = "127.0.0.1,localhost"


def site_config(text, port, tls_port, worker_ports):
    """The step's nginx.conf with nginx listening on `port` (plain) and `tls_port` (TLS) and
    its upstream listing `worker_ports`. Raises if the configuration no longer has exactly one
    plain and one TLS `listen`, and one upstream block."""
    listens = LISTEN.findall(text)
    if sorted(suffix for _, _, suffix in listens) != [" ssl;", ";"]:
        raise ValueError(f"expected one plain and one ssl `listen 127.0.0.1:<port>`: {listens}")
    text = LISTEN.sub(lambda m: m[1] + str(tls_port if "ssl" in m[3] else port) + m[3], text)
    upstreams = UPSTREAM_SERVERS.findall(text)
    if len(upstreams) != 1:
        raise ValueError("expected one upstream block of `server 127.0.0.1:<port>;` lines")
    return UPSTREAM_SERVERS.sub(
        lambda m: "".join(f"{m[1]}server {HOST}:{p};\n" for p in worker_ports), text
    )


# The programs the site runs besides Python's, with how to install them (Debian, Ubuntu).
SYSTEM_PROGRAMS = {
    "nginx": "sudo apt-get install nginx",
    "redis-server": "sudo apt-get install redis-server",
    "openssl": "sudo apt-get install openssl",
}


def missing_programs(database=None):
    """{name: install hint} of the programs the site needs that this machine lacks: the
    SYSTEM_PROGRAMS, and PostgreSQL's where the site uses it (by default, the running track's)."""
    needed = dict(SYSTEM_PROGRAMS)
    found = {"nginx": Path(nginx_program()).exists() or shutil.which("nginx")}
    if (database or DATABASES[running_track()]) == "postgresql":
        needed["postgres"] = POSTGRES_INSTALL_HINT
        found["postgres"] = postgres_bin_directory()  # Debian's is not on PATH
    return {name: hint for name, hint in needed.items() if not found.get(name, shutil.which(name))}


@contextlib.contextmanager
def copy_of_the_site():
    """A copy of step 07 in a new directory that every user may enter, removed afterwards:
    started as root, PostgreSQL runs as the `postgres` user, who must reach its cluster in the
    copy's run/ (pytest's own temporary directories are closed to other users)."""
    parent = Path(tempfile.mkdtemp(prefix="step07-"))
    try:
        parent.chmod(0o755)
        yield copy_step(STEP, parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def tls_port_of(port):
    """`make run STEP=07`'s https port: nginx listens there beside `PORT` (8443 beside 8000)."""
    return port + 443


def free_site_port():
    """A free port for `make run STEP=07 PORT=...` whose https port is free as well."""

    def port_with_a_free_tls_port():
        port = free_port()
        tls_port = tls_port_of(port)
        return port if tls_port < 65536 and not port_is_taken(tls_port) else None

    return wait_until(
        port_with_a_free_tls_port,
        timeout=10,
        message="a free port whose https port (+443) is free too",
    )


def distinct_free_ports(count, taken=()):
    ports = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and port not in taken:
            ports.append(port)
    return ports


class DeployStack:
    """The site of step 07 served from `directory` (the step itself, or a copy of it).

    workers: how many Uvicorn workers. database: "postgresql" or "sqlite" (by default, the
    running track's, DATABASES). channel_layer: "redis" (as deployed) or "in-memory" (to show
    what breaks without Redis). edit_config: a function from the configuration's text to the
    text nginx gets, for tests that show what a missing line does.
    """

    def __init__(
        self,
        directory=None,
        port=None,
        tls_port=None,
        workers=2,
        database=None,
        channel_layer="redis",
        edit_config=None,
        say=None,
    ):
        self.directory = Path(directory or step_directory(STEP))
        self.port = port or free_port()
        self.tls_port = tls_port or distinct_free_ports(1, taken=[self.port])[0]
        self.server = WORKER_SERVER
        self.database = database or DATABASES[running_track()]
        self.edit_config = edit_config
        self.say = say or (lambda text: None)
        self.postgres = (
            PostgresServer(directory=self.directory / "run" / "postgres")
            if self.database == "postgresql"
            else None
        )
        self.redis = RedisServer(command=REDIS_COMMAND) if channel_layer == "redis" else None
        self.env = {
            "DJANGO_ALLOWED_HOSTS": HOSTS,
            "DJANGO_DEBUG": "",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "",
            # Empty: the in-memory layer, whatever the caller's environment says.
            "REDIS_URL": self.redis.url if self.redis else "",
            # Empty: SQLite. The key and PostgreSQL's address are set by prepare().
            "DATABASE_URL": "",
        }
        worker_ports = distinct_free_ports(workers, taken=[self.port, self.tls_port])
        self.workers = []
        for number, worker_port in enumerate(worker_ports, start=1):
            worker = readme_server(
                STEP, WORKER_COMMAND, worker_port, env=self.env, directory=self.directory
            )
            worker.name = f"{self.server} worker {number}"
            self.workers.append(worker)
        self.nginx = NginxServer(NGINX_COMMAND, self.directory, self.port, config=RENDERED_CONFIG)

    @property
    def http_url(self):
        return f"http://{HOST}:{self.port}"

    @property
    def https_url(self):
        return f"https://{HOST}:{self.tls_port}"

    @property
    def ws_url(self):
        return f"ws://{HOST}:{self.port}"

    @property
    def wss_url(self):
        return f"wss://{HOST}:{self.tls_port}"

    @property
    def certificate(self):
        """The self-signed certificate nginx presents on the TLS port."""
        return self.directory / "run" / "localhost.crt"

    def database_name(self):
        """The database, as `make run` names it."""
        if self.postgres is None:
            return "SQLite (db.sqlite3; Django 3.0 cannot use PostgreSQL's drivers)"
        return f"PostgreSQL on port {self.postgres.port} (kept in run/postgres/)"

    def query(self, sql, parameters=()):
        """Rows of a read-only query on the site's database (PostgreSQL's or the SQLite
        file), for the tests: what is stored, whatever the workers hold in memory."""
        if self.postgres is not None:
            import psycopg  # the current track's driver; the django30 track has none

            with psycopg.connect(self.postgres.url) as database:
                return database.execute(sql.replace("?", "%s"), parameters).fetchall()
        uri = f"file:{self.directory / 'db.sqlite3'}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=20) as database:
            return database.execute(sql, parameters).fetchall()

    def stored(self, room):
        """[(id, text)] of the room's stored messages, in id order."""
        return self.query("SELECT id, text FROM chat_message WHERE room = ? ORDER BY id", (room,))

    @property
    def secret_key_file(self):
        return self.directory / "run" / "secret_key"

    @property
    def processes(self):
        """Every server of the site, in the order they start."""
        return [p for p in (self.postgres, self.redis, *self.workers, self.nginx) if p is not None]

    def run_command(self, command):
        """Runs one of the README's shell lines in the site's directory, as the reader would."""
        self.say(f"$ {command}")
        subprocess.run(
            command,
            shell=True,
            cwd=self.directory,
            env=python_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=60,
        )

    def prepare(self):
        """What a reader does before starting the workers: a secret key (once: every worker
        and every restart uses the same, so sessions outlive them), the database and its
        tables, the static files where nginx serves them, a certificate, and the
        configuration with our ports."""
        if not self.secret_key_file.exists():
            self.run_command(SECRET_KEY_COMMAND)
        # One secret key for all workers: a session made by one is read by the others.
        self.env["DJANGO_SECRET_KEY"] = self.secret_key_file.read_text().strip()
        if self.postgres is not None:
            self.say(f"$ {self.postgres.command_line()}")
            self.postgres.start()
            self.env["DATABASE_URL"] = self.postgres.url
        for worker in self.workers:
            worker.env.update(self.env)
        self.say(f"$ cd {self.directory.name} && python manage.py migrate --noinput")
        self.say(migrate(self.directory, env=self.env).rstrip())
        self.say(f"$ {COLLECTSTATIC_COMMAND}")
        collected = manage(self.directory, COLLECTSTATIC_COMMAND.split(" ", 2)[2], env=self.env)
        self.say(collected.strip())
        if not self.certificate.exists():
            self.run_command(CERTIFICATE_COMMAND)
        text = (self.directory / CONFIG).read_text()
        text = site_config(text, self.port, self.tls_port, [w.port for w in self.workers])
        if self.edit_config is not None:
            text = self.edit_config(text)
        (self.directory / RENDERED_CONFIG).write_text(text)

    def start(self):
        for port in (self.port, self.tls_port):
            if port_is_taken(port):
                raise PortTaken(HOST, port)
        try:
            self.prepare()
            if self.redis is not None:
                self.say(f"$ {self.redis.command_line()}")
                self.redis.start()
            for worker in self.workers:
                self.say(f"$ {worker.command_line()}")
            # The workers side by side: each takes seconds to import Django.
            with concurrent.futures.ThreadPoolExecutor(len(self.workers)) as starting:
                for started in [starting.submit(worker.start) for worker in self.workers]:
                    started.result()
            self.say(f"$ {self.nginx.command_line()}")
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        return self

    @contextlib.contextmanager
    def another_nginx(self, edit_config):
        """A second nginx in front of this site's workers, on ports of its own, with the
        configuration `edit_config` makes of the step's: for a test of what one line of it does.
        Yields a copy of this stack whose addresses are that nginx's; the workers, Redis and the
        database are this site's, so it starts in a moment instead of a site's seconds."""
        port = free_port()
        (tls_port,) = distinct_free_ports(1, taken=[port])
        text = site_config(
            (self.directory / CONFIG).read_text(), port, tls_port, [w.port for w in self.workers]
        )
        # Its own pid file: the site's nginx keeps run/nginx.pid.
        text = edit_config(text).replace("pid run/nginx.pid;", f"pid run/nginx-{port}.pid;")
        config = RENDERED_CONFIG.with_name(f"nginx-{port}.conf")
        (self.directory / config).write_text(text)
        view = copy.copy(self)
        view.port, view.tls_port = port, tls_port
        view.nginx = NginxServer(NGINX_COMMAND, self.directory, port, config=config)
        view.nginx.start()
        try:
            yield view
        finally:
            view.nginx.stop()

    def stop(self):
        """Stops nginx first, then the workers side by side, then Redis and PostgreSQL: every
        one, even if one fails. (On Python 3.11 a worker's stop can take the whole 10 seconds
        of --timeout-graceful-shutdown, see the step's README: one after the other, two such
        stops would take 20.)"""
        with contextlib.ExitStack() as stack:
            for process in (self.postgres, self.redis):
                if process is not None:
                    stack.callback(process.stop)
            stack.callback(self.stop_workers)
            if self.nginx is not None:
                stack.callback(self.nginx.stop)

    def stop_workers(self):
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.workers))) as stopping:
            for stopped in [stopping.submit(worker.stop) for worker in self.workers]:
                stopped.result()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def serve_until_interrupted(server, port, directory=None):
    """`make run STEP=07`: the whole site until Ctrl-C (or SIGTERM), every server's output
    passed through with its name in front; returns the exit status."""
    if server not in ("runserver", WORKER_SERVER):
        # runserver is make run's default, and means "the site as step 07 runs it".
        print_now(
            f"Step 07's workers are {WORKER_SERVER} on both tracks, not {server}: Daphne reads"
            " a frame of any size into memory (3.0.2) and keeps without bound what a client"
            " does not read; see step07_deploy/README.md."
        )
    server = WORKER_SERVER
    missing = missing_programs()
    if missing:
        for name, hint in missing.items():
            print(f"Error: {name} is not installed; install it with: {hint}", file=sys.stderr)
        return 2
    site = DeployStack(directory=directory, port=port, tls_port=tls_port_of(port), say=print_now)
    shown = {}
    # Stop everything on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        site.start()
        show_new_output(site, shown)
        print_now(
            f"\nServing {site.directory.name} behind nginx, {len(site.workers)} {server} workers,"
            f" a redis-server and {site.database_name()}: open {site.http_url}/chat/lobby/"
            f" (or {site.https_url}/chat/lobby/, with a self-signed certificate)"
            "\nPress Ctrl-C to stop."
        )
        while all(process.is_running() for process in site.processes):
            show_new_output(site, shown)
            time.sleep(0.2)
        stopped = [p.name for p in site.processes if not p.is_running()]
        print_now(f"\nStopped by itself: {', '.join(stopped)}; stopping the rest.")
        return 1
    except PortTaken as taken:
        print(
            f"\nError: {taken}. Stop that program, or choose another port, for example: "
            f"make run STEP=07 SERVER={server} PORT={port + 1} (nginx also listens on PORT+443)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        site.stop()
        show_new_output(site, shown)


def show_new_output(site, shown):
    """Prints what each server logged since the last call, each line after its name."""
    for process in site.processes:
        log = process.log_text()
        new = log[shown.get(process.name, 0) :]
        shown[process.name] = len(log)
        for line in new.splitlines():
            print(f"[{process.name}] {line}")
    sys.stdout.flush()


def print_now(text):
    print(text, flush=True)
