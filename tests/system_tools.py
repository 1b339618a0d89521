"""System programs the tests need (chromium, redis-server, nginx, PostgreSQL), found or
reported."""

import os
import shutil

import pytest

# Re-exported: step 04's test starts a second Chromium with the same arguments.
from tools.chromium import CHROMIUM_ARGS as CHROMIUM_ARGS
from tools.deploy_stack import missing_programs


def require_tool(name, install_hint):
    """Path of a system tool; without it, fail in CI and skip elsewhere, naming the install."""
    path = shutil.which(name)
    if path:
        return path
    not_installed(name, install_hint)


def not_installed(name, install_hint):
    message = f"{name} is not installed; install it with: {install_hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_deploy_tools():
    """What step 07's site runs besides Python: nginx, redis-server, openssl, and PostgreSQL
    on the tracks whose site uses it (found in Debian's /usr/lib/postgresql/<version>/bin,
    which is not on PATH)."""
    for name, install_hint in missing_programs().items():
        not_installed(name, install_hint)
