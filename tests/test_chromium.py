"""The browser the tests share is started as tools/chromium.py says: without the address bar's
drop-down that headless Chromium renders, unseen, for every window, and with every feature
Playwright turns off still off (Chromium honours only the last --disable-features)."""

import re
from pathlib import Path

import playwright

from tests.system_tools import require_tool
from tools.chromium import PLAYWRIGHT_DISABLED_FEATURES


def test_the_args_repeat_the_installed_playwrights_disabled_features():
    driver = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "coreBundle.js"
    bundle = driver.read_text()
    start = bundle.index("disabledFeatures = [")
    listed = bundle[start : bundle.index("]", start)]
    assert re.findall(r'^\s*"(\w+)"', listed, re.MULTILINE) == PLAYWRIGHT_DISABLED_FEATURES


def test_a_new_context_opens_only_its_own_page(chromium_browser):
    require_tool("chromium", "sudo apt-get install chromium")
    session = chromium_browser.new_browser_cdp_session()
    context = chromium_browser.new_context()
    context.new_page().goto("data:text/html,<p>hello</p>")
    targets = session.send("Target.getTargets")["targetInfos"]
    context.close()
    session.detach()
    assert [(t["type"], t["url"]) for t in targets] == [("page", "data:text/html,<p>hello</p>")]
