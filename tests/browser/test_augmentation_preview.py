"""The job form's augmentation preview in Chromium: training images, redrawn as rotation is set."""
from __future__ import annotations

import pytest

from tests.browser.conftest import OUTCOME_MS, log_in
from tests.jobs.test_recovery import ready_digits
from tests.jobs.test_training_flow import ready_colours

pytestmark = pytest.mark.django_db(transaction=True)


def sources(page, which: str) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all(f"#augmentation-preview img.augmentation-{which}", "imgs => imgs.map((i) => i.src)")


def test_the_preview_grid_changes_when_rotation_is_set(page, celery_worker, alice, alice_api, screenshot):  # type: ignore[no-untyped-def]
    dataset = ready_digits(alice_api)
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/new/?dataset={dataset.pk}")
    page.wait_for_function("() => window.augmentationPreviewDrawn >= 1", timeout=OUTCOME_MS)
    originals, plain = sources(page, "original"), sources(page, "augmented")
    assert len(originals) == 12 and plain == originals  # nothing set: the images as they are
    assert page.is_hidden("#augmentation-colour") and page.is_visible("#augmentation-grayscale-note")

    page.fill("#id_aug_rotate_degrees", "45")
    page.wait_for_function("() => window.augmentationPreviewDrawn >= 2", timeout=OUTCOME_MS)
    rotated = sources(page, "augmented")
    assert sources(page, "original") == originals
    assert sum(a != b for a, b in zip(rotated, plain)) >= 10
    screenshot(page, "44-augmentation-preview-rotated")

    page.click("#augmentation-resample")
    page.wait_for_function("() => window.augmentationPreviewDrawn >= 3", timeout=OUTCOME_MS)
    assert sources(page, "original") != originals  # a new sample of images

    shown = sources(page, "augmented")
    page.check("#augmentation-network-view")  # the same images, less the mean
    assert sources(page, "augmented") != shown and sources(page, "original") != originals
    screenshot(page, "45-augmentation-preview-network-view")

    page.fill("#id_aug_rotate_degrees", "400")
    page.wait_for_selector("#augmentation-preview-error:not([hidden])")
    assert "augmentation.rotate_degrees" in page.inner_text("#augmentation-preview-error")

    page.click("text=Start training")  # the same message, beside the field, and nothing queued
    page.wait_for_selector(".has-error #id_aug_rotate_degrees")
    assert "augmentation.rotate_degrees: 400" in page.inner_text("#augmentation")
    screenshot(page, "46-augmentation-field-error")


def test_a_colour_dataset_offers_colour_shifts_and_the_job_page_lists_them(  # type: ignore[no-untyped-def]
        page, celery_worker, alice, alice_api, screenshot):
    dataset = ready_colours(alice_api)
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/new/?dataset={dataset.pk}")
    page.wait_for_function("() => window.augmentationPreviewDrawn >= 1", timeout=OUTCOME_MS)
    assert page.is_visible("#augmentation-colour") and page.is_hidden("#augmentation-grayscale-note")
    plain = sources(page, "augmented")

    page.fill("#id_aug_hue", "0.3")
    page.select_option("#id_aug_flip", "horizontal")
    page.wait_for_function("() => window.augmentationPreviewDrawn >= 2", timeout=OUTCOME_MS)
    assert sources(page, "augmented") != plain
    screenshot(page, "47-augmentation-preview-colour")

    page.fill("#id_epochs", "1")
    page.fill("#id_accumulate", "2")
    page.click("text=Start training")
    page.wait_for_url("**/jobs/*/")
    assert "left-right flips · hue ±0.3 · subtracts the mean image" in page.inner_text("#job-augmentation")
    assert page.inner_text("#job-solver-extras") == "accumulate 2 batches per step"
    screenshot(page, "48-job-page-augmentation")
