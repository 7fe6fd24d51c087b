"""The dashboard in a real browser: headless Chromium (Debian's) signs in to ``keysentry demo``
through the link it prints, creates a key, reads it from the page once, uses it on the API,
rotates and revokes it, and finds that a reload no longer shows it. A failing test leaves a
screenshot in ``tests/screenshots/`` (git-ignored)."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import Demo, browser_missing, chromium, demo

SCREENSHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Demo]:
    with demo(tmp_path) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("KEYSENTRY_REQUIRE_SERVICES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    with chromium(1024, 900) as driver:
        yield driver


def _save(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def _submit(driver: Any, button: Any, dashboard: str) -> None:
    """Click a form's button and wait for the answer, and for the page's script to have made
    the address the dashboard's (so a reload does not post the form again)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    button.click()
    wait = WebDriverWait(driver, 10)
    wait.until(expected_conditions.staleness_of(button))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    wait.until(lambda d: d.current_url == dashboard)


def _status(port: int, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/v1/me", headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_create_copy_rotate_revoke_in_the_browser(served: Demo, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    find = driver.find_element
    try:
        driver.get(served.sign_in)
        assert driver.current_url == f"{served.base}/dashboard/"
        demo_row = find(By.CSS_SELECTOR, "tr[data-status=active] code").text
        assert served.key.startswith(demo_row.rstrip("…"))  # the demo key, by its prefix

        find(By.ID, "name").send_keys("from the browser")
        find(By.CSS_SELECTOR, "input[name=scopes][value=read]").click()
        dashboard = f"{served.base}/dashboard/"
        _submit(driver, find(By.CSS_SELECTOR, "form.create button[type=submit]"), dashboard)
        key = find(By.ID, "new-key").get_attribute("value")
        assert key.startswith("sk_live_")
        assert "shown only once" in find(By.CSS_SELECTOR, ".new-key").text
        assert find(By.CSS_SELECTOR, "button[data-copy]").is_displayed()  # the script ran
        assert _status(served.port, key) == 200

        driver.refresh()  # the page's address is the dashboard's again: no resubmission
        assert key not in driver.page_source
        assert not driver.find_elements(By.ID, "new-key")
        row = find(By.XPATH, "//tr[th[normalize-space()='from the browser']]")
        key_id = row.get_attribute("data-key-id")
        assert key.startswith(f"sk_live_{key_id}")

        row.find_element(By.XPATH, ".//summary[starts-with(normalize-space(), 'Rotate')]").click()
        _submit(
            driver, row.find_element(By.CSS_SELECTOR, "form[action$='/rotate'] button"), dashboard
        )
        rotated = find(By.ID, "new-key").get_attribute("value")
        assert rotated != key
        assert _status(served.port, key) == 401  # rotated without grace: revoked at once
        assert _status(served.port, rotated) == 200

        driver.refresh()
        assert rotated not in driver.page_source
        new_id = rotated[len("sk_live_") : len("sk_live_") + 12]
        row = find(By.ID, f"key-{new_id}")
        row.find_element(By.XPATH, ".//summary[starts-with(normalize-space(), 'Revoke')]").click()
        button = row.find_element(By.CSS_SELECTOR, "form[action$='/revoke'] button")
        _submit(driver, button, f"{dashboard}?done=revoke&key={new_id}")
        assert f"Key {new_id} revoked." in find(By.CSS_SELECTOR, "[role=status]").text
        assert find(By.ID, f"key-{new_id}").get_attribute("data-status") == "revoked"
        assert _status(served.port, rotated) == 401

        driver.refresh()
        assert key not in driver.page_source
        assert rotated not in driver.page_source
    except BaseException:
        _save(driver, "test_create_copy_rotate_revoke_in_the_browser")
        raise
