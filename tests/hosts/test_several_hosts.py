"""Hosts that share PostgreSQL, Redis and an S3 store, never a disk: real workers, each with a data
folder of its own, a real S3 API (moto's server), and SIGKILL on the worker that holds the work.

The test process is the web host (a data folder of its own too); host B and host A are Celery
workers started with WORKBENCH_STORAGE pointing at the bucket. The session's usual workers (on the
test's local data folder) are stopped meanwhile, so only these hosts take the work.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.test import override_settings
from safetensors.torch import load

from datasets.models import Dataset
from jobs.models import MetricPoint, TrainingJob
from results.models import Evaluation, Export
from tests.conftest import Worker, make_image, wait_dataset, wait_for
from tests.hosts.conftest import objects, s3_env
from tests.jobs.test_training_flow import start, wait_job

SESSION_DATA_DIR = settings.DATA_DIR  # as the test run set it, before any test's override
SHARED_SERVERS = (settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
                  and settings.CELERY_BROKER_URL.startswith("redis"))
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not SHARED_SERVERS, reason="several hosts share PostgreSQL and Redis (never a disk): this runs on "
                       "that stack, as in CI's second run (DATABASE_URL=postgres://..., CELERY_BROKER_URL=redis://...)"),
]

SETTINGS = {"network": "lenet", "epochs": 3, "batch_size": 8, "learning_rate": 0.02, "seed": 11,
            "optimizer": "adam"}
QUEUES = "train,background,infer"


@pytest.fixture
def hosts(celery_worker: Worker, s3_store, bucket, s3_server, tmp_path) -> Iterator:  # type: ignore[no-untyped-def]
    """hosts(name, **env) starts a worker as a host of its own: its own data folder, the shared store."""
    celery_worker.serving.stop()
    celery_worker.stop()
    started: list[Worker] = []

    def host(name: str, **env: str) -> Worker:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        worker = Worker(name, folder / f"worker-{len(started)}.log", QUEUES)
        worker.start(WORKBENCH_DATA_DIR=str(folder), **s3_env(s3_server, bucket), **env)
        worker.folder = folder  # type: ignore[attr-defined]
        started.append(worker)
        return worker

    yield host
    for worker in started:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.stop()
    # The session's workers come back on the session's data folder, not this test's web host's
    # (s3_store's settings are still in place while this fixture ends).
    with override_settings(DATA_DIR=SESSION_DATA_DIR):
        celery_worker.start()
        celery_worker.serving.start()


def held_by(row) -> str:  # type: ignore[no-untyped-def]
    row.refresh_from_db()
    return row.held_by.split(" pid ")[0].split("@")[0]  # "<name>@<host> pid <pid>": the name


def stored_weights(job: TrainingJob) -> dict[str, torch.Tensor]:
    """The last snapshot's weights as the store has them (read through the web host's store)."""
    from workbench.storage import store

    snapshot = job.snapshots.order_by("-epoch").first()
    return load(b"".join(store().stream(job.folder / snapshot.path)))


def curve(pk: int) -> dict[tuple[str, str, int], float]:
    return {(p.split, p.name, p.step): p.value for p in MetricPoint.objects.filter(job_id=pk).exclude(split="system")}


def test_a_job_killed_on_one_host_resumes_on_another_from_the_store_as_if_never_killed(
        hosts, alice, alice_api, client, bucket, s3_server):
    host_b = hosts("host-b")
    dataset = wait_dataset(alice_api.post("/api/v1/datasets/example/").json()["id"])
    assert dataset.status == "ready", dataset.error
    assert held_by(dataset) == "host-b"
    stored = objects(bucket, s3_server)
    assert f"workbench/datasets/{dataset.pk}/train_images.npy" in stored
    web_copy = Path(settings.DATA_DIR) / "datasets" / str(dataset.pk)
    assert not (web_copy / "train_images.npy").exists()  # the web host has nothing of it yet...
    client.force_login(alice)
    thumb = client.get(f"/datasets/{dataset.pk}/thumbs/0/0.png")
    assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")  # ...until it shows it

    reference = wait_job(start(alice_api, dataset, **SETTINGS)["id"])
    assert reference.status == "done", reference.error

    pk = start(alice_api, dataset, **SETTINGS)["id"]
    wait_for(lambda: TrainingJob.objects.get(pk=pk).snapshots.exists(), 180, f"job {pk}'s first snapshot")
    host_b.kill()  # SIGKILL mid-training: host B's disk is as good as gone
    host_a = hosts("host-a")
    job = wait_job(pk)

    assert job.status == "done", job.error
    assert job.attempt == 2 and held_by(job) == "host-a"
    assert (host_a.folder / "jobs" / str(pk) / "snapshots").is_dir()  # it fetched the snapshot from the store
    want, got = stored_weights(reference), stored_weights(job)
    assert want.keys() == got.keys()
    assert max(float((want[k] - got[k]).abs().max()) for k in want) <= 1e-6
    assert curve(pk).keys() == curve(reference.pk).keys()  # no point stored twice, none missing
    assert job.best == pytest.approx(reference.best, abs=1e-6)

    # Host A serves a classify of a snapshot host B wrote, and the download streams from the store.
    image = io.BytesIO(make_image((0, 0, 0), size=(28, 28)))
    image.name = "digit.png"
    answer = alice_api.post(f"/api/v1/jobs/{pk}/classify/", {"image": image}, format="multipart")
    assert answer.status_code == 200, answer.content
    assert len(answer.json()["predictions"]) == 5
    download = alice_api.get(f"/api/v1/jobs/{pk}/snapshots/{job.snapshots.order_by('-epoch').first().epoch:g}/download/")
    assert download.status_code == 200
    assert load(b"".join(download)).keys() == got.keys()


def test_ingest_evaluation_and_export_are_taken_over_across_hosts(hosts, alice_api, colour_zip, bucket, s3_server):
    # An upload goes to the store; host B stops half-way through its ingest and is killed there.
    host_b = hosts("host-b", WORKBENCH_FAULT_PAUSE="progress:datasets.dataset=120")
    upload = io.BytesIO(colour_zip)
    upload.name = "colours.zip"
    answer = alice_api.post("/api/v1/datasets/", {"name": "colours", "archive": upload, "image_width": 16, "image_height": 16},
                            format="multipart")
    assert answer.status_code == 201, answer.content
    pk = answer.json()["id"]
    wait_for(lambda: Dataset.objects.get(pk=pk).status == "running", 120, "host B's ingest (it stops half-way)")
    host_b.kill()
    host_a = hosts("host-a")
    dataset = wait_dataset(pk)
    assert dataset.status == "ready", dataset.error
    assert dataset.attempt == 2 and held_by(dataset) == "host-a"
    assert not any(key.startswith(f"workbench/datasets/{pk}/upload") for key in objects(bucket, s3_server))

    job = wait_job(start(alice_api, dataset, network="mlp", epochs=1)["id"])
    assert job.status == "done", job.error

    # Host A leaves; host B comes back and stops in an evaluation and an export, and is killed again.
    host_a.stop()
    host_b = hosts("host-b", WORKBENCH_FAULT_PAUSE="progress:results.evaluation=120,claimed:results.export=120")
    evaluation = alice_api.post(f"/api/v1/jobs/{job.pk}/evaluate/", {"split": "val"}, format="json").json()["id"]
    export = alice_api.post(f"/api/v1/jobs/{job.pk}/export/", {"format": "torchscript"}, format="json").json()["id"]
    wait_for(lambda: Evaluation.objects.get(pk=evaluation).status == "running"
             and Export.objects.get(pk=export).status == "running", 120, "host B to hold both")
    host_b.kill()
    hosts("host-a")

    done = wait_for(lambda: (e := Evaluation.objects.get(pk=evaluation)).is_finished and e, 180, "the evaluation")
    assert done.status == "done", done.error
    assert done.attempt == 2 and held_by(done) == "host-a"
    assert done.result["top1"] > 0.9
    exported = wait_for(lambda: (e := Export.objects.get(pk=export)).is_finished and e, 180, "the export")
    assert exported.status == "done", exported.error
    assert exported.attempt == 2 and held_by(exported) == "host-a"
    key = f"workbench/jobs/{job.pk}/{exported.path}"
    assert objects(bucket, s3_server)[key] == exported.size_bytes
    download = alice_api.get(f"/api/v1/jobs/{job.pk}/exports/{export}/download/")
    assert download.status_code == 200
    assert len(b"".join(download)) == exported.size_bytes
    assert not (Path(settings.DATA_DIR) / "jobs" / str(job.pk) / exported.path).exists()  # streamed, not copied
