"""The outputs the step READMEs show under their commands, and the one place that makes them.

Each `ShownOutput` names a README command and says how a reader gets its output: the command
is run for real in a fresh copy of the step (on a free port, servers only), the reader's action
is done (a request, a browser visit, a button pressed), and `shown` picks the lines the README
keeps, writing `...` where it leaves some out. Nothing is pasted or edited by hand:

    .venv/django30/bin/python -m tools.readme_outputs           # rewrite the blocks that changed
    .venv/django30/bin/python -m tools.readme_outputs --check   # exit 1 if any block is stale

tests/test_readme_outputs.py runs the same outputs and checks that each block is fresh. A block
counts as fresh when it equals a new run once the values that differ from run to run are
masked (`tools.readme_console.normalise`: times, client ports, process ids), so the tool
rewrites a block only when something a reader could notice has changed. Outputs come from the
default track, the write-up's versions.
"""

import argparse
import difflib
import json
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tools.chromium import close_shared_chromium, shared_chromium
from tools.repository import step_directory
from tools.server_process import (
    READINESS_REQUEST_LINE,
    ServerProcess,
    free_port,
    python_environment,
)
from tools.step_commands import (
    README_COMMANDS,
    command_with_address,
    copy_step,
    manage,
    migrate,
)
from tools.tracks import DEFAULT_TRACK, running_track
from tools.waiting import wait_until

BLOCK = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
# The port every README command listens on; a run on a free port is shown as if on this one.
README_PORT = 8000
SITE_PACKAGES = re.compile(r'File "[^"]*/lib/python3\.\d+/site-packages/')
SHOWN_SITE_PACKAGES = 'File "/path/to/venv/lib/python3.11/site-packages/'
TIMEOUT = 30
SERVER_OF_COMMAND = {command: server for server, command in README_COMMANDS.items()}
README_WIDE_PORTS = range(1024, 10_000)  # four digits, as wide as the README_PORT 8000
IN_A_TERMINAL = Path(__file__).with_name("in_a_terminal.py")


class Reader:
    """What a reader has at hand during one output's run: a fresh copy of the step, the server
    the command starts, a browser; everything it starts is stopped at the end."""

    def __init__(self, step):
        self.step = step
        self._stack = ExitStack()
        self._page = None

    def __enter__(self):
        parent = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="readme-output-"))
        self.directory = copy_step(self.step, parent)
        return self

    def __exit__(self, *exc_info):
        self._stack.close()

    def serve(self, command, migrated=False):
        """The README's server `command`, started in the copy as a reader starts it, in a
        terminal (tools/in_a_terminal.py), on a port as wide as the README's: a page that
        names its own address (Django's debug 404 page does) is then as long as on 8000, so
        the sizes logged are the ones the reader sees. Its log is the output."""
        if migrated:
            migrate(self.directory)
        port = free_port(candidates=README_WIDE_PORTS)
        argv = [sys.executable, str(IN_A_TERMINAL), *command_with_address(command, port)]
        server = ServerProcess(argv, self.directory, port, name=SERVER_OF_COMMAND[command])
        return self._stack.enter_context(server)

    @property
    def page(self):
        """A page in headless Chromium, as a reader's browser: a fresh context (no cookies,
        no cache) in the process's one Chromium (tools/chromium.py)."""
        if self._page is None:
            context = shared_chromium().new_context()
            self._stack.callback(context.close)
            self._page = context.new_page()
        return self._page


def server_output(server):
    """The server's log as the reader's terminal shows it: without the one request the
    launcher's readiness check made for / (always the first request logged), on the README's
    port, with the reader's own install path."""
    text = READINESS_REQUEST_LINE.sub("", server.log_text(), count=1)
    text = re.sub(rf"\b{server.port}\b", str(README_PORT), text)
    return SITE_PACKAGES.sub(SHOWN_SITE_PACKAGES, text)


def elide(lines, hidden):
    """The lines with each run of the lines whose index is in `hidden` replaced by `...`."""
    shown = []
    for index, line in enumerate(lines):
        if index not in hidden:
            shown.append(line)
        elif not shown or shown[-1] != "...":
            shown.append("...")
    return shown


def matching(lines, predicate):
    """The indexes of the lines for which `predicate(line)` is true."""
    return {index for index, line in enumerate(lines) if predicate(line)}


def traceback_frames_but_the_last(lines):
    """The indexes of every frame of each traceback except the last (where it was raised)."""
    hidden = set()
    for start in matching(lines, lambda line: line.startswith("Traceback ")):
        indented = range(start + 1, len(lines))
        end = next((i for i in indented if not lines[i].startswith("  ")), len(lines))
        frames = [i for i in range(start + 1, end) if lines[i].startswith("  File ")]
        if len(frames) > 1:
            hidden.update(range(frames[0], frames[-1]))
    return hidden


# --- how each output is made ---------------------------------------------------------------


def rocket_page_fetched(reader, command):
    """The server started, then / fetched once (as by `curl`)."""
    import requests

    server = reader.serve(command)
    requests.get(server.http_url + "/", timeout=TIMEOUT)
    # Two requests for /: the readiness check's and the reader's (a log line may come late).
    wait_until(
        lambda: len(READINESS_REQUEST_LINE.findall(server.log_text())) == 2,
        timeout=TIMEOUT,
        message=lambda: f"the request for / in the log:\n{server.log_text()}",
    )
    return server_output(server).splitlines()


FAVICON_404 = {"daphne": '"GET /favicon.ico" 404', "uvicorn": '"GET /favicon.ico HTTP/1.1" 404'}


def rocket_page_in_a_browser(reader, command):
    """The rocket page opened in a browser: the page, its fonts.css and three fonts (in no fixed
    order, so shown as `...`), the favicon's 404."""
    server = reader.serve(command)
    mark = server.log_mark()
    reader.page.goto(server.http_url + "/")
    server.wait_for_log(FAVICON_404[server.name], after=mark, timeout=TIMEOUT)
    lines = server_output(server).splitlines()
    # The browser asks for the favicon while the fonts load, so its lines land anywhere among
    # theirs: shown last, in the order they came, as the README explains.
    favicon = [line for line in lines if "favicon.ico" in line]
    lines = [line for line in lines if "favicon.ico" not in line] + favicon
    return elide(lines, matching(lines, lambda line: "/static/admin/fonts/" in line))


# The last line each server logs for a WebSocket the page closed or had refused.
SOCKET_ENDED_LOG = {
    ("step03", "daphne"): '"WSDISCONNECT /ws/echo/"',
    ("step03", "uvicorn"): "connection rejected (500 Internal Server Error)",
    ("step04", "daphne"): '"WSDISCONNECT /ws/echo/"',
    ("step04", "uvicorn"): "connection open",
}


def echo_page_button_pressed(reader, command):
    """The echo page opened in a browser and its button pressed: the WebSocket's handshake
    and what became of it. Of a traceback, the first and last lines are shown."""
    server = reader.serve(command)
    mark = server.log_mark()
    reader.page.goto(server.http_url + "/")
    reader.page.click("#send")
    reader.page.locator("#events").get_by_text("closed with code").wait_for(timeout=TIMEOUT * 1000)
    ended = SOCKET_ENDED_LOG[(reader.step[:6], server.name)]
    server.wait_for_log(ended, after=mark, timeout=TIMEOUT)
    lines = server_output(server).splitlines()
    hidden = traceback_frames_but_the_last(lines)
    if reader.step.startswith("step04"):  # its README says the `...` is the favicon's 404
        hidden |= matching(lines, lambda line: "favicon.ico" in line)
    return elide(lines, hidden)


def chat_room_visited(reader, command):
    """The lobby's page fetched, then a WebSocket joins the lobby, says hello, hears it back
    and leaves. (uvicorn 0.54 logs a WebSocket's opening only; the others its end too.)"""
    import requests
    from websockets.sync.client import connect

    server = reader.serve(command, migrated=True)
    mark = server.log_mark()
    requests.get(server.http_url + "/chat/lobby/", timeout=TIMEOUT)
    url = f"{server.ws_url}/ws/chat/lobby/"
    with connect(url, origin=server.http_url, open_timeout=TIMEOUT) as alice:
        alice.send(json.dumps({"message": "Hello, room!"}))
        alice.recv(timeout=TIMEOUT)
    last = "connection open" if server.name == "uvicorn" else "DISCONNECT /ws/chat/lobby/"
    server.wait_for_log(last, after=mark, timeout=TIMEOUT)
    return server_output(server).splitlines()


def migrate_run(reader, command):
    """`migrate` in a fresh copy; of its "Applying" lines the first and the last are shown."""
    lines = manage(reader.directory, command.removeprefix("python manage.py ")).splitlines()
    applying = sorted(matching(lines, lambda line: line.strip().startswith("Applying ")))
    return elide(lines, set(applying[1:-1]))


def manage_run_after_migrate(reader, command):
    """A management command in a freshly migrated copy, with the in-memory channel layer."""
    migrate(reader.directory)
    env = {"REDIS_URL": ""}
    return manage(reader.directory, command.removeprefix("python manage.py "), env=env).splitlines()


def deploy_checked(reader, command):
    """Step 07's `check --deploy`, typed in one shell after the lines the README has the reader
    type before it: the secret key into run/, then the export of the settings' variables."""
    from tools.deploy_stack import ENVIRONMENT_COMMAND, SECRET_KEY_COMMAND

    script = " && ".join([SECRET_KEY_COMMAND, ENVIRONMENT_COMMAND, command])
    # The variables come from the README's export only, whatever the caller's environment has.
    unset = {"DJANGO_SECRET_KEY": "", "DJANGO_ALLOWED_HOSTS": "", "REDIS_URL": ""}
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=reader.directory,
        env=python_environment(unset),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed in {reader.directory}:\n{result.stdout}")
    return result.stdout.splitlines()


@dataclass(frozen=True)
class ShownOutput:
    """The output the README of `step` shows under `$ command`, as `make(reader, command)`
    makes it."""

    step: str
    command: str
    make: object

    @property
    def readme(self):
        return step_directory(self.step) / "README.md"

    @property
    def name(self):
        return f"{self.step[:6]}: {self.command}"

    @property
    def in_a_browser(self):
        """Whether the reader's action is done in Chromium (which must then be installed)."""
        return self.make in (rocket_page_in_a_browser, echo_page_button_pressed)

    def run(self):
        with Reader(self.step) as reader:
            return self.make(reader, self.command)


def under_servers(step, make, servers):
    return [ShownOutput(step, README_COMMANDS[server], make) for server in servers]


SHOWN_OUTPUTS = [
    *under_servers("step01_startproject", rocket_page_fetched, ["runserver"]),
    *under_servers("step02_daphne", rocket_page_in_a_browser, ["daphne", "uvicorn"]),
    ShownOutput("step02_daphne", "python manage.py migrate", migrate_run),
    *under_servers("step03_websocket_error", echo_page_button_pressed, ["daphne", "uvicorn"]),
    *under_servers("step04_custom_router", echo_page_button_pressed, ["daphne", "uvicorn"]),
    *under_servers("step05_channels", chat_room_visited, ["runserver", "daphne", "uvicorn"]),
    ShownOutput(
        "step06_reliable_chat",
        'python manage.py announce lobby "The building closes at six."',
        manage_run_after_migrate,
    ),
    ShownOutput("step07_deploy", "python manage.py check --deploy", deploy_checked),
]


# --- the README blocks -----------------------------------------------------------------------


def shown_block(readme_text, command):
    """The output lines under `$ command` in the README's console blocks (it must be shown
    exactly once), and where they are in the text: (lines, start, end)."""
    found = []
    for block in BLOCK.finditer(readme_text):
        offset = block.start(1)
        lines = block.group(1).splitlines(keepends=True)
        position = offset
        for index, line in enumerate(lines):
            position += len(line)
            if line.rstrip("\n") == f"$ {command}":
                end = position
                output = []
                for following in lines[index + 1 :]:
                    if following.startswith("$ "):
                        break
                    output.append(following.rstrip("\n"))
                    end += len(following)
                found.append((output, position, end))
    if len(found) != 1:
        raise ValueError(f"`$ {command}` is shown {len(found)} times, not once")
    return found[0]


def with_block(readme_text, command, lines):
    _, start, end = shown_block(readme_text, command)
    return readme_text[:start] + "".join(line + "\n" for line in lines) + readme_text[end:]


def masked(lines):
    from tools.readme_console import normalise

    return [normalise(line) for line in lines]


def is_fresh(shown, made):
    """The README's lines are what a new run made, but for the values that change per run."""
    return masked(shown) == masked(made)


def difference(shown, made):
    """What a new run would change in the block, as a diff of the masked lines."""
    lines = difflib.unified_diff(masked(shown), masked(made), "README", "new run", lineterm="")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale blocks")
    parser.add_argument("--only", help="only the outputs whose name contains this")
    args = parser.parse_args()
    if running_track() != DEFAULT_TRACK:
        sys.exit(f"README outputs come from the {DEFAULT_TRACK} track: run its python")
    stale = []
    try:
        for output in SHOWN_OUTPUTS:
            if args.only and args.only not in output.name:
                continue
            if rewrite_if_stale(output, args.check):
                stale.append(output.name)
    finally:
        close_shared_chromium()
    if args.check and stale:
        sys.exit(1)


def rewrite_if_stale(output, check):
    """Runs the output and compares it with its README block; unless `check`, rewrites a
    stale block. Returns whether it was stale."""
    made = output.run()
    text = output.readme.read_text()
    shown, _, _ = shown_block(text, output.command)
    if is_fresh(shown, made):
        print(f"fresh  {output.name}")
        return False
    if check:
        print(f"STALE  {output.name}:\n{difference(shown, made)}")
    else:
        output.readme.write_text(with_block(text, output.command, made))
        print(f"wrote  {output.name}")
    return True


if __name__ == "__main__":
    main()
