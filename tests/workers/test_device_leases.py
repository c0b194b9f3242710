"""A job holds its devices alone: a GPU is never shared, a busy one makes the job wait in the queue."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from jobs.models import TrainingJob
from jobs.selectors import job_log_text
from jobs.tasks import train_job
from tests.conftest import _subprocess_env, wait_for
from tests.jobs.test_training_flow import ready_colours, wait_job
from tests.workers.test_workers import running_job
from workbench import processes
from workers.devices import DeviceMissing, Pick, choose, describe
from workers.models import DeviceLease
from workers.services import device_lease_acquire, device_lease_release

GPUS = ["cuda:0", "cuda:1"]


# --- the choice, without a database -----------------------------------------------------------

def test_the_next_free_gpu_skips_the_ones_other_jobs_hold():
    assert choose(["cuda"], GPUS, taken={"cuda:0"}) == [Pick("cuda:1", "cuda:1")]
    assert choose(["auto"], GPUS, taken=set()) == [Pick("cuda:0", "cuda:0")]
    assert choose(["cuda", "cuda"], GPUS, taken=set()) == [Pick("cuda:0", "cuda:0"), Pick("cuda:1", "cuda:1")]


def test_a_busy_gpu_makes_the_job_wait_and_never_shares_it():
    assert choose(["cuda:0"], GPUS, taken={"cuda:0"}) is None
    assert choose(["cuda", "cuda"], GPUS, taken={"cuda:1"}) is None  # more than are free: wait, do not share
    assert choose(["cuda:1", "cuda"], GPUS, taken=set()) == [Pick("cuda:1", "cuda:1"), Pick("cuda:0", "cuda:0")]


def test_what_the_host_can_never_give_is_refused_with_the_reason():
    with pytest.raises(DeviceMissing, match=r"Device cuda:2 was asked for, but this worker has 2 CUDA device"):
        choose(["cuda:2"], GPUS, taken=set())
    with pytest.raises(DeviceMissing, match=r"asks for 3 GPU\(s\); this worker has 2"):
        choose(["cuda"] * 3, GPUS, taken=set())
    with pytest.raises(DeviceMissing, match="asks for 1 GPU"):
        choose(["cuda"], [], taken=set())
    with pytest.raises(DeviceMissing, match=r"at most 1 at once \(WORKBENCH_CPU_SLOTS\)"):
        choose(["cpu", "cpu"], [], taken=set(), cpu_slots=1)


def test_cpu_processes_share_the_host_unless_slots_cap_them():
    assert choose(["auto"], [], taken=set()) == [Pick("cpu", None)]
    assert choose(["cpu", "cpu"], GPUS, taken=set()) == [Pick("cpu", None), Pick("cpu", None)]
    assert choose(["cpu"], [], taken={"cpu#0"}, cpu_slots=2) == [Pick("cpu", "cpu#1")]
    assert choose(["cpu"], [], taken={"cpu#0"}, cpu_slots=1) is None


def test_a_waiting_job_says_what_it_waits_for():
    assert describe(["cuda:1"], GPUS) == "cuda:1"
    assert describe(["cuda", "cuda"], GPUS) == "2 free GPUs"
    assert describe(["auto"], GPUS) == "a free GPU"
    assert describe(["auto"], []) == "a CPU slot"
    assert describe(["cpu", "cpu"], GPUS) == "2 CPU slots"
    assert describe(["cuda:0", "cuda"], GPUS) == "cuda:0 and a free GPU"


# --- held in the database ---------------------------------------------------------------------

@pytest.mark.django_db
def test_two_jobs_asking_for_one_gpu_on_one_host_get_it_in_turn(alice):
    first, second = (running_job(alice, name, "celery@a", "") for name in ("first", "second"))

    assert device_lease_acquire(job_id=first.pk, owner="a pid 1", requested=["cuda:0"], gpus=GPUS, host="h") == \
        ["cuda:0"]
    assert device_lease_acquire(job_id=second.pk, owner="a pid 2", requested=["cuda:0"], gpus=GPUS, host="h") is None
    assert device_lease_acquire(job_id=second.pk, owner="a pid 2", requested=["cuda"], gpus=GPUS, host="h") == \
        ["cuda:1"]
    assert device_lease_acquire(job_id=second.pk, owner="b pid 2", requested=["cuda:0"], gpus=GPUS,
                                host="other-host") == ["cuda:0"]  # another host's cuda:0 is another GPU

    device_lease_release(job_id=first.pk, owner="a pid 1")
    assert device_lease_acquire(job_id=second.pk, owner="a pid 2", requested=["cuda:0"], gpus=GPUS, host="h") == \
        ["cuda:0"]
    assert sorted(DeviceLease.objects.filter(host="h").values_list("device", "job_id")) == [("cuda:0", second.pk)]


@pytest.mark.django_db
def test_a_killed_workers_lease_is_freed_once_its_job_no_longer_runs_under_it(alice):
    lost, waiting = (running_job(alice, name, "celery@a", "") for name in ("lost", "waiting"))
    long_ago = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 1)
    DeviceLease.objects.create(host="h", device="cuda:0", job=lost, owner=lost.held_by, acquired_at=long_ago)

    # Its job still runs under the process that took the lease: the lease holds.
    assert device_lease_acquire(job_id=waiting.pk, owner="b pid 9", requested=["cuda:0"], gpus=GPUS, host="h") is None

    TrainingJob.objects.filter(pk=lost.pk).update(status=TrainingJob.Status.QUEUED)  # taken back
    assert device_lease_acquire(job_id=waiting.pk, owner="b pid 9", requested=["cuda:0"], gpus=GPUS, host="h") == \
        ["cuda:0"]


@pytest.mark.django_db
def test_cpu_jobs_take_no_lease_without_slots(alice):
    job = running_job(alice, "cpu", "celery@a", "")

    assert device_lease_acquire(job_id=job.pk, owner="a pid 1", requested=["auto"], gpus=[], host="h") == ["cpu"]
    assert not DeviceLease.objects.exists()


# --- with a real worker ---------------------------------------------------------------------

@pytest.fixture
def one_slot_worker():  # type: ignore[no-untyped-def]
    """A worker that runs two tasks at once on a host that trains one CPU job at a time."""
    log = Path(settings.DATA_DIR) / "one-slot-worker.log"
    args = processes.worker_command(queues="one-slot", name="one-slot", concurrency=2)
    proc = processes.start(args, log=log, ready=processes.worker_ready(log), what="one-slot worker",
                           env={**_subprocess_env(), "WORKBENCH_CPU_SLOTS": "1", "WORKBENCH_DEVICE_WAIT_SECONDS": "1"})
    yield proc
    processes.stop(proc)


@pytest.mark.django_db(transaction=True)
def test_two_jobs_asking_for_the_same_device_never_run_on_it_at_once(celery_worker, one_slot_worker, alice_api,
                                                                      alice):
    from networks.builtin import builtin_spec

    dataset = ready_colours(alice_api)
    jobs = [TrainingJob.objects.create(owner=alice, dataset=dataset, name=f"slot {i}", network="mlp", epochs=30,
                                       batch_size=8, device="cpu", network_spec=builtin_spec("mlp", (3, 8, 8), 3))
            for i in range(2)]
    for job in jobs:
        job.folder.mkdir(parents=True, exist_ok=True)
        train_job.apply_async(args=[job.pk], queue="one-slot")

    first, second = sorted((wait_job(job.pk, timeout=240) for job in jobs), key=lambda j: j.started_at)

    assert (first.status, second.status) == ("done", "done"), (first.error, second.error)
    assert first.finished_at <= second.started_at, "the second started before the first gave the CPU slot back"
    assert f"Waiting for a CPU slot: held now: cpu#0 by job {first.pk}." in job_log_text(second)
    wait_for(lambda: not DeviceLease.objects.exists(), 10, "the leases to be given back")
