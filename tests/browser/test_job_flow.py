"""The issue's own story in Chromium: train LeNet on the example digits, watch, classify."""
from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Error as PlaywrightError

from datasets.models import Dataset
from tests.browser.conftest import OUTCOME_MS, log_in
from tests.conftest import wait_dataset, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def goto_settled(page, url: str) -> None:  # type: ignore[no-untyped-def]
    """Go to `url`; a reload the page started by itself (the job page reloads once its job ends) may
    abort the first try under load, and is waited out."""
    for attempt in range(3):
        try:
            page.goto(url)
            return
        except PlaywrightError as exc:
            if "ERR_ABORTED" not in str(exc) or attempt == 2:
                raise
            page.wait_for_load_state("load")


def points_on_chart(page) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate("() => document.getElementById('loss-chart').data.reduce((n, t) => n + t.x.length, 0)")


def test_it_trains_lenet_on_the_digits_with_live_curves_and_classifies(
        page, celery_worker, alice, screenshot, tmp_path):  # type: ignore[no-untyped-def]
    log_in(page, "alice", "alice-password")
    page.click("text=Create the example digits dataset")
    page.wait_for_url("**/datasets/*/")  # the form's redirect lands before the next goto (it raced one in CI)
    dataset = wait_dataset(Dataset.objects.get(owner=alice).pk)
    assert dataset.status == "ready"

    page.goto(f"/jobs/new/?dataset={dataset.pk}")
    page.select_option("#id_network", "lenet")
    page.click("text=Start training")
    page.wait_for_url("**/jobs/*/")
    job_url = page.url

    # The curves grow while the job runs, with no reload: the same document keeps receiving points.
    page.evaluate("() => { window.__sameDocument = true; }")
    wait_for(lambda: points_on_chart(page) > 0, 120, "the first points on the chart")
    first = points_on_chart(page)
    wait_for(lambda: points_on_chart(page) > first + 20, 120, "the chart to gain points")
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded while running"
    page.wait_for_selector("#job-worker:visible")  # named live: the job was queued when the page loaded
    assert page.text_content("#job-worker") == f"worker {celery_worker.name}@{socket.gethostname()}"
    screenshot(page, "10-job-running")

    page.wait_for_selector("#status-badge:text('done')", timeout=OUTCOME_MS)
    page.wait_for_load_state("load")
    accuracy = page.text_content("#val-accuracy")
    assert float(accuracy.rstrip("%")) >= 95.0, accuracy
    screenshot(page, "11-job-done")

    from sklearn.datasets import load_digits

    digits = load_digits()
    image = tmp_path / "seven.png"
    index = int(np.flatnonzero(digits.target == 7)[3])
    Image.fromarray(np.round(digits.images[index] * 255 / 16).astype(np.uint8)).resize((64, 64)).save(image)
    goto_settled(page, job_url)
    page.set_input_files("input[name=image]", str(image))
    page.click("form[action$='/classify/'] button[type=submit]")
    page.wait_for_selector("#classify-result")
    assert page.text_content("table.predictions tbody tr:first-child td.label").strip() == "7"
    assert page.locator("table.predictions tbody tr").count() == 5
    screenshot(page, "12-classify")


def test_the_job_page_draws_each_step_once_when_a_killed_job_resumes(
        page, restartable_worker, alice, screenshot):  # type: ignore[no-untyped-def]
    from datasets.services import dataset_create_example
    from jobs.services import JobSettings, job_create

    dataset = wait_dataset(dataset_create_example(owner=alice).pk)
    job = job_create(owner=alice, dataset=dataset, network="lenet",
                     options=JobSettings(epochs=6, batch_size=8))
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/{job.pk}/")
    wait_for(lambda: points_on_chart(page) > 100, 120, "points on the chart")

    restartable_worker.kill()
    restartable_worker.start()
    wait_for(lambda: page.evaluate("() => window.jobRedraws || 0") >= 1, 60, "the page to redraw for attempt 2")
    wait_for(lambda: page.evaluate("() => window.jobPointsShown || 0") > 100, 120, "the resumed run's points")

    train_loss = page.evaluate("() => document.getElementById('loss-chart').data[0].x")
    assert len(set(train_loss)) == len(train_loss), "a step drawn twice"
    assert train_loss == sorted(train_loss)
    screenshot(page, "13-job-resumed")
