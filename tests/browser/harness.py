"""Shared by the page scripts in tests/browser/: the system Chromium ($CHROMIUM) driven by
Playwright's sync API, with what a person would notice collected on the way: console
errors, uncaught page errors, and dialogs (recorded, then dismissed so the page goes on).

Environment, set by tests/e2e/browser.rs: CHROMIUM, BASE_URL, SCENARIO, SCREENSHOT_DIR,
WATCHDOG_SECONDS (the script is ended, with a message, past it).

A script:
    import harness
    page = harness.start()
    page.goto(harness.BASE_URL)
    ...
    harness.finish({"what": "the test checks"})
"""

import json
import os
import sys
import threading
import traceback
from pathlib import Path

from playwright.sync_api import sync_playwright

BASE_URL = os.environ.get("BASE_URL", "")
SCENARIO = os.environ.get("SCENARIO", "")
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", "screenshots"))

# Without these, Chromium waits on network connections that are refused here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

console_errors: list = []  # {"text", "url", "line"} of console.error and failed loads
page_errors: list = []  # {"message", "stack"} of uncaught exceptions and rejections
dialogs: list = []  # {"type", "message"} of alert/confirm/prompt/beforeunload, dismissed

_playwright = None
_browser = None
page = None


def _watchdog() -> None:
    seconds = float(os.environ.get("WATCHDOG_SECONDS", "150"))

    def expire() -> None:
        sys.stderr.write(f"harness: the script ran past {seconds:g} s; ended\n")
        _report_collected()
        sys.stderr.flush()
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def start(default_timeout_ms: int = 20_000):
    """Launches Chromium and opens one page with a 1280x800 viewport; returns the page."""
    global _playwright, _browser, page
    _watchdog()
    _playwright = sync_playwright().start()
    # Playwright gives it a fresh, empty --user-data-dir of its own.
    _browser = _playwright.chromium.launch(
        executable_path=os.environ["CHROMIUM"],
        headless=True,
        args=CHROMIUM_ARGS,
        timeout=60_000,
    )
    context = _browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(default_timeout_ms)
    page.on("console", _on_console)
    page.on("pageerror", _on_page_error)
    page.on("dialog", _on_dialog)
    return page


def _on_console(message) -> None:
    if message.type == "error":
        location = message.location or {}
        console_errors.append(
            {
                "text": message.text,
                "url": location.get("url", ""),
                "line": location.get("lineNumber", 0),
            }
        )


def _on_page_error(error) -> None:
    page_errors.append({"message": error.message, "stack": error.stack or ""})


def _on_dialog(dialog) -> None:
    dialogs.append({"type": dialog.type, "message": dialog.message})
    dialog.dismiss()


def screenshot(name: str) -> str:
    """Saves the viewport as SCREENSHOT_DIR/<name>.png; returns the path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path))
    return str(path)


def _close() -> None:
    global _playwright, _browser
    if _browser is not None:
        _browser.close()
        _browser = None
    if _playwright is not None:
        _playwright.stop()
        _playwright = None


def finish(result: dict) -> None:
    """Closes the browser and prints `result` as JSON on the last stdout line, with the
    collected console_errors, page_errors and dialogs unless the script set those keys."""
    result = dict(result)
    result.setdefault("console_errors", console_errors)
    result.setdefault("page_errors", page_errors)
    result.setdefault("dialogs", dialogs)
    _close()
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def _report_collected() -> None:
    for name, items in (
        ("console errors", console_errors),
        ("page errors", page_errors),
        ("dialogs", dialogs),
    ):
        if items:
            sys.stderr.write(f"harness: {name}: {json.dumps(items)}\n")


def _on_failure(kind, value, trace) -> None:
    """An uncaught exception: its traceback, a screenshot `failure.png` of where the page
    was, and what was collected, on stderr; then the browser closes."""
    traceback.print_exception(kind, value, trace)
    if page is not None:
        try:
            sys.stderr.write(f"harness: screenshot {screenshot('failure')}\n")
        except Exception as error:  # noqa: BLE001 - best effort while failing
            sys.stderr.write(f"harness: no failure screenshot: {error}\n")
    _report_collected()
    try:
        _close()
    except Exception:  # noqa: BLE001
        pass
    sys.stderr.flush()


sys.excepthook = _on_failure
