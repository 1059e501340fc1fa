"""Headless Chromium for the browser tests (Debian chromium + chromium-driver): start it, wait in it, read it.

Skips the test when the browser is not installed (scripts/test.sh installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator

import pytest


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package}; scripts/test.sh installs it)")
    return path


@contextlib.contextmanager
def chromium(page_load_timeout_s: float = 60) -> Iterator[Any]:
    """A headless Chromium WebDriver in Japanese with a throw-away profile; quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _binary("chromium", "chromium")
    profile = tempfile.mkdtemp(prefix="ems-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}",
                "--window-size=1440,1200", "--lang=ja-JP"):
        opts.add_argument(arg)
    # Headless Chromium ignores --lang for navigator.languages and Accept-Language; the profile preference counts.
    opts.add_experimental_option("prefs", {"intl.accept_languages": "ja-JP,ja"})
    driver = webdriver.Chrome(service=Service(_binary("chromedriver", "chromium-driver")), options=opts)
    driver.set_page_load_timeout(page_load_timeout_s)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, condition: Callable[[Any], Any], what: str, timeout_s: float = 60) -> Any:
    """Wait for ``condition(driver)``; the page re-renders its tables every few seconds, so an element
    found a moment ago may be gone: such a poll just counts as "not yet"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
        lambda d: condition(d), message=what)


def texts(driver: Any, css: str, attr: str | None = None) -> list:
    """Text (or ``attr``) of every element matching ``css``, read in one go inside the page."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => arguments[1] ? e.getAttribute(arguments[1]) "
        ": e.textContent)", css, attr)
