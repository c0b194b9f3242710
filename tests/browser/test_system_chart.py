"""The job page draws the worker's CPU and memory in a System chart as the job reports them."""
from __future__ import annotations

import pytest

from datasets.models import Dataset
from tests.browser.conftest import log_in
from tests.conftest import wait_dataset, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def system_points(page) -> dict[str, int]:  # type: ignore[no-untyped-def]
    # Empty until the page's script has drawn the chart.
    return page.evaluate("() => Object.fromEntries((document.getElementById('system-chart').data || [])"
                         ".map((t) => [t.name, t.x.length]))")


def test_the_job_page_draws_the_system_chart(page, celery_worker, alice, alice_api, screenshot):  # type: ignore[no-untyped-def]
    dataset = wait_dataset(alice_api.post("/api/v1/datasets/example/").json()["id"])
    job = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet", "epochs": 6, "batch_size": 16},
                         format="json").json()
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/{job['id']}/")

    wait_for(lambda: system_points(page).get("CPU %", 0) >= 2, 120, "CPU samples on the System chart")

    drawn = system_points(page)
    assert drawn["memory MB"] >= 2 and drawn["GPU %"] == 0
    assert page.locator("#system-chart .scatterlayer .trace path.js-line").count() >= 2  # CPU and memory drawn
    screenshot(page, "system-chart")
    assert Dataset.objects.filter(pk=dataset.pk).exists()
