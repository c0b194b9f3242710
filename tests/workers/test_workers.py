"""The Workers page and GET /api/v1/workers/: each worker's host, queues, devices and the jobs on them."""
from __future__ import annotations

import sys
import types
from datetime import timedelta

import pytest
from django.utils import timezone

from datasets.models import Dataset
from jobs.models import TrainingJob
from tests.conftest import wait_for
from workers import probe, services
from workers.models import DeviceLease, Worker

pytestmark = pytest.mark.django_db


def report(name: str = "celery@gpu-1", devices: list[dict] | None = None, seen: timedelta = timedelta()) -> Worker:
    worker = services.worker_report(report=services.WorkerReport(
        name=name, host=name.split("@")[-1], pid=4321, queues=["ingest", "train", "infer"], concurrency=2,
        started_at=timezone.now() - timedelta(hours=1),
        devices=devices if devices is not None else [
            {"id": "cuda:0", "name": "NVIDIA H200", "memory_total": 141 * 1024**3, "memory_used": 20 * 1024**3,
             "utilization": 0.93, "temperature": 61, "source": "nvml"},
            {"id": "cpu", "name": "16 CPU cores", "memory_total": 128 * 1024**3, "memory_used": 9 * 1024**3,
             "utilization": 0.2, "temperature": None, "source": "host"}]))
    Worker.objects.filter(pk=worker.pk).update(seen_at=timezone.now() - seen)
    return worker


def running_job(owner, name: str, worker: str, device: str) -> TrainingJob:  # type: ignore[no-untyped-def]
    dataset = Dataset.objects.create(owner=owner, name=f"d-{name}", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=1, resize_mode="squash", val_percent=20, test_percent=0,
                                     seed=0, status="ready", classes=["a", "b"])
    return TrainingJob.objects.create(owner=owner, dataset=dataset, name=name, network="lenet", network_spec={},
                                      status=TrainingJob.Status.RUNNING, held_by=f"{worker} pid 4321",
                                      device_used=device, heartbeat_at=timezone.now())


@pytest.mark.django_db(transaction=True)  # the worker writes its row: no test transaction may hold SQLite's lock
def test_a_real_worker_describes_itself_with_its_queues_and_its_host(alice_api, celery_worker, settings):
    def listed(real):  # type: ignore[no-untyped-def]
        found = [w for w in alice_api.get("/api/v1/workers/").json()["results"]
                 if w["name"].startswith(f"{real.name}@") and w["pid"] == real.pid]  # (a restart: new pid)
        return found[0] if found else None

    try:
        worker = wait_for(lambda: listed(celery_worker), 60, "the worker's own report")
        serving = wait_for(lambda: listed(celery_worker.serving), 60, "the serving worker's own report")
    except AssertionError:
        raise AssertionError(f"{alice_api.get('/api/v1/workers/').json()} {list(Worker.objects.values())} "
                             f"{celery_worker.log_text()[-3000:]}") from None

    assert worker["alive"] is True
    assert set(worker["queues"]) == {"train", "background"} and worker["concurrency"] == 2
    cpu = [d for d in worker["devices"] if d["id"] == "cpu"][0]
    assert cpu["source"] == "host" and cpu["memory_total"] > 0 and 0 <= cpu["memory_used"] <= cpu["memory_total"]
    assert worker["serving"] is None
    assert serving["queues"] == ["infer"] and serving["serving"]["device"] == settings.WORKBENCH_SERVING_DEVICE
    assert serving["serving"]["capacity_bytes"] == settings.WORKBENCH_SERVING_CACHE_MB * 1024**2


def test_each_device_lists_its_running_jobs_and_other_users_jobs_are_counted_not_named(alice, bob, staff,
                                                                                       alice_api, bob_api):
    from rest_framework.test import APIClient

    report()
    running_job(alice, "alice-resnet", "celery@gpu-1", "cuda:0")
    running_job(bob, "bob-secret", "celery@gpu-1", "cuda:0")

    def device(client, id_: str) -> dict:  # type: ignore[no-untyped-def]
        worker = [w for w in client.get("/api/v1/workers/").json()["results"] if w["name"] == "celery@gpu-1"][0]
        return [d for d in worker["devices"] if d["id"] == id_][0]

    mine = device(alice_api, "cuda:0")
    assert [j["name"] for j in mine["jobs"]] == ["alice-resnet"] and mine["busy"] == 2
    assert mine["name"] == "NVIDIA H200" and mine["utilization"] == 0.93 and mine["temperature"] == 61
    assert [j["name"] for j in device(bob_api, "cuda:0")["jobs"]] == ["bob-secret"]
    assert device(alice_api, "cpu")["busy"] == 0
    admin = APIClient()
    admin.force_authenticate(staff)
    assert sorted(j["name"] for j in device(admin, "cuda:0")["jobs"]) == ["alice-resnet", "bob-secret"]


def test_a_silent_worker_leaves_the_api_and_shows_as_stopped_on_the_page(alice, alice_api, client):
    report("celery@old-host", seen=timedelta(minutes=10))
    report("celery@gpu-1")

    names = [w["name"] for w in alice_api.get("/api/v1/workers/").json()["results"]]
    assert "celery@gpu-1" in names and "celery@old-host" not in names  # (the session's real worker may be there too)
    client.force_login(alice)
    page = client.get("/workers/").content.decode()
    assert "old-host" in page and "stopped" in page and "NVIDIA H200" in page and "running" in page


def test_the_page_and_the_api_need_a_login(client):
    assert client.get("/api/v1/workers/").status_code in (401, 403)
    assert client.get("/workers/").status_code == 302


def test_a_worker_without_nvml_or_torch_reports_its_host_only(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the package missing: import fails
    monkeypatch.setitem(sys.modules, "torch", None)

    devices = probe.devices()

    assert [d["id"] for d in devices] == ["cpu"] and devices[0]["memory_total"] > 0


def test_nvml_readings_become_devices(monkeypatch):
    """NVML is the driver's library: stood in for here, at that edge, with its own call names."""
    memory = types.SimpleNamespace(total=80 * 1024**3, used=3 * 1024**3)
    nvml = types.SimpleNamespace(
        NVML_TEMPERATURE_GPU=0, nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetMemoryInfo=lambda h: memory,
        nvmlDeviceGetName=lambda h: b"NVIDIA A100", nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=87),
        nvmlDeviceGetTemperature=lambda h, sensor: 55 + h)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)

    gpus = [d for d in probe.devices() if d["id"] != "cpu"]

    assert [(g["id"], g["name"], g["utilization"], g["temperature"]) for g in gpus] == [
        ("cuda:0", "NVIDIA A100", 0.87, 55), ("cuda:1", "NVIDIA A100", 0.87, 56)]
    assert gpus[0]["memory_used"] == 3 * 1024**3 and gpus[0]["source"] == "nvml"


def lease(job: TrainingJob, device: str, host: str = "gpu-1") -> None:
    DeviceLease.objects.create(host=host, device=device, job=job, owner=job.held_by, acquired_at=timezone.now())


def worker_device(client, worker: str, id_: str) -> dict:  # type: ignore[no-untyped-def]
    found = [w for w in client.get("/api/v1/workers/").json()["results"] if w["name"] == worker][0]
    return [d for d in found["devices"] if d["id"] == id_][0]


def test_a_device_lists_the_job_holding_it_and_counts_other_users_holders(alice, bob, alice_api):
    report(devices=[{"id": f"cuda:{i}", "name": "NVIDIA H200", "source": "nvml"} for i in range(3)])
    ddp = running_job(alice, "alice-ddp", "celery@gpu-1", "cuda:0")
    lease(ddp, "cuda:0")
    lease(ddp, "cuda:1")  # its second process: not its device_used, held all the same
    lease(running_job(bob, "bob-secret", "celery@other", "cuda:2"), "cuda:2")

    first, second, third = (worker_device(alice_api, "celery@gpu-1", f"cuda:{i}") for i in range(3))

    assert [(j["name"], j["held"]) for j in first["jobs"]] == [("alice-ddp", True)] and first["busy"] == 1
    assert [(j["name"], j["held"]) for j in second["jobs"]] == [("alice-ddp", True)] and second["busy"] == 1
    assert third["jobs"] == [] and third["busy"] == 1 and third["held_by_others"] == 1


def test_a_cpu_slot_lease_is_listed_under_the_cpu_device(alice, alice_api):
    report()
    lease(running_job(alice, "alice-cpu", "celery@gpu-1", "cpu"), "cpu#0")
    lease(running_job(alice, "alice-cpu-2", "celery@gpu-1", "cpu"), "cpu#1")

    cpu = worker_device(alice_api, "celery@gpu-1", "cpu")

    assert sorted((j["name"], j["held"]) for j in cpu["jobs"]) == [("alice-cpu", True), ("alice-cpu-2", True)]
    assert worker_device(alice_api, "celery@gpu-1", "cuda:0")["busy"] == 0


def test_the_page_labels_the_job_holding_a_device(alice, bob, client):
    report()
    job = running_job(alice, "alice-resnet", "celery@gpu-1", "cuda:0")
    lease(job, "cuda:0")
    client.force_login(bob)
    assert "Held by 1 job of other users" in client.get("/workers/").content.decode()

    client.force_login(alice)
    page = client.get("/workers/").content.decode()

    assert f"Held by job {job.pk}" in page and "alice-resnet" in page


def test_the_query_count_does_not_grow_with_workers_jobs_or_leases(alice, alice_api, client,
                                                                    django_assert_max_num_queries):
    """The workers, the running jobs, the leases with their jobs: three queries, plus the request's own."""
    client.force_login(alice)
    report()
    lease(running_job(alice, "one", "celery@gpu-1", "cuda:0"), "cuda:0")
    with django_assert_max_num_queries(20) as few:
        assert alice_api.get("/api/v1/workers/").status_code == 200
    with django_assert_max_num_queries(20) as few_page:
        assert client.get("/workers/").status_code == 200

    for i in range(2, 6):
        report(f"celery@gpu-{i}")
        job = running_job(alice, f"job-{i}", f"celery@gpu-{i}", "cuda:0")
        lease(job, "cuda:0", host=f"gpu-{i}")
        lease(job, "cpu#0", host=f"gpu-{i}")

    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(alice_api.get("/api/v1/workers/").json()["results"]) >= 5
    with django_assert_max_num_queries(len(few_page.captured_queries)):
        assert client.get("/workers/").content.decode().count("Held by job") == 9
