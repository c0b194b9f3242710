"""Sweeps in Chromium: comma-separated values in the job form make a grid sweep; its page draws
the leaderboard, the parallel coordinates and the scatters, and trains the best one fully."""
from __future__ import annotations

import pytest

from datasets.services import dataset_create_example
from jobs.models import TrainingJob
from sweeps.models import Sweep, Trial
from tests.browser.conftest import OUTCOME_MS, log_in
from tests.conftest import wait_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_makes_a_grid_sweep_from_comma_separated_values_and_draws_its_page(
        page, celery_worker, alice, screenshot):  # type: ignore[no-untyped-def]
    dataset = wait_dataset(dataset_create_example(owner=alice).pk)
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/new/?dataset={dataset.pk}")
    page.select_option("#id_network", "lenet")
    page.fill("#id_name", "Digits grid")
    page.fill("#id_epochs", "2")
    page.fill("#id_batch_size", "32")
    page.fill("#id_learning_rate", "0.05, 0.002")
    page.fill("#id_seed", "1, 2")
    page.click("text=Start training")
    page.wait_for_url("**/sweeps/*/")
    sweep = Sweep.objects.get(owner=alice)
    assert sweep.grid == {"learning_rate": [0.05, 0.002], "seed": [1, 2]} and sweep.trials_total == 4

    page.wait_for_selector("#status-badge:text('done')", timeout=OUTCOME_MS)
    assert page.locator("#leaderboard tbody tr").count() == 4
    assert page.locator("#leaderboard tbody tr.best").count() == 1
    dimensions = page.evaluate("() => document.getElementById('parcoords').data[0].dimensions.map(d => d.label)")
    assert dimensions == ["learning_rate", "seed", "val_accuracy"]
    # Drawn, not only given: Plotly's SVG axes, one per dimension, over its WebGL lines.
    page.wait_for_function("() => document.querySelectorAll('#parcoords svg g.y-axis').length === 3")
    assert page.locator("#parcoords canvas").count() >= 1
    assert page.locator("#scatters .js-plotly-plot").count() == 2
    stars = page.evaluate("() => document.getElementById('scatter-learning_rate').data[1].x.length")
    assert stars == 1
    screenshot(page, "30-sweep-done")
    page.screenshot(path="/tmp/sweep-done.png", full_page=True)

    page.fill("#train-best-form input[name=epochs]", "3")
    page.click("#train-best")
    page.wait_for_url("**/jobs/*/")
    full = TrainingJob.objects.filter(owner=alice, epochs=3).get()
    assert full.name.endswith("(full, 3 epochs)")
    assert not Trial.objects.filter(job=full).exists()  # a normal job, not one of the sweep's


def test_the_sweep_form_starts_a_random_search(page, celery_worker, alice, screenshot):  # type: ignore[no-untyped-def]
    dataset = wait_dataset(dataset_create_example(owner=alice).pk)
    log_in(page, "alice", "alice-password")
    page.goto("/sweeps/new/")
    page.select_option("#id_network", "lenet")
    page.fill("#id_epochs", "1")
    page.select_option("#id_method", "random")
    page.fill("#id_parameters", "learning_rate: 0.001 .. 0.1 log\noptimizer: sgd, adam")
    page.fill("#id_trials", "3")
    page.screenshot(path="/tmp/sweep-form.png", full_page=True)
    page.click("text=Start sweep")
    page.wait_for_url("**/sweeps/*/")
    sweep = Sweep.objects.get(owner=alice, dataset=dataset)
    assert sweep.search["space"] == {"learning_rate": {"low": 0.001, "high": 0.1, "log": True},
                                     "optimizer": {"choices": ["sgd", "adam"]}}
    assert sweep.early_stopping["method"] == "asha"
    page.click("#abort-form button")
    page.wait_for_selector("#status-badge:text('aborted')", timeout=OUTCOME_MS)
    screenshot(page, "31-sweep-aborted")


def test_the_page_of_a_search_with_early_stopping_shows_the_stopped_trials(
        page, celery_worker, alice, screenshot):  # type: ignore[no-untyped-def]
    from sweeps.services import SweepSpec, sweep_create

    dataset = wait_dataset(dataset_create_example(owner=alice).pk)
    search = {"method": "random", "trials": 6, "seed": 1,
              "space": {"learning_rate": {"low": 1e-5, "high": 0.3, "log": True},
                        "optimizer": {"choices": ["sgd", "adam"]}}}
    early = {"method": "asha", "metric": "val_accuracy", "grace_epochs": 1, "reduction_factor": 3}
    sweep = sweep_create(owner=alice, dataset=dataset, spec=SweepSpec(
        name="Digits search", network="lenet", base={"epochs": 3, "batch_size": 32}, search=search,
        max_concurrent=1, early_stopping=early))
    log_in(page, "alice", "alice-password")
    page.goto(f"/sweeps/{sweep.pk}/")

    page.wait_for_selector("#status-badge:text('done')", timeout=OUTCOME_MS)
    assert page.locator("#leaderboard tbody tr").count() == 6
    assert page.locator("#leaderboard .status-stopped").count() >= 1
    labels = page.evaluate("() => document.getElementById('parcoords').data[0].dimensions.map(d => d.label)")
    assert labels == ["log10 learning_rate", "optimizer", "val_accuracy"]
    axis = page.evaluate("() => document.getElementById('scatter-learning_rate').layout.xaxis.type")
    assert axis == "log"
    screenshot(page, "32-sweep-asha")
    page.screenshot(path="/tmp/sweep-asha.png", full_page=True)
