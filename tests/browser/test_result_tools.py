"""Every tool in a done job's "Use the result" card, clicked through in Chromium."""
from __future__ import annotations

import zipfile

import pytest

from tests.browser.conftest import OUTCOME_MS, log_in
from tests.conftest import class_images, make_image, zip_bytes
from tests.jobs.test_training_flow import ready_colours, start, wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_runs_every_result_tool_from_the_job_page(page, celery_worker, alice_api, screenshot, tmp_path):
    dataset = ready_colours(alice_api, per_class=30)
    job = wait_job(start(alice_api, dataset, epochs=3, network="lenet")["id"])
    image = tmp_path / "green.png"
    image.write_bytes(make_image((30, 200, 40), size=(24, 24), noise_seed=5))
    many = tmp_path / "many.zip"
    many.write_bytes(zip_bytes({**class_images(4), "notes.txt": b"not an image"}))
    log_in(page, "alice", "alice-password")
    job_page = f"/jobs/{job.pk}/"

    page.goto(job_page)
    page.click("#exports button:text('ONNX')")
    page.wait_for_selector("#exports [data-export-status='done']", timeout=OUTCOME_MS)
    assert "max abs diff" in page.text_content("#exports")
    assert page.locator("#exports a:text('onnx')").count() == 1

    page.goto(job_page)
    page.click("#compress button[type=submit]")
    page.wait_for_selector("#status-badge:text('done')", timeout=OUTCOME_MS)
    assert "smaller" in page.text_content("main")
    screenshot(page, "15-compression")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename.endswith("-prune.zip")
    with zipfile.ZipFile(download.value.path()) as archive:
        assert "predict.py" in archive.namelist()

    page.goto(job_page)
    page.click("text=Inspect layers")
    page.set_input_files("input[name=image]", str(image))
    page.click("form button[type=submit]:text('Inspect')")
    page.wait_for_selector("#inspect-result")
    assert page.locator(".layer-card").count() >= 5
    assert page.text_content("#inspect-result table.predictions tbody tr:first-child td.label").strip() == "green"

    page.goto(job_page)
    page.set_input_files("#classify-many input[name=archive]", str(many))
    page.click("#classify-many button[type=submit]")
    page.wait_for_selector("#status-badge:text('done')", timeout=OUTCOME_MS)
    assert float(page.text_content("#top1").rstrip("%")) >= 90
    assert page.locator("#rows tbody tr").count() == 12
    screenshot(page, "16-classify-many")
