"""Start a real nginx (Debian's /usr/sbin/nginx) in the foreground, with its own configuration,
and always stop it.

nginx runs as step07_deploy/README.md has the reader run it, `nginx -p . -c deploy/nginx.conf
-e stderr -g 'daemon off;'`, from the step directory: the prefix (`-p .`) is the directory the
configuration's relative paths start from (its pid file, temporary files and static files),
its errors go to stderr and its access log to stdout, which ServerProcess keeps in the log
file. It is a ServerProcess (the one launcher, tools/server_process.py): it
refuses a port another program listens on and is ready only when our nginx answers on it.
"""

import os
import shlex
import shutil
from pathlib import Path

from tools.server_process import ServerProcess

NGINX = "/usr/sbin/nginx"


def nginx_program():
    """The nginx to run: Debian's, or the first on PATH."""
    return NGINX if Path(NGINX).exists() else (shutil.which("nginx") or NGINX)


class NginxServer(ServerProcess):
    """nginx started by the README's `command` line (`nginx -p . -c deploy/nginx.conf ...`)
    from `prefix` (a step directory), with `config` (relative to it) in place of the README's
    configuration; `port` is the plain-HTTP port the configuration listens on, the one
    readiness is checked on."""

    def __init__(self, command, prefix, port, config):
        argv = shlex.split(command)
        argv[0] = nginx_program()
        argv[argv.index("-c") + 1] = str(config)
        if os.geteuid() == 0:
            # Started as root (as in CI containers), nginx's workers would switch to the user
            # nobody, who cannot read a test's private temporary directory: keep them ours.
            argv[argv.index("-g") + 1] += " user root;"
        super().__init__(argv, cwd=Path(prefix), port=port, name="nginx")
