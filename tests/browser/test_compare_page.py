"""The Compare page in Chromium: three jobs overlaid, one of them training on the real worker and growing live."""
from __future__ import annotations

import pytest

from jobs.models import MetricPoint
from tests.browser.conftest import log_in
from tests.compare.test_compare_api import job_with_curves
from tests.conftest import wait_dataset, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def trace_length(page, curve: str, trace: int) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate(f"() => document.getElementById('chart-{curve}').data[{trace}].x.length")


def test_it_overlays_three_jobs_and_grows_the_running_one_live(page, celery_worker, alice, screenshot):  # type: ignore[no-untyped-def]
    from datasets.services import dataset_create_example
    from jobs.services import JobSettings, job_create

    dataset = wait_dataset(dataset_create_example(owner=alice).pk)
    done = [job_with_curves(alice, dataset, "lr 0.001", lr=0.001, epochs=4),
            job_with_curves(alice, dataset, "lr 0.1", lr=0.1, epochs=4, batch_size=32)]
    running = job_create(owner=alice, dataset=dataset, network="mlp",
                         options=JobSettings(name="live mlp", epochs=200, batch_size=8, learning_rate=0.02))
    wait_for(lambda: MetricPoint.objects.filter(job=running).count() > 20, 120, "the running job's first points")

    log_in(page, "alice", "alice-password")
    page.goto(f"/compare/?jobs={done[0].pk},{done[1].pk},{running.pk}")
    page.wait_for_function("() => window.compareReady === true")

    for curve in ("train_loss", "val_loss", "val_accuracy", "lr"):  # raw and smoothed per job
        assert page.evaluate(f"() => document.getElementById('chart-{curve}').data.length") == 6
    colours = page.evaluate("() => document.getElementById('chart-lr').data.map((t) => t.line.color)")
    assert colours[0] == colours[1] != colours[2] == colours[3] != colours[4]
    page.evaluate("() => { window.__sameDocument = true; }")
    loaded = trace_length(page, "train_loss", 4)
    wait_for(lambda: trace_length(page, "train_loss", 4) > loaded + 20, 120, "the running job's trace to grow")
    raw, smoothed = page.evaluate("() => document.getElementById('chart-train_loss').data.slice(4)"
                                  ".map((t) => t.x.length)")  # read at once: a flush may come between two reads
    assert smoothed == raw  # the smoothed twin grows with it
    assert trace_length(page, "train_loss", 0) == 40  # a finished job stays as it was
    assert page.evaluate("() => window.__sameDocument === true")
    header = page.locator("#compare-table thead").inner_text()
    assert "Batch size" in header and "Learning rate" in header and "Optimizer" not in header
    screenshot(page, "30-compare-live")

    page.fill("#smoothing", "0")
    page.dispatch_event("#smoothing", "input")
    assert page.evaluate("() => { const d = document.getElementById('chart-train_loss').data;"
                         " return d[0].y.every((v, i) => v === d[1].y[i]); }")
    page.select_option("#x-axis", "step")
    page.wait_for_function("() => window.compareReady === true")
    assert page.evaluate("() => document.getElementById('chart-val_loss').data[0].x") == [10, 20, 30, 40]
    screenshot(page, "31-compare-by-step")
