"""Runs a command with a terminal (a pseudo-terminal) as its output, as in a reader's shell,
and copies what it writes to this process's stdout without colours and carriage returns.

    python tools/in_a_terminal.py python manage.py runserver 127.0.0.1:8000

tools/readme_outputs.py starts the servers whose output a README shows this way, because some
output differs on a terminal: runserver colours its unapplied-migrations notice there, and
the colour's closing code makes its last line end in a blank line that a pipe never shows.
The command stays in this process's group, so the launcher's checks and stop() reach it.
Standard library only: it runs as a script, from any directory.
"""

import os
import pty
import re
import signal
import subprocess
import sys

COLOUR_CODE = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


def main(argv):
    leader, follower = pty.openpty()
    command = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    # The launcher stops the whole group: the command gets the signal too, and this process
    # copies its output until the last process holding the terminal has closed it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    copy_lines(leader, sys.stdout.buffer)
    returncode = command.wait()
    if returncode < 0:  # end as the command ended, by the same signal
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode)


def copy_lines(leader, out):
    """Copies whole lines (a colour code never split) until the terminal is closed."""
    pending = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            chunk = b""
        if not chunk:
            break
        pending += chunk
        lines, _, pending = pending.rpartition(b"\n")
        if lines:
            out.write(plain(lines + b"\n"))
            out.flush()
    out.write(plain(pending))
    out.flush()


def plain(text):
    # The terminal turns each "\n" into "\r\n" (its default output processing).
    return COLOUR_CODE.sub(b"", text).replace(b"\r\n", b"\n")


if __name__ == "__main__":
    main(sys.argv[1:])
