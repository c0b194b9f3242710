"""The job form's device picker in Chromium: a worker reports two GPUs; checking both makes one job on both."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import TrainingJob
from tests.browser.conftest import log_in
from tests.jobs.test_augmentation_form import a_dataset
from tests.workers.test_workers import report
from workers.models import DeviceLease

pytestmark = pytest.mark.django_db(transaction=True)

SHOT = Path("/tmp/shots/device_picker.png")
TWO_GPUS = [{"id": f"cuda:{i}", "name": "NVIDIA H200", "memory_total": 141 * 1024**3, "memory_used": 2 * 1024**3,
             "utilization": 0.0, "temperature": 40, "source": "nvml"} for i in range(2)]


def test_picking_two_gpus_makes_one_job_on_both(page, alice):  # type: ignore[no-untyped-def]
    report("celery@gpu-1", devices=[*TWO_GPUS, {"id": "cpu", "name": "16 CPU cores", "source": "host"}])
    dataset = a_dataset(alice)
    log_in(page, "alice", "alice-password")

    page.goto(f"/jobs/new/?dataset={dataset.pk}")
    page.select_option("#id_network", "lenet")
    assert page.locator("#id_device option").all_text_contents()[2] == "cuda:0 — gpu-1 · NVIDIA H200 · 141 GiB · idle"
    page.get_by_label("cuda:0 — gpu-1").check()
    page.get_by_label("cuda:1 — gpu-1").check()
    page.get_by_label("Compile the network (torch.compile)").check()
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.locator("fieldset", has=page.locator("#device-picker")).screenshot(path=str(SHOT))
    page.click("text=Start training")
    page.wait_for_url("**/jobs/*/")

    job = TrainingJob.objects.get(owner=alice)
    assert (job.devices, job.compile) == (["cuda:0", "cuda:1"], True)
    assert "devices cuda:0, cuda:1 (one process each)" in page.text_content("#job-devices")

    for device in job.devices:  # as a worker holds them while it trains the job (workers.services)
        DeviceLease.objects.create(host="gpu-1", device=device, job=job, owner="celery@gpu-1 pid 1",
                                   acquired_at=job.created_at)
    page.goto("/workers/")
    assert page.locator("table.devices").get_by_text(f"Held by job {job.pk}").count() == 2
    page.locator("section.worker").first.screenshot(path=str(SHOT.with_name("workers_held.png")))


def test_without_a_gpu_worker_the_form_says_so_and_a_count_with_checked_gpus_is_refused(page, alice):  # type: ignore[no-untyped-def]
    dataset = a_dataset(alice)
    log_in(page, "alice", "alice-password")

    page.goto(f"/jobs/new/?dataset={dataset.pk}")
    assert page.locator("#no-gpu").is_visible() and page.locator("input[name=devices]").count() == 0
    page.locator("fieldset", has=page.locator("#device-picker")).screenshot(path=str(SHOT.with_name("no_gpu.png")))

    report("celery@gpu-1", devices=TWO_GPUS)
    page.reload()
    page.get_by_label("cuda:1 — gpu-1").check()
    page.fill("#id_gpu_count", "2")
    page.click("text=Start training")
    page.wait_for_load_state("load")

    assert "not both" in page.text_content("#device-gpus") and not TrainingJob.objects.exists()
    page.locator("fieldset", has=page.locator("#device-picker")).screenshot(path=str(SHOT.with_name("refused.png")))
