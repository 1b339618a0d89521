"""The step READMEs tell the truth about their own directories and commands."""

import re

import pytest

from tests.readme_structure import listed_changes, real_changes, shown_tree
from tools.deploy_stack import README_COMMANDS as DEPLOY_README_COMMANDS
from tools.readme_console import console_commands
from tools.repository import REPO_ROOT
from tools.show_tree import render_tree
from tools.step_commands import README_COMMANDS

STEPS = sorted(p for p in REPO_ROOT.glob("step*_*") if p.is_dir())
# Commands a README may show that are not server starts, each with the test that covers it.
OTHER_TESTED_COMMANDS = {
    # test_requirements.py: each file pins its track's lock; test_step_requirements.py runs them
    # in a fresh environment per track for a copied-out step.
    "pip install -r requirements.txt",
    "pip install -r requirements-current.txt",
    # test_step01_startproject.py and test_step02_daphne.py run migrate in a copy of the step
    # (and compare its output); step 05 and 06's server tests serve a migrated copy.
    "python manage.py migrate",
    # test_step02_daphne.py types it in a pseudo-terminal, then logs in with that user.
    "python manage.py createsuperuser",
    # test_step05_channels.py and test_step06_reliable_chat.py start these (ports replaced by
    # free ones) and chat across them.
    'redis-server --port 6379 --bind 127.0.0.1 --save ""',
    "REDIS_URL=redis://127.0.0.1:6379/0 daphne --port 8001 newtest.asgi:application",
    "REDIS_URL=redis://127.0.0.1:6379/0 uvicorn --port 8002 newtest.asgi:application",
    # test_step06_reliable_chat.py runs it in a fresh migrated copy and compares its output.
    'python manage.py announce lobby "The building closes at six."',
    # Step 07's: tools/deploy_stack.py starts every site of test_step07_deploy.py (and
    # `make run STEP=07`) with them (ports and nginx's configuration replaced); the key and
    # export lines are typed before `check --deploy`, whose output tools/readme_outputs.py makes.
    *DEPLOY_README_COMMANDS,
}
# The steps, in order. Each compares with the step it builds on (BUILDS_ON): step 05 takes step
# 03's project and adds Channels instead of step 04's hand-written router; step 06 makes step
# 05's chat reliable; step 07 deploys step 06.
EXPECTED_STEPS = [
    "step01_startproject",
    "step02_daphne",
    "step03_websocket_error",
    "step04_custom_router",
    "step05_channels",
    "step06_reliable_chat",
    "step07_deploy",
]
BUILDS_ON = {
    "step02_daphne": "step01_startproject",
    "step03_websocket_error": "step02_daphne",
    "step04_custom_router": "step03_websocket_error",
    "step05_channels": "step03_websocket_error",
    "step06_reliable_chat": "step05_channels",
    "step07_deploy": "step06_reliable_chat",
}


def test_every_step_of_the_tutorial_is_here_in_order():
    assert [p.name for p in STEPS] == EXPECTED_STEPS


@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.name)
def test_every_command_shown_is_one_the_tests_run(step):
    commands = console_commands(step / "README.md")
    assert commands, "a step README shows how to run the step"
    known = set(README_COMMANDS.values()) | OTHER_TESTED_COMMANDS
    for shown in commands:
        assert shown.command in known, f"untested command in {step.name}/README.md: {shown.command}"


@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.name)
def test_files_section_shows_the_real_tree(step):
    assert shown_tree((step / "README.md").read_text()) == render_tree(step)


@pytest.mark.parametrize("step", STEPS[1:], ids=lambda p: p.name)
def test_what_changed_lists_exactly_the_real_diff(step):
    previous = REPO_ROOT / BUILDS_ON[step.name]
    assert listed_changes((step / "README.md").read_text()) == real_changes(previous, step)


@pytest.mark.parametrize("step", STEPS, ids=lambda p: p.name)
def test_links_to_other_steps_point_at_real_directories(step):
    text = (step / "README.md").read_text()
    for target in re.findall(r"\]\(\.\./(step\d\d_\w+)/?\)", text):
        assert (REPO_ROOT / target).is_dir(), target
