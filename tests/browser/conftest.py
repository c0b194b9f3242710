"""Real Chromium, driven by Playwright, against the real ASGI server and Celery worker."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import OUTCOME_SECONDS

# Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls made
# while a loop is running. The tests only touch the ORM between browser steps, never concurrently.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
VIEWPORT = {"width": 1280, "height": 860}
# How long a browser test waits for a worker's outcome on the page (tests.conftest.OUTCOME_SECONDS).
OUTCOME_MS = int(OUTCOME_SECONDS * 1000)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


def _chromium() -> str | None:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = _chromium()
    if executable is None:
        pytest.skip("Chromium is not installed (/usr/bin/chromium); `make system-tools` installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed  # type: ignore[attr-defined]
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser, web_server: str, request: pytest.FixtureRequest) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=web_server, viewport=VIEWPORT)
    # Waits on the page itself (a click's answer, a chart drawn); waits on a worker's outcome use OUTCOME_MS.
    context.set_default_timeout(60_000)
    # A page's load waits for Plotly and every script: on a CI host busy training, give it longer.
    context.set_default_navigation_timeout(45_000)
    tab = context.new_page()
    yield tab
    if request.node.stash.get(_FAILED, False):
        _show_failure(tab, request.node.name)
    # Let requests the page still has in flight (a self-reload, a poll) finish before the test's
    # database is flushed: on PostgreSQL a flush racing a request's query can deadlock.
    try:
        tab.wait_for_load_state("networkidle", timeout=5_000)
    except Exception:  # a page that never goes idle still gets closed
        pass
    context.close()


@pytest.fixture
def screenshot() -> object:
    """Saves a full-page screenshot under screenshots/ (gitignored) for a person to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def shoot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shoot


def log_in(page, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Logs in through the real login form, as a person would."""
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


def _show_failure(tab, name: str) -> None:  # type: ignore[no-untyped-def]
    """What the browser showed when the test failed: a screenshot, and the page's URL and text."""
    try:
        SCREENSHOTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"FAILED-{name}.png"), full_page=True)
        print(f"\nThe page at the failure: {tab.url}\n{tab.inner_text('body')[:2000]}")
    except Exception as exc:  # a closed or crashed page: say so, the test's own error stands
        print(f"\nNo picture of the page at the failure: {exc}")
