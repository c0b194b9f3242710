"""A training job records its worker's CPU and memory (and GPU, on one) as `system` points."""
from __future__ import annotations

import pytest

from jobs.models import MetricPoint
from tests.conftest import wait_dataset, wait_for
from tests.jobs.test_training_flow import wait_job
from workers.probe import ProcessSampler

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_records_its_workers_cpu_and_memory_every_few_seconds(celery_worker, alice_api):
    dataset = wait_dataset(alice_api.post("/api/v1/datasets/example/").json()["id"])
    body = {"dataset": dataset.pk, "network": "lenet", "epochs": 6, "batch_size": 16}
    job = wait_job(alice_api.post("/api/v1/jobs/", body, format="json").json()["id"], timeout=240)

    assert job.status == "done", job.error
    points = MetricPoint.objects.filter(job=job, split="system")
    cpu = list(points.filter(name="cpu_percent").order_by("step").values_list("step", "value"))
    memory = list(points.filter(name="memory_mb").values_list("value", flat=True))
    assert len(cpu) >= 2 and len(memory) == len(cpu), "about one sample a second (the tests' setting)"
    assert all(value > 0 for _, value in cpu) and all(100 < value < 16_000 for value in memory)
    steps = [step for step, _ in cpu]
    assert steps == sorted(set(steps)) and steps[-1] <= job.epochs * 80  # at training steps, each once
    assert not points.filter(name__startswith="gpu").exists()  # on the CPU
    assert not [key for key in job.latest if key.startswith("system")], "system points are curves, not results"


def test_the_sampler_measures_this_process():
    sampler = ProcessSampler()
    sum(i * i for i in range(2_000_000))  # some CPU work

    values = sampler.sample("cpu")

    assert values["cpu_percent"] > 0 and values["memory_mb"] > 10 and "gpu_utilization" not in values


def test_the_sampler_counts_the_processes_a_run_trains_through():
    """A several-device run's ranks are processes of their own: their CPU and memory are the job's.

    The rank's share is measured from /proc over the same window, not assumed to be a whole core:
    on a host busy with other work (two suites on two cores) it gets what the scheduler gives it."""
    import subprocess
    import sys
    import time

    from tests.conftest import wait_for
    from workers.probe import _cpu_seconds

    rank = subprocess.Popen([sys.executable, "-c", "x = bytearray(200 * 1024**2)\nwhile True: pass"])
    try:
        time.sleep(1.0)  # its memory is written, its loop spinning
        sampler, own = ProcessSampler(), ProcessSampler()
        started = time.monotonic()
        sampler.sample("cpu", processes=(rank.pid,))  # a process first seen counts from now
        own.sample("cpu")
        before = _cpu_seconds(rank.pid)
        wait_for(lambda: _cpu_seconds(rank.pid) - before >= 0.5, what="the rank to spend half a second of CPU")
        spent = _cpu_seconds(rank.pid) - before
        both = sampler.sample("cpu", processes=(rank.pid,))
        alone = own.sample("cpu")
        window = time.monotonic() - started
    finally:
        rank.kill()
        rank.wait()

    assert both["memory_mb"] - alone["memory_mb"] > 190
    assert both["cpu_percent"] - alone["cpu_percent"] >= 0.9 * 100 * spent / window  # the rank's busy share
    assert sampler.sample("cpu", processes=(rank.pid,))["memory_mb"] < both["memory_mb"] - 190  # ended: dropped


def test_a_run_shorter_than_the_interval_has_a_sample_at_its_start_and_at_its_end(alice, settings):
    from jobs.models import TrainingJob
    from jobs.reporting import DatabaseReporter
    from tests.results.test_export import _finished_job
    from workbench.leases import Lease

    settings.WORKBENCH_SYSTEM_METRICS_SECONDS = 3600
    job = _finished_job(alice, status="running")
    reporter = DatabaseReporter(Lease(TrainingJob, job.pk, job.attempt, "test"))
    reporter.start()
    reporter.progress(epoch=0.1, step=1, total_steps=100)
    wait_for(lambda: MetricPoint.objects.filter(job=job, split="system").exists(), 30, "the first sample")
    for step in range(2, 101):
        reporter.progress(epoch=step / 10, step=step, total_steps=100)
    reporter.close()

    steps = list(MetricPoint.objects.filter(job=job, split="system", name="cpu_percent").values_list("step", flat=True))
    assert len(steps) == 2 and steps[-1] == 100 and steps[0] < 100
