"""Start a real nginx (Debian's /usr/sbin/nginx) in the foreground, with its own configuration,
and always stop it.

nginx runs as `nginx -p <prefix> -c <config> -e stderr -g 'daemon off;'`: the prefix is the
directory the configuration's relative paths start from (its pid file, temporary files and
static files), its errors go to stderr and its access log to stdout, which ServerProcess
keeps in the log file. It is a ServerProcess (the one launcher, tools/server_process.py): it
refuses a port another program listens on and is ready only when our nginx answers on it.
"""

import os
import shutil
from pathlib import Path

from tools.server_process import ServerProcess

NGINX = "/usr/sbin/nginx"


def nginx_program():
    """The nginx to run: Debian's, or the first on PATH."""
    return NGINX if Path(NGINX).exists() else (shutil.which("nginx") or NGINX)


class NginxServer(ServerProcess):
    """nginx serving `config` (a file) with `prefix` (a directory) as its prefix; `port` is the
    plain-HTTP port the configuration listens on, the one readiness is checked on."""

    def __init__(self, config, prefix, port):
        self.config = Path(config)
        self.prefix = Path(prefix)
        argv = [
            nginx_program(),
            "-p",
            f"{self.prefix}/",
            "-c",
            str(self.config),
            # Errors before the configuration is read go to stderr too, not /var/log/nginx.
            "-e",
            "stderr",
            "-g",
            # Started as root (as in CI containers), nginx's workers would switch to the user
            # nobody, who cannot read a test's private temporary directory: keep them ours.
            "daemon off; user root;" if os.geteuid() == 0 else "daemon off;",
        ]
        super().__init__(argv, cwd=self.prefix, port=port, name="nginx")
