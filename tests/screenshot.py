"""The README's picture of the dashboard: ``uv run python -m tests.screenshot``.

Runs the real demo, signs in through its link in headless Chromium, creates a key (so the page
shows a new key once, with its warning) and saves the page as ``docs/dashboard.png``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from selenium.webdriver.common.by import By

from .browser import chromium, demo

OUT = Path(__file__).parent.parent / "docs" / "dashboard.png"


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        demo(Path(directory)) as served,
        chromium(1200, 1320) as driver,
    ):
        driver.get(served.sign_in)
        driver.find_element(By.ID, "name").send_keys("production server")
        driver.find_element(By.CSS_SELECTOR, "input[name=scopes][value=read]").click()
        driver.find_element(By.CSS_SELECTOR, "form.create button[type=submit]").click()
        driver.find_element(By.ID, "new-key")
        OUT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(OUT))
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
