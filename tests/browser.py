"""Headless Chromium through Playwright, recording every request the page makes."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from urllib.parse import urlparse

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def browser_page(chromium_path: str, width: int = 1400, height: int = 1000) -> Iterator[tuple[object, list[str]]]:
    """A page and the list of URLs it requested (filled as it loads)."""
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            yield page, requests
        finally:
            context.close()


def outside_loopback(urls: list[str]) -> list[str]:
    """Requests to anything but 127.0.0.1 (data: and blob: URLs stay in the page)."""
    return [url for url in urls if urlparse(url).scheme in ("http", "https", "ws", "wss")
            and urlparse(url).hostname not in ("127.0.0.1", "localhost")]
