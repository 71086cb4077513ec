"""Headless Chromium driven by selenium, for the console's tests.

Debian's ``chromium`` and its ``chromedriver`` (``chromium-driver``, installed by
scripts/system-deps.sh) are named explicitly, so selenium never looks for or downloads a
browser or a driver of its own. The browser log (``goog:loggingPrefs``) holds every console
message and every Content-Security-Policy violation a page caused.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

WINDOW = (1280, 800)


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return None if browser is None or driver is None else (browser, driver)


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are missing: run `make system-deps`")
    browser, driver_path = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        # The page's viewport itself (the window's size includes its frame): screenshots are
        # exactly WINDOW.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()


def problems_logged(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The browser log's warnings and errors since the last call (the log is drained): CSP
    violations, script errors, failed loads."""
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return [entry for entry in entries if entry["level"] in ("WARNING", "SEVERE")]
