"""A real browser for the page tests: Debian's headless chromium driven by selenium.

Missing tools fail the tests with what to run (scripts/install-browser-tools.sh), never skip.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "run scripts/install-browser-tools.sh (apt chromium chromium-driver, pip selenium)"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,900",
]


def _tool(path: str, name: str) -> str:
    found = path if Path(path).exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed ({path} missing): {INSTALL_HINT}", pytrace=False)
    return found


class Browser:
    """A selenium driver with the few things the page tests need."""

    def __init__(self, driver, server: ServerProcess) -> None:
        self.driver = driver
        self.server = server

    def open(self, path: str) -> None:
        self.driver.get(self.server.http + path)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, script: str, timeout: float, what: str, *args, interval: float = 0.1):
        """Poll a JS expression (``return ...``) until it is truthy; its value is returned."""
        return self.server.wait_for(lambda: self.js(script, *args), timeout, interval, what)

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def screenshot(self, name: str) -> Path:
        """The whole page, not only the viewport."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"browser-{name}.png"
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def console_errors(self, allowed: tuple[str, ...] = ()) -> list[str]:
        """Severe console entries (uncaught errors, failed loads) since the last call."""
        entries = self.driver.get_log("browser")
        with (ARTIFACTS / "browser-console.log").open("a") as log:
            for entry in entries:
                log.write(json.dumps(entry) + "\n")
        return [
            e["message"]
            for e in entries
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
        ]


@pytest.fixture(scope="module")
def browser_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed in this Python: {INSTALL_HINT}", pytrace=False)
    chromium = _tool(CHROMIUM, "chromium")
    chromedriver = _tool(CHROMEDRIVER, "chromedriver")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-console.log").unlink(missing_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver, log_output=str(ARTIFACTS / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as exc:
        pytest.fail(f"chromium did not start under chromedriver: {exc}\n{INSTALL_HINT}")
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    yield driver
    driver.quit()
