"""A real browser for the console's tests: Debian's headless Chromium, driven through Debian's
chromedriver (named explicitly, so Selenium Manager never tries to download a browser)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support import require_binary

VIEWPORT = {"width": 1280, "height": 800}


@contextmanager
def headless_chromium(downloads: Path) -> Iterator[webdriver.Chrome]:
    """Chromium with a 1280x800 viewport that saves downloads into `downloads`; skips (fails
    under RAYGATE_REQUIRE_SYSTEM_SERVICES=1) when chromium or chromedriver is missing."""
    binary = require_binary("chromium", "/usr/bin/chromium")
    driver_binary = require_binary("chromedriver", "/usr/bin/chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_binary), options=options)
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False},
        )
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        yield driver
    finally:
        driver.quit()
