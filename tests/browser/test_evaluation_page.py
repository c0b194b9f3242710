"""Evaluate a finished job from its page and read the confusion matrix in Chromium."""
from __future__ import annotations

import pytest

from tests.browser.conftest import OUTCOME_MS, log_in
from tests.jobs.test_training_flow import ready_colours, start, wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_evaluates_from_the_job_page_and_draws_the_confusion_matrix(page, celery_worker, alice_api, screenshot):
    dataset = ready_colours(alice_api, per_class=30)
    job = wait_job(start(alice_api, dataset, epochs=3)["id"])
    log_in(page, "alice", "alice-password")

    page.goto(f"/jobs/{job.pk}/")
    screenshot(page, "14-job-use-result")
    page.click("#use-result button:text('Evaluate')")
    page.wait_for_selector("#status-badge:text('done')", timeout=OUTCOME_MS)
    page.wait_for_selector("#confusion-chart .main-svg")

    assert float(page.text_content("#top1").rstrip("%")) >= 90
    assert page.locator("#per-class tbody tr").count() == 3
    heat = page.evaluate("() => document.getElementById('confusion-chart').data[0].z")
    assert sum(map(sum, heat)) == dataset.split_counts["val"]
    page.check("#normalise")
    rows = page.evaluate("() => document.getElementById('confusion-chart').data[0].z")
    assert all(abs(sum(row) - 1) < 1e-9 for row in rows if sum(row))
    # The gallery images are loading="lazy": bring them into view and let them finish before judging them.
    page.locator(".topn").scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('.topn img')].every(i => i.complete)")
    broken = page.evaluate("() => [...document.querySelectorAll('.topn img')].filter(i => !i.naturalWidth).map(i => i.alt)")
    assert page.locator(".topn img").count() > 0
    assert broken == []
    screenshot(page, "13-evaluation")
