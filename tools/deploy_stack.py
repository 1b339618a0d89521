"""Step 07's whole site on loopback ports: a redis-server, Django workers, and nginx in front.

`make run STEP=07` (tools/run_step.py) and the tests start the site here and nowhere else, with
the commands step07_deploy/README.md shows a reader (their ports replaced by free ones):
migrate, collectstatic, a self-signed certificate, then redis-server, the workers and nginx,
each a ServerProcess (tools/server_process.py) that is ready only when it answers, and all of
them stopped, in the reverse order, by stop().

    with DeployStack(directory=copy_of_the_step) as site:
        site.http_url, site.https_url, site.ws_url, site.wss_url, site.workers, site.nginx
"""

import contextlib
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.nginx_server import NginxServer, nginx_program
from tools.redis_server import RedisServer
from tools.repository import step_directory
from tools.server_process import HOST, PortTaken, free_port, port_is_taken, python_environment
from tools.step_commands import manage, migrate, readme_server
from tools.waiting import wait_until

STEP = "step07_deploy"
# The commands of step07_deploy/README.md, in the order it has the reader type them.
SECRET_KEY_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(50))' > run/secret_key"
ENVIRONMENT_COMMAND = (
    'export DJANGO_SECRET_KEY="$(cat run/secret_key)" DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost'
    " REDIS_URL=redis://127.0.0.1:6379/0"
)
COLLECTSTATIC_COMMAND = "python manage.py collectstatic --noinput"
CERTIFICATE_COMMAND = (
    "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=127.0.0.1"
    " -addext subjectAltName=IP:127.0.0.1 -keyout run/localhost.key -out run/localhost.crt"
)
REDIS_COMMAND = 'redis-server --port 6379 --bind 127.0.0.1 --save ""'
WORKER_COMMANDS = {
    "daphne": "daphne --proxy-headers --port 8001 newtest.asgi:application",
    "uvicorn": (
        "uvicorn --proxy-headers --forwarded-allow-ips 127.0.0.1 --port 8001"
        " newtest.asgi:application"
    ),
}
NGINX_COMMAND = "nginx -p . -c deploy/nginx.conf -e stderr -g 'daemon off;'"
CHECK_DEPLOY_COMMAND = "python manage.py check --deploy"
# Every command the README shows for this step, for tests/test_readmes.py: the worker lines
# once per port the README gives them (8001 and 8002).
README_COMMANDS = (
    SECRET_KEY_COMMAND,
    ENVIRONMENT_COMMAND,
    COLLECTSTATIC_COMMAND,
    CERTIFICATE_COMMAND,
    CHECK_DEPLOY_COMMAND,
    REDIS_COMMAND,
    *(
        command.replace("8001", port)
        for command in WORKER_COMMANDS.values()
        for port in ("8001", "8002")
    ),
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


def missing_programs():
    """{name: install hint} of the SYSTEM_PROGRAMS this machine lacks."""
    found = {"nginx": Path(nginx_program()).exists() or shutil.which("nginx")}
    return {
        name: hint
        for name, hint in SYSTEM_PROGRAMS.items()
        if not found.get(name, shutil.which(name))
    }


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

    server: "daphne" or "uvicorn", the program every worker runs; workers: how many.
    channel_layer: "redis" (as deployed) or "in-memory" (to show what breaks without Redis).
    edit_config: a function from the configuration's text to the text nginx gets, for tests
    that show what a missing line does.
    """

    def __init__(
        self,
        directory=None,
        port=None,
        tls_port=None,
        server="daphne",
        workers=2,
        channel_layer="redis",
        edit_config=None,
        say=None,
    ):
        if server not in WORKER_COMMANDS:
            raise ValueError(f"workers run one of {sorted(WORKER_COMMANDS)}, not {server!r}")
        self.directory = Path(directory or step_directory(STEP))
        self.port = port or free_port()
        self.tls_port = tls_port or distinct_free_ports(1, taken=[self.port])[0]
        self.server = server
        self.edit_config = edit_config
        self.say = say or (lambda text: None)
        self.redis = RedisServer(command=REDIS_COMMAND) if channel_layer == "redis" else None
        # One secret key for all workers: a session made by one is read by the others.
        self.env = {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": HOSTS,
            "DJANGO_DEBUG": "",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "",
            # Empty: the in-memory layer, whatever the caller's environment says.
            "REDIS_URL": self.redis.url if self.redis else "",
        }
        worker_ports = distinct_free_ports(workers, taken=[self.port, self.tls_port])
        self.workers = []
        for number, worker_port in enumerate(worker_ports, start=1):
            worker = readme_server(
                STEP, WORKER_COMMANDS[server], worker_port, env=self.env, directory=self.directory
            )
            worker.name = f"{server} worker {number}"
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

    @property
    def processes(self):
        """Every server of the site, in the order they start."""
        return [p for p in (self.redis, *self.workers, self.nginx) if p is not None]

    def prepare(self):
        """What a reader does before starting anything: the database's tables, the static
        files where nginx serves them, a certificate, and the configuration with our ports."""
        self.say(f"$ cd {self.directory.name} && python manage.py migrate --noinput")
        self.say(migrate(self.directory, env=self.env).rstrip())
        self.say(f"$ {COLLECTSTATIC_COMMAND}")
        collected = manage(self.directory, COLLECTSTATIC_COMMAND.split(" ", 2)[2], env=self.env)
        self.say(collected.strip())
        if not self.certificate.exists():
            self.say(f"$ {CERTIFICATE_COMMAND}")
            subprocess.run(
                shlex.split(CERTIFICATE_COMMAND),
                cwd=self.directory,
                env=python_environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=60,
            )
        text = (self.directory / CONFIG).read_text()
        text = site_config(text, self.port, self.tls_port, [w.port for w in self.workers])
        if self.edit_config is not None:
            text = self.edit_config(text)
        (self.directory / RENDERED_CONFIG).write_text(text)

    def start(self):
        for port in (self.port, self.tls_port):
            if port_is_taken(port):
                raise PortTaken(HOST, port)
        self.prepare()
        try:
            for process in self.processes:
                self.say(f"$ {process.command_line()}")
                process.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stops nginx first, then the workers, then Redis: every one, even if one fails."""
        with contextlib.ExitStack() as stack:
            for process in self.processes:
                stack.callback(process.stop)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def serve_until_interrupted(server, port, directory=None):
    """`make run STEP=07`: the whole site until Ctrl-C (or SIGTERM), every server's output
    passed through with its name in front; returns the exit status."""
    # runserver is make run's default; the site's workers are ASGI servers, daphne unless told.
    server = server if server in WORKER_COMMANDS else "daphne"
    site = DeployStack(
        directory=directory, port=port, tls_port=tls_port_of(port), server=server, say=print_now
    )
    missing = missing_programs()
    if missing:
        for name, hint in missing.items():
            print(f"Error: {name} is not installed; install it with: {hint}", file=sys.stderr)
        return 2
    shown = {}
    # Stop everything on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        site.start()
        show_new_output(site, shown)
        print_now(
            f"\nServing {site.directory.name} behind nginx, {len(site.workers)} {server} workers"
            f" and a redis-server: open {site.http_url}/chat/lobby/"
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
