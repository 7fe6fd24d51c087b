"""The README's picture of the dashboard: ``uv run python -m tests.screenshot``.

Runs the real demo, uses its key a few times (so the key's row has a usage chart, once the
guard's usage flush has written them), signs in through its link in headless Chromium, creates
a key (so the page shows a new key once, with its warning) and saves the page as
``docs/dashboard.png``.
"""

from __future__ import annotations

import http.client
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By

from .browser import chromium, demo

OUT = Path(__file__).parent.parent / "docs" / "dashboard.png"
#: The guard's default usage_interval, and a margin: the requests are then in the history.
FLUSHED = 12.0


def _use(port: int, key: str, times: int) -> None:
    for _ in range(times):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/v1/me", headers={"Authorization": f"Bearer {key}"})
            assert conn.getresponse().status == 200
        finally:
            conn.close()


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        demo(Path(directory)) as served,
        chromium(1200, 1320) as driver,
    ):
        _use(served.port, served.key, 17)
        time.sleep(FLUSHED)
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
