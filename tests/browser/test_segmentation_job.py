"""A segmentation job in Chromium: the form takes the U-Net's own settings as the network is chosen,
and the job page plots and lists the task's metrics (mean IoU, pixel accuracy) live."""
from __future__ import annotations

import pytest

from tests.browser.conftest import OUTCOME_MS, log_in
from tests.segmentation.test_job_flow import ready_shapes

pytestmark = pytest.mark.django_db(transaction=True)


def points(page, trace: int) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate(f"() => document.getElementById('loss-chart').data[{trace}].x.length")


def test_a_unet_job_from_the_form_plots_mean_iou_and_pixel_accuracy(
        page, celery_worker, alice, alice_api, screenshot, tmp_path):  # type: ignore[no-untyped-def]
    dataset = ready_shapes(alice_api, tmp_path)
    log_in(page, "alice", "alice-password")

    page.goto(f"/jobs/new/?dataset={dataset.pk}")
    page.fill("#id_batch_size", "12")  # the user's own value stays
    page.select_option("#id_network", "unet")
    assert page.input_value("#id_optimizer") == "adam" and page.input_value("#id_learning_rate") == "0.001"
    assert page.input_value("#id_batch_size") == "12"
    page.fill("#id_epochs", "2")
    page.click("text=Start training")
    page.wait_for_url("**/jobs/*/")

    page.wait_for_selector("#status-badge:text('done')", timeout=OUTCOME_MS)
    page.wait_for_load_state("load")
    names = page.evaluate("() => document.getElementById('loss-chart').data.map((t) => t.name)")
    assert names == ["train loss", "val loss", "val mean IoU", "val pixel accuracy"]
    assert points(page, 2) == points(page, 3) == 2
    assert page.text_content("#val-mean-iou").endswith("%") and page.text_content("#val-pixel-accuracy").endswith("%")
    assert page.text_content("#best").startswith("mean IoU ")
    assert page.locator("text=Classify an image").count() == 0
    screenshot(page, "40-segmentation-job-done")
