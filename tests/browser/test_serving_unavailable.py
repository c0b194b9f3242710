"""Classify from a finished job's page in Chromium while no serving worker runs: the server's 503 says why."""
from __future__ import annotations

import pytest
from django.conf import settings

from tests.browser.conftest import OUTCOME_MS, log_in
from tests.conftest import make_image
from tests.results.test_export import _finished_job
from workers.models import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_classify_with_no_serving_worker_shows_the_servers_503_in_a_box(  # type: ignore[no-untyped-def]
        page, restartable_serving, alice, screenshot, tmp_path):
    job = _finished_job(alice)
    restartable_serving.kill()
    Worker.objects.filter(name__startswith=restartable_serving.name).delete()  # silent for long: taken for stopped
    image = tmp_path / "green.png"
    image.write_bytes(make_image((30, 200, 40), size=(8, 8)))
    log_in(page, "alice", "alice-password")

    page.goto(f"/jobs/{job.pk}/")
    page.set_input_files("form[action$='/classify/'] input[name=image]", str(image))
    with page.expect_navigation(timeout=OUTCOME_MS) as answered:  # within WORKBENCH_SERVING_TIMEOUT, never hanging
        page.click("form[action$='/classify/'] button[type=submit]")

    assert answered.value.status == 503
    box = page.locator("#serving-unavailable.error")
    assert box.is_visible()
    waited = settings.WORKBENCH_SERVING_TIMEOUT  # the web server's: the same environment
    assert box.inner_text().startswith(f"No serving worker is running (none answered within {waited:g} s")
    assert page.locator("#classify-result").count() == 0
    screenshot(page, "49-classify-no-serving-worker")
