"""The detect page in real Chromium: the page the workbench renders for an answer (in this process,
with the stand-in backend of test_task_api), its static files served as the server serves them.
The slider hides and shows boxes on the canvas and in the table with no request of its own."""
from __future__ import annotations

import mimetypes
from pathlib import Path

import pytest

from tests.browser.conftest import VIEWPORT
from tests.detection.test_task_api import boxes_backend, clean_folders, detection_job, served, upload  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.browser, pytest.mark.usefixtures("boxes_backend")]

ORIGIN = "http://workbench.test"


def static_file(path: str) -> Path | None:
    """A /static/ path as the server's static finders find it (plotly.js comes from the plotly package)."""
    from django.contrib.staticfiles import finders

    found = finders.find(path.removeprefix("/static/")) if path.startswith("/static/") else None
    return Path(found) if found else None


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
        file = static_file(path)
        if file is not None:
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


def test_the_evaluation_page_draws_the_pr_curves_the_worst_boxes_and_moves_the_threshold(
        alice, client, browser, monkeypatch):  # noqa: F811
    from results.evaluation import evaluation_run, evaluation_start

    monkeypatch.setattr("results.work.send", lambda *args, **kwargs: None)
    job = detection_job(alice)
    evaluation, _ = evaluation_start(job=job, split="val")
    evaluation_run(evaluation_id=evaluation.pk)
    client.force_login(alice)

    # The workbench's answers fetched here: the browser's route handler runs where this test's
    # database transaction is not seen.
    page_path = f"/jobs/{job.pk}/evaluations/{evaluation.pk}/"
    pages = {page_path: (client.get(page_path).content, "text/html")}
    for index in (0, 1, 2):
        image = f"/datasets/{job.dataset.pk}/images/val/{index}.png"
        pages[image] = (client.get(image).content, "image/png")

    def answer(route, request) -> None:  # type: ignore[no-untyped-def]
        path = request.url.removeprefix(ORIGIN)
        file = static_file(path)
        if file is not None:
            return route.fulfill(status=200, body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0])
        if path in pages:
            return route.fulfill(status=200, body=pages[path][0], content_type=pages[path][1])
        return route.fulfill(status=404, body=b"")

    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab = context.new_page()
        tab.route(f"{ORIGIN}/**", answer)
        tab.goto(f"{ORIGIN}{page_path}")
        tab.wait_for_function("() => document.querySelectorAll('#worst-images canvas[data-boxes]').length === 3")

        curves = tab.evaluate("() => Array.from(document.querySelectorAll('#pr-curves .pr-curve'))"
                              ".map((el) => [el.dataset.class, el.data[0].y.length])")
        drawn = tab.evaluate("() => Array.from(document.querySelectorAll('#worst-images figure'))"
                             ".map((f) => [f.dataset.index, f.querySelector('canvas').dataset.boxes])")

        assert curves == [["cat", 101], ["dog", 101]]
        assert drawn == [["1", "2"], ["0", "4"], ["2", "0"]]  # image 0: 2 true, its 0.9 cat and 0.4 dog

        def dog_at(value: str) -> list[str]:
            tab.eval_on_selector("#eval-threshold", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
                                 value)
            return [tab.text_content('#threshold-table tr[data-class="dog"] .precision'),
                    tab.text_content('#threshold-table tr[data-class="dog"] .recall')]

        assert dog_at("0.3") == ["0.500", "1.000"]
        assert dog_at("0.05") == ["0.333", "1.000"]  # its 0.1 false dog counts too
        assert dog_at("0.85") == ["0.000", "0.000"]
        assert tab.text_content("#eval-threshold-value") == "0.85"
    finally:
        context.close()


def test_the_job_page_plots_map_and_each_loss_part(alice, client, browser):
    import time

    from jobs.models import MetricPoint

    job = detection_job(alice)
    for step, epoch in ((10, 1.0), (20, 2.0)):
        for split, name, value in (("train", "loss", 3 / epoch), ("train", "loss_heatmap", 2 / epoch),
                                   ("train", "loss_size", 5 / epoch), ("train", "loss_offset", 0.3 / epoch),
                                   ("val", "loss", 3.2 / epoch), ("val", "map_50", 0.3 * epoch),
                                   ("val", "map", 0.1 * epoch)):
            MetricPoint.objects.create(job=job, split=split, name=name, epoch=epoch, step=step, value=value,
                                       time=time.time())
    client.force_login(alice)
    pages = {f"/jobs/{job.pk}/": (client.get(f"/jobs/{job.pk}/").content, "text/html"),
             f"/api/v1/jobs/{job.pk}/metrics/?max_points=2000":
                 (client.get(f"/api/v1/jobs/{job.pk}/metrics/?max_points=2000").content, "application/json")}

    def answer(route, request) -> None:  # type: ignore[no-untyped-def]
        path = request.url.removeprefix(ORIGIN)
        file = static_file(path)
        if file is not None:
            return route.fulfill(status=200, body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0])
        if path in pages:
            return route.fulfill(status=200, body=pages[path][0], content_type=pages[path][1])
        if "/events/" in path:  # the stream: the job is done
            return route.fulfill(status=200, body=b'event: end\ndata: {"status": "done"}\n\n',
                                 content_type="text/event-stream")
        return route.fulfill(status=404, body=b"")

    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab = context.new_page()
        tab.route(f"{ORIGIN}/**", answer)
        tab.goto(f"{ORIGIN}/jobs/{job.pk}/")
        tab.wait_for_function("() => (window.jobPointsShown || 0) >= 14")

        traces = tab.evaluate("() => document.getElementById('loss-chart').data.map((t) => [t.name, t.y])")

        assert [name for name, _ in traces] == ["train loss", "val loss", "val mAP@0.5", "val mAP@0.5:0.95",
                                                "train heatmap loss", "train size loss", "train offset loss"]
        assert traces[2][1] == pytest.approx([0.3, 0.6]) and traces[5][1] == pytest.approx([5, 2.5])
    finally:
        context.close()
