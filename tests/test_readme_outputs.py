"""Every output a step README shows under a command is fresh: a new real run, made the way
tools/readme_outputs.py makes it (the one place that says how), gives the same lines but for
the values that differ from run to run. A stale block is rewritten by
`.venv/django30/bin/python -m tools.readme_outputs`, never by hand."""

import pytest

from tools.readme_console import console_commands
from tools.readme_outputs import SHOWN_OUTPUTS, difference, is_fresh, shown_block
from tools.repository import STEP_DIRECTORIES


@pytest.mark.track("django30")
@pytest.mark.parametrize("output", SHOWN_OUTPUTS, ids=lambda output: output.name)
def test_the_readme_shows_what_a_new_run_prints(output, request):
    if output.in_a_browser:  # the process's Chromium, or a skip naming what to install
        request.getfixturevalue("session_chromium")
    shown, _, _ = shown_block(output.readme.read_text(), output.command)
    made = output.run()
    assert is_fresh(shown, made), (
        f"{output.readme.relative_to(output.readme.parents[1])} is stale; rewrite it with "
        f"`python -m tools.readme_outputs --only '{output.name}'`:\n{difference(shown, made)}"
    )


@pytest.mark.parametrize("step", STEP_DIRECTORIES, ids=lambda step: step.name)
def test_every_output_a_readme_shows_is_made_by_the_tool(step):
    """Whatever a step README shows under a command comes from tools/readme_outputs.py: no
    listing is pasted in by hand."""
    made = {output.command for output in SHOWN_OUTPUTS if output.step == step.name}
    shown = [command for command in console_commands(step / "README.md") if command.output]
    assert {command.command for command in shown} <= made, step.name
