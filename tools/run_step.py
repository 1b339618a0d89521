"""`make run STEP=03 SERVER=daphne`: serve one step until Ctrl-C, and say where to look."""

import argparse
import contextlib
import re
import signal
import sys
import time

from tools.deploy_stack import STEP as DEPLOY_STEP
from tools.deploy_stack import serve_until_interrupted
from tools.repository import step_directory
from tools.server_process import READINESS_REQUEST_LINE, PortTaken
from tools.step_commands import MIGRATE_COMMAND, SERVERS, migrate, step_server
from tools.waiting import wait_until

LOCAL_LINK = re.compile(r"<http://127\.0\.0\.1:8000(/[^>]*)>")
# A step whose README has the reader type this gets it done by `make run` too.
README_MIGRATE = re.compile(r"^\$ python manage\.py migrate$", re.M)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", required=True, help="a step number: 01, 02, ...")
    parser.add_argument("--server", choices=SERVERS, default="runserver")
    parser.add_argument("--port", type=int, default=8000)
    # The tests serve a copy of the step, so that they never write a database into the step.
    parser.add_argument("--directory", help="serve this copy of the step instead")
    args = parser.parse_args()
    # Step 07 is a whole site: nginx, several workers and a redis-server (tools/deploy_stack.py).
    if step_directory(args.step).name == DEPLOY_STEP:
        sys.exit(serve_until_interrupted(args.server, args.port, args.directory))

    server = step_server(args.step, args.server, port=args.port, directory=args.directory)
    if README_MIGRATE.search(readme_of(server.cwd)):
        print(f"$ cd {server.cwd.name} && {MIGRATE_COMMAND}", flush=True)
        print(migrate(server.cwd), end="", flush=True)
    print(f"$ cd {server.cwd.name} && {server.command_line()}", flush=True)
    # Stop the server on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    shown = ShownOutput()
    # Everything from the start on is inside try, so a Ctrl-C at any moment stops the server.
    try:
        server.start()
        show_output_but_the_readiness_request(server, shown)
        page = lesson_page(server.cwd)
        print(f"\nServing {server.cwd.name} with {args.server}: open {server.http_url}{page}")
        print("Press Ctrl-C to stop.", flush=True)
        while server.is_running():
            show_new_output(server, shown)
            time.sleep(0.2)
    except PortTaken as taken:
        print(
            f"\nError: {taken}. Stop that program, or choose another port, "
            f"for example: make run STEP={args.step} SERVER={args.server} PORT={args.port + 1}",
            file=sys.stderr,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        show_new_output(server, shown)
    if server.process is not None and server.process.returncode not in (0, -signal.SIGTERM):
        sys.exit(1)


def lesson_page(directory):
    """The page the step's README sends the reader to first (its first local link), or /."""
    found = LOCAL_LINK.search(readme_of(directory))
    return found.group(1) if found else "/"


def readme_of(directory):
    return (step_directory(directory.name) / "README.md").read_text()


class ShownOutput:
    """How much of the server's log has been shown (a character position)."""

    position = 0


def show_output_but_the_readiness_request(server, shown):
    """Shows the log so far without the line of the launcher's readiness request: the reader
    made no request yet, and a `GET /` in the log would read as a visitor's. A server logs it
    a moment after answering, so it is waited for."""
    try:
        found = wait_until(lambda: READINESS_REQUEST_LINE.search(server.log_text()), timeout=10)
    except TimeoutError:  # a server that logs it otherwise: better shown than lost
        show_new_output(server, shown)
        return
    with ctrl_c_held():
        print(server.log_text()[: found.start()], end="", flush=True)
        shown.position = found.end()
    show_new_output(server, shown)


def show_new_output(server, shown):
    """Passes the server's log through, from `shown.position` on."""
    with ctrl_c_held():
        log = server.log_text()
        print(log[shown.position :], end="", flush=True)
        shown.position = len(log)


@contextlib.contextmanager
def ctrl_c_held():
    """Ctrl-C waits until the block is done: arriving between printing some output and counting
    it as shown, it would have those lines shown again, or not at all, when the output is
    passed through one last time as the server stops."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


if __name__ == "__main__":
    main()
