"""The job form's devices: the GPUs live workers report, several GPUs for one job (checked or counted),
torch.compile; the API's `devices` and `compile`; a clone keeps them and the job page shows them."""
from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.forms import JobForm
from jobs.models import TrainingJob
from tests.jobs.test_augmentation_form import a_dataset, form_data, submit_clone
from tests.workers.test_workers import report
from workers.models import DeviceLease

pytestmark = pytest.mark.django_db

TWO_GPUS = [{"id": f"cuda:{i}", "name": "NVIDIA H200", "memory_total": 141 * 1024**3, "memory_used": 0,
             "utilization": 0.0, "temperature": 40, "source": "nvml"} for i in range(2)]


def choices(form: JobForm, name: str) -> dict[str, str]:
    return {str(value): str(label) for value, label in form.fields[name].choices}


def test_it_offers_the_gpus_a_live_worker_reports_and_not_a_stopped_workers(alice):
    report("celery@gpu-1", devices=TWO_GPUS[:1])
    report("celery@old-host", devices=TWO_GPUS[1:], seen=timedelta(minutes=10))

    form = JobForm(user=alice)

    assert choices(form, "device") == {"auto": "auto — next free GPU, else CPU", "cpu": "cpu",
                                       "cuda:0": "cuda:0 — gpu-1 · NVIDIA H200 · 141 GiB · idle"}
    assert list(choices(form, "devices")) == ["cuda:0"] and form.device_choices.reported


def test_a_gpu_says_how_many_jobs_hold_it(alice, bob):
    report("celery@gpu-1", devices=TWO_GPUS)
    job = TrainingJob.objects.create(owner=bob, dataset=a_dataset(bob), name="bob's", network="lenet",
                                     network_spec={}, status=TrainingJob.Status.RUNNING)
    DeviceLease.objects.create(host="gpu-1", device="cuda:1", job=job, owner="x", acquired_at=job.created_at)

    labels = choices(JobForm(user=alice), "devices")

    assert labels["cuda:1"].endswith("· busy: 1 job") and labels["cuda:0"].endswith("· idle")


def test_without_a_gpu_worker_the_page_says_so(client, alice):
    report("celery@cpu-host", devices=[{"id": "cpu", "name": "16 CPU cores", "source": "host"}])
    client.force_login(alice)

    page = client.get("/jobs/new/").content.decode()

    assert "No worker reports a GPU" in page and 'name="devices"' not in page


def test_gpu_count_asks_for_the_next_free_gpus(client, alice):
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(a_dataset(alice), gpu_count="2"))

    assert response.status_code == 302, response.context["form"].errors
    assert TrainingJob.objects.get().devices == ["cuda", "cuda"]


def test_checked_gpus_are_the_jobs_devices(client, alice):
    report("celery@gpu-1", devices=TWO_GPUS)
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(a_dataset(alice), devices=["cuda:0", "cuda:1"]))

    assert response.status_code == 302, response.context["form"].errors
    assert TrainingJob.objects.get().devices == ["cuda:0", "cuda:1"]


def test_one_gpu_alone_leaves_devices_empty_and_trains_on_the_device_field(client, alice):
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(a_dataset(alice), device="cpu", compile="on"))

    assert response.status_code == 302, response.context["form"].errors
    job = TrainingJob.objects.get()
    assert (job.device, job.devices, job.compile) == ("cpu", [], True)


def test_checked_gpus_and_a_count_together_are_refused_beside_the_gpus(client, alice):
    report("celery@gpu-1", devices=TWO_GPUS)
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(a_dataset(alice), devices=["cuda:0"], gpu_count="2"))

    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["devices"] and not TrainingJob.objects.exists()


def test_a_device_no_worker_reports_is_refused_by_the_form_but_not_by_the_api(client, alice, alice_api):
    dataset = a_dataset(alice)
    client.force_login(alice)

    response = client.post("/jobs/new/", form_data(dataset, device="tpu:0"))

    assert response.status_code == 400 and list(response.context["form"].errors) == ["device"]
    body = {"dataset": dataset.pk, "network": "lenet", "device": "cuda:7"}
    assert alice_api.post("/api/v1/jobs/", body, format="json").status_code == 201


@pytest.mark.parametrize("devices", [["cuda:0", "cuda:0"], ["cpu", "cuda:0"], ["gpu"], ["cuda"] * 17, "cuda:0"])
def test_the_api_refuses_bad_devices_naming_the_field(alice_api, alice, devices):
    body = {"dataset": a_dataset(alice).pk, "network": "lenet", "devices": devices}

    response = alice_api.post("/api/v1/jobs/", body, format="json")

    assert response.status_code == 400 and "devices" in response.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_the_api_takes_devices_and_compile_and_echoes_them(alice_api, alice):
    body = {"dataset": a_dataset(alice).pk, "network": "lenet", "devices": ["cuda:1", "cuda:0"], "compile": True}

    created = alice_api.post("/api/v1/jobs/", body, format="json").json()

    got = alice_api.get(f"/api/v1/jobs/{created['id']}/").json()
    assert (got["devices"], got["compile"]) == (["cuda:1", "cuda:0"], True)


@pytest.mark.parametrize("devices,device", [(["cuda:3", "cuda:1"], "auto"), (["cuda", "cuda", "cuda"], "cuda:2"),
                                            (["cpu", "cpu"], "auto"), ([], "cuda:3")])
def test_a_clone_through_the_form_keeps_devices_and_compile(client, alice, alice_api, devices, device):
    """Even devices no worker reports (none does here): a clone never silently changes device."""
    source = alice_api.post("/api/v1/jobs/", {"dataset": a_dataset(alice).pk, "network": "lenet", "device": device,
                                              "devices": devices, "compile": True}, format="json").json()
    client.force_login(alice)

    clone = submit_clone(client, source["id"])
    assert (clone.devices, clone.compile) == (devices, True)
    assert clone.device == ("cpu" if devices == ["cpu", "cpu"] else device)


def test_the_job_page_shows_devices_and_compile_when_set(client, alice, alice_api):
    dataset = a_dataset(alice)
    several = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet", "devices": ["cuda", "cuda"],
                                               "compile": True}, format="json").json()
    plain = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "lenet"}, format="json").json()
    client.force_login(alice)

    page = client.get(f"/jobs/{several['id']}/").content.decode()
    assert "devices cuda, cuda (one process each)" in page and "compiled (torch.compile)" in page
    page = client.get(f"/jobs/{plain['id']}/").content.decode()
    assert 'id="job-devices"' not in page and 'id="job-compile"' not in page
