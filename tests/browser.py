"""Launches Debian's Chromium, headless, through Playwright for Python.

Playwright's own browser download does not work on offline machines, so the tests and the
browser benchmark drive the system's `chromium` (Debian package) instead (NOTES §3).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str | None:
    """The system Chromium: $CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextmanager
def launch_chromium(headless: bool = True) -> Iterator:
    """Yields a Playwright `Browser` running the system Chromium; closes both afterwards."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError(
            "no Chromium found: install Debian's package (apt-get install chromium) "
            "or set $CHROMIUM to a Chromium binary"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=headless, args=list(CHROMIUM_FLAGS)
        )
        try:
            yield browser
        finally:
            browser.close()
