"""The detection example from one click to its explore page, in real Chromium against the real server and worker."""
from __future__ import annotations

import pytest

from datasets.models import Dataset
from tests.browser.conftest import OUTCOME_MS, log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_detection_example_shows_its_boxes_per_class_sizes_and_drawn_samples(celery_worker, page, alice, screenshot):
    log_in(page, "alice", "alice-password")
    page.goto("/datasets/")
    page.click("text=Add example detection")
    page.wait_for_selector("#box-counts", timeout=OUTCOME_MS)

    dataset = Dataset.objects.get()
    assert dataset.status == "ready", dataset.error
    rows = page.locator("#box-counts tbody tr")
    assert rows.count() == 3 and "0: circle" in rows.nth(0).inner_text()
    total = sum(dataset.box_counts["train"].values())
    # Plotly draws the bars of each class once its script has run: waited for, not counted at once.
    page.wait_for_function("document.querySelectorAll('#box-chart .bars path').length >= 3")
    assert page.evaluate("document.getElementById('box-chart').data.map(t => t.y.reduce((a, b) => a + b, 0))")[0] == total
    sizes = page.evaluate("document.getElementById('size-chart').data.map(t => t.name)")
    assert sizes == ["circle", "square", "triangle"]
    page.select_option("#size-measure", "height")
    page.wait_for_function("document.getElementById('size-chart').layout.xaxis.title.text.startsWith('Height')")
    samples = page.locator("#samples img")
    assert samples.count() == 18  # 6 of each split
    samples.first.scroll_into_view_if_needed()
    page.wait_for_function("[...document.querySelectorAll('#samples img')].slice(0, 4).every(i => i.naturalWidth === 256)")
    screenshot(page, "detection-dataset")
