"""'auto' spreads a worker's concurrent training jobs over its GPUs; a named device is checked."""
from __future__ import annotations

from contextlib import ExitStack

import pytest

from jobs.backends.base import TrainingFailed
from jobs.backends.devices import DeviceLeases


def test_auto_gives_concurrent_jobs_the_least_used_gpus():
    leases = DeviceLeases()
    with ExitStack() as jobs:
        first = jobs.enter_context(leases.lease("auto", gpu_count=2))
        second = jobs.enter_context(leases.lease("auto", gpu_count=2))
        third = jobs.enter_context(leases.lease("auto", gpu_count=2))
        assert (first, second, third) == ("cuda:0", "cuda:1", "cuda:0")
        assert leases.held() == {"cuda:0": 2, "cuda:1": 1}
    assert leases.held() == {}


def test_a_finished_job_frees_its_gpu_for_the_next():
    leases = DeviceLeases()
    with leases.lease("auto", gpu_count=2) as first:
        with leases.lease("auto", gpu_count=2) as second:
            assert (first, second) == ("cuda:0", "cuda:1")
        with leases.lease("auto", gpu_count=2) as third:
            assert third == "cuda:1"


def test_a_named_gpu_counts_towards_its_load():
    leases = DeviceLeases()
    with leases.lease("cuda:0", gpu_count=2) as named, leases.lease("auto", gpu_count=2) as auto:
        assert (named, auto) == ("cuda:0", "cuda:1")


def test_auto_without_gpus_is_the_cpu_and_cpu_stays_cpu():
    leases = DeviceLeases()
    with leases.lease("auto", gpu_count=0) as auto, leases.lease("cpu", gpu_count=4) as cpu:
        assert (auto, cpu) == ("cpu", "cpu")


def test_it_refuses_a_gpu_the_worker_does_not_have_and_holds_nothing():
    leases = DeviceLeases()
    with pytest.raises(TrainingFailed, match=r"Device cuda:2 was asked for, but this worker has 2 CUDA device"):
        with leases.lease("cuda:2", gpu_count=2):
            pass
    assert leases.held() == {}


def test_a_failing_job_releases_its_gpu():
    leases = DeviceLeases()
    with pytest.raises(RuntimeError):
        with leases.lease("auto", gpu_count=1):
            raise RuntimeError("diverged")
    assert leases.held() == {}
