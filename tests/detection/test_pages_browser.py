"""The detect page in real Chromium: the page the workbench renders for an answer (in this process,
with the stand-in backend of test_task_api), its static files served as the server serves them.
The slider hides and shows boxes on the canvas and in the table with no request of its own."""
from __future__ import annotations

import mimetypes
from pathlib import Path

import pytest

from tests.browser.conftest import VIEWPORT, browser  # noqa: F401
from tests.detection.test_task_api import boxes_backend, detection_job, served, upload  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.browser, pytest.mark.usefixtures("boxes_backend")]

STATIC = Path(__file__).resolve().parents[2] / "static"
ORIGIN = "http://workbench.test"


def test_the_slider_hides_and_shows_the_boxes_without_a_request(alice, client, served, browser):  # noqa: F811
    job = detection_job(alice)
    client.force_login(alice)
    html = client.post(f"/jobs/{job.pk}/classify/", {"image": upload(64, 48), "score_threshold": "0.5"}).content

    requests: list[str] = []

    def answer(route, request) -> None:  # type: ignore[no-untyped-def]
        requests.append(request.url)
        path = request.url.removeprefix(ORIGIN)
        if path == "/detect/":
            return route.fulfill(status=200, body=html, content_type="text/html")
        file = STATIC / path.removeprefix("/static/")
        if path.startswith("/static/") and file.is_file():
            return route.fulfill(status=200, body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0])
        return route.fulfill(status=404, body=b"")

    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab = context.new_page()
        tab.route(f"{ORIGIN}/**", answer)
        tab.goto(f"{ORIGIN}/detect/")
        tab.wait_for_function("() => document.getElementById('detect-canvas').dataset.boxes !== undefined")
        loaded = len(requests)

        def shown_at(value: str) -> tuple[str, int, str]:
            tab.eval_on_selector("#score-threshold", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
                                 value)
            rows = tab.locator("#detect-boxes tbody tr:not([hidden])").count()
            return tab.get_attribute("#detect-canvas", "data-boxes"), rows, tab.text_content("#boxes-shown")

        assert tab.get_attribute("#detect-canvas", "data-boxes") == "1"  # only the 0.9 cat at 0.50
        assert tab.text_content("#score-threshold-value") == "0.50"
        assert shown_at("0.35") == ("2", 2, "2 of 3 boxes shown")
        assert shown_at("0.05") == ("3", 3, "3 of 3 boxes shown")
        assert shown_at("0.95") == ("0", 0, "0 of 3 boxes shown")
        assert shown_at("0.5")[0] == "1"
        # The cat's box is stroked in its colour on its left edge (x 16 of the 64-pixel-wide photo, shown at its size).
        pixel = tab.evaluate("""() => {
            const c = document.getElementById('detect-canvas'), r = c.width / c.clientWidth;
            return Array.from(c.getContext('2d').getImageData(Math.round(16 * r), Math.round(20 * r), 1, 1).data); }""")
        assert pixel == [128, 0, 0, 255]
        assert tab.evaluate("() => document.getElementById('detect-photo').clientWidth") == 64
        assert len(requests) == loaded  # the slider asked nothing of the server
    finally:
        context.close()
