"""A fine-tune job created from a previous job's page: Fine-tune, the form prefilled, the report, the new job."""
from __future__ import annotations

import pytest

from jobs.models import TrainingJob
from tests.browser.conftest import log_in
from tests.pretrained.digits import five_digits, small_digits, train, wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_fine_tunes_from_a_previous_jobs_page(page, celery_worker, alice, alice_api, screenshot):  # type: ignore[no-untyped-def]
    five, small = five_digits(alice_api), small_digits(alice_api)
    source = wait_job(train(alice_api, five, epochs=2)["id"])
    log_in(page, "alice", "alice-password")

    page.goto(f"/jobs/{source.pk}/")
    page.click("#fine-tune")
    page.wait_for_url("**/jobs/new/?pretrained_job=*")
    assert page.is_checked("input[name=pretrained_source][value=job]")
    assert page.input_value("#id_pretrained_job") == str(source.pk)
    assert page.input_value("#id_pretrained_epoch") == "2.0"
    page.select_option("#id_dataset", str(small.pk))
    page.select_option("#id_network", "lenet")
    page.fill("#id_epochs", "3")
    page.fill("#id_batch_size", "16")
    page.fill("#id_learning_rate", "0.05")
    page.fill("#id_freeze_epochs", "1")
    page.wait_for_selector("#compatibility-summary:has-text('classifier: 5 → 10 classes')")
    assert page.locator("#compatibility-table tr.action-copied").count() == 6
    page.locator("#network-source").scroll_into_view_if_needed()
    screenshot(page, "40-fine-tune-form")

    page.click("text=Start training")
    page.wait_for_url("**/jobs/*/")
    tuned = TrainingJob.objects.exclude(pk=source.pk).get()
    assert tuned.pretrained["job"] == source.pk and tuned.freeze_epochs == 1
    assert f"Started from job {source.pk} epoch 2" in page.text_content("#started-from")
    wait_job(tuned.pk)
    page.reload()
    screenshot(page, "41-fine-tuned-job")

    page.goto(f"/jobs/{source.pk}/")
    page.fill("#pretrained-name", "digits 0-4 LeNet")
    page.click("#make-pretrained button[type=submit]")
    page.wait_for_url("**/pretrained/")
    assert "digits 0-4 LeNet" in page.text_content("#pretrained-models")
    screenshot(page, "42-pretrained-page")
