"""Headless Debian Chromium through Playwright's sync API, one per process.

Launching Chromium takes a second or more on a busy 2-core machine, and a fresh context in a
running one (its own cookies, storage and pages) a fraction of that, so the tests and
tools/readme_outputs.py share one browser per process and give each test or output a context
of its own. Playwright's sync API keeps an event loop in the thread that started it, so while
the browser lives nothing else may run a loop in that thread: the tests run their coroutines
with tools.chat_driver.run_async, which uses a thread of its own.
"""

import shutil

# Chromium reads only the last --disable-features switch it is given, and Playwright passes
# one of its own first, so ours repeats Playwright's list (that of the Playwright both tracks
# pin, 1.65; tests/test_chromium.py compares it with the installed one) before adding to it.
PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "msForceBrowserSignIn",
    "msEdgeUpdateLaunchServicesPreferredVersion",
]
# Headless Chromium (156 here) still gives every new window, so every context a test opens,
# the address bar's drop-down: two chrome://omnibox-popup pages, rendered in a process of
# their own. Nobody sees them, yet they cost as much CPU as the context: ten contexts with a
# page each took 13 s of CPU with them, 6 s without; step 05's browser tests 39 s, then 26 s.
UNSEEN_OMNIBOX_POPUP = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup"]

# Headless Debian Chromium, as every browser in the tests and tools starts it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine has no network: keep Chromium from trying to reach Google's services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES + UNSEEN_OMNIBOX_POPUP),
]
INSTALL_HINT = "sudo apt-get install chromium"
_running = {}


def chromium_path():
    """Where Debian's chromium is; raises, naming the install, if it is not installed."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError(f"chromium is not installed; install it with: {INSTALL_HINT}")
    return path


def shared_chromium():
    """This process's Chromium (a Playwright Browser), launched on first use."""
    if "browser" not in _running:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        try:
            _running["browser"] = playwright.chromium.launch(
                executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
            )
        except BaseException:
            playwright.stop()
            raise
        _running["playwright"] = playwright
    return _running["browser"]


def close_shared_chromium():
    """Closes this process's Chromium and stops Playwright, if they were started."""
    browser, playwright = _running.pop("browser", None), _running.pop("playwright", None)
    if browser is not None:
        browser.close()
    if playwright is not None:
        playwright.stop()
