"""Reads the ```console blocks of a README: `$ command` lines and the output shown under them,
so tests can run the very commands a reader sees and compare the output a reader is promised.

In a README's expected output, a line `...` stands for any number of lines; timestamps,
client ports, process ids and install paths are masked on both sides before comparing.
"""

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
README_PORT = "8000"

MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+"), "<time>"),
    (re.compile(r"\[\d\d/\w{3}/\d{4}[: ]\d\d:\d\d:\d\d\]"), "[<time>]"),
    (re.compile(r"\b[A-Z][a-z]+ \d\d?, \d{4} - \d\d:\d\d:\d\d\b"), "<date>"),
    (re.compile(r"process \[\d+\]"), "process [<pid>]"),
    # Channels' runserver: how long the request took, before the client's address.
    (re.compile(r"\[\d+\.\d+, 127\.0\.0\.1:"), "[<seconds>, 127.0.0.1:"),
    (re.compile(r'File "[^"]*/site-packages/'), 'File ".../site-packages/'),
]
CLIENT_ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")


@dataclass
class ConsoleCommand:
    command: str
    output: list = field(default_factory=list)

    @property
    def argv(self):
        return shlex.split(self.command)


def console_commands(readme):
    """Every `$ command` in the README's console blocks, with the output lines under it."""
    commands = []
    for block in BLOCK.findall(Path(readme).read_text()):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append(ConsoleCommand(line[2:].strip()))
            elif commands and line.strip():
                commands[-1].output.append(line.rstrip())
    return commands


def find_command(readme, command):
    matches = [c for c in console_commands(readme) if c.command == command]
    assert matches, f"{readme} shows no `$ {command}`"
    return matches


def normalise(line, server_port=None):
    line = line.rstrip()
    if server_port is not None:
        line = re.sub(rf"\b{server_port}\b", README_PORT, line)
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return CLIENT_ADDRESS.sub(
        lambda m: m.group(0) if m.group(1) == README_PORT else "127.0.0.1:<port>", line
    )


def assert_output_shown(expected_lines, actual_text, server_port=None):
    """The README's lines appear in the actual output, in order (`...` skips any lines)."""
    actual = [normalise(line, server_port) for line in actual_text.splitlines()]
    position = 0
    for expected in expected_lines:
        if expected.strip() == "...":
            continue
        wanted = normalise(expected)
        try:
            position = actual.index(wanted, position) + 1
        except ValueError:
            raise AssertionError(
                f"README line not in the real output (in order):\n  {wanted}\n"
                "real output, normalised:\n  " + "\n  ".join(actual)
            ) from None
