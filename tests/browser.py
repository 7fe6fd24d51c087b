"""Headless Chromium from the Debian packages (``chromium``, ``chromium-driver``), driven by
Selenium, and ``keysentry demo`` run as a user runs it: what the browser test and the README's
screenshot (``python -m tests.screenshot``) share. Nothing is downloaded: the browser and its
driver are the machine's (``.ci/run`` installs them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCRIPT = Path(sys.executable).with_name("keysentry")

#: What the browser needs here (as root, in a container, offline), and nothing it would
#: fetch on its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def browser_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install chromium chromium-driver"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Selenium ``WebDriver`` on a fresh profile, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="keysentry-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(15)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass(frozen=True)
class Demo:
    key: str
    port: int
    sign_in: str
    banner: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def demo(directory: Path) -> Iterator[Demo]:
    """``keysentry demo --port 0`` in ``directory`` (its SQLite file lands there)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KEYSENTRY_SECRET", "KEYSENTRY_STORE")}
    proc = subprocess.Popen(
        [str(SCRIPT), "demo", "--port", "0"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        key = re.search(r"Bearer (sk_live_[A-Za-z0-9]+)", text)
        link = re.search(r"(http://127\.0\.0\.1:(\d+)/sign-in\?token=[A-Za-z0-9_-]+)", text)
        assert key, text
        assert link, text
        yield Demo(key.group(1), int(link.group(2)), link.group(1), text)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
