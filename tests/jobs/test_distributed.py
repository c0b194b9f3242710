"""One job on several devices (DDP): here two gloo processes on the CPU, through the real worker."""
from __future__ import annotations

import json
import os
import re
import signal

import pytest

from jobs.models import MetricPoint, TrainingJob
from jobs.selectors import job_log_text
from tests.conftest import wait_for
from tests.jobs.test_lifecycle import doomed_worker  # noqa: F401 (a fixture)
from tests.jobs.test_training_flow import ready_colours, start, wait_job

pytestmark = pytest.mark.django_db(transaction=True)


def curve(job: TrainingJob, split: str, name: str) -> list[tuple[int, float]]:
    return list(MetricPoint.objects.filter(job=job, split=split, name=name).order_by("step")
                .values_list("step", "value"))


def log_text(job: TrainingJob) -> str:
    return job_log_text(job)


def rank_pids(job: TrainingJob) -> list[int]:
    found = wait_for(lambda: re.search(r"Started 2 processes \(gloo\): rank 0 pid (\d+) on cpu, rank 1 pid (\d+) on cpu",
                                       log_text(job)), 60, "the ranks to start")
    return [int(pid) for pid in found.groups()]  # type: ignore[union-attr]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_processes_train_the_same_model_as_one_with_the_same_global_batch(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    settings_ = {"network": "lenet", "epochs": 6, "batch_size": 9, "learning_rate": 0.05, "seed": 5}

    one = wait_job(start(alice_api, dataset, **settings_)["id"])
    two = wait_job(start(alice_api, dataset, devices=["cpu", "cpu"], **settings_)["id"], timeout=240)

    assert (one.status, two.status) == ("done", "done"), two.error
    assert two.device_used == "cpu, cpu"
    assert "Started 2 processes (gloo)" in job_log_text(two)
    # Each rank computes half of each batch of 9 (5 and 4 images); the averaged gradient is the whole
    # batch's: the curves are those of one process, up to the order of floating-point sums.
    losses_one, losses_two = curve(one, "train", "loss"), curve(two, "train", "loss")
    assert [s for s, _ in losses_one] == [s for s, _ in losses_two]
    assert [v for _, v in losses_two] == pytest.approx([v for _, v in losses_one], rel=1e-3, abs=1e-4)
    assert two.best["val_accuracy"] > 0.9 and one.best["val_accuracy"] > 0.9
    # Sums in another order move the weights by float noise: at most one of the 18 images may flip.
    accuracy_one, accuracy_two = curve(one, "val", "accuracy"), curve(two, "val", "accuracy")
    assert [v for _, v in accuracy_two] == pytest.approx([v for _, v in accuracy_one], abs=1.01 / 18)
    val_one, val_two = curve(one, "val", "loss"), curve(two, "val", "loss")
    assert [v for _, v in val_two] == pytest.approx([v for _, v in val_one], rel=1e-3)
    assert two.snapshots.count() == one.snapshots.count() == 6


def test_abort_stops_every_rank(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    job = TrainingJob.objects.get(pk=start(alice_api, dataset, epochs=2000, devices=["cpu", "cpu"])["id"])
    pids = rank_pids(job)
    wait_for(lambda: MetricPoint.objects.filter(job_id=job.pk, split="train").count() >= 4, 60, "training")

    alice_api.post(f"/api/v1/jobs/{job.pk}/abort/")

    aborted = wait_job(job.pk, timeout=60)
    assert aborted.status == "aborted" and aborted.stop_reason == "user"
    assert all(gone(pid) for pid in pids), "a rank outlived its aborted job"
    assert "Aborted." in job_log_text(job)


def test_a_killed_rank_ends_the_run_on_every_device_and_the_job_resumes_from_its_snapshot(celery_worker, alice_api):
    dataset = ready_colours(alice_api)
    job = TrainingJob.objects.get(pk=start(alice_api, dataset, epochs=150, devices=["cpu", "cpu"])["id"])
    pids = rank_pids(job)
    wait_for(lambda: job.snapshots.count() >= 3, 120, "a few snapshots")

    os.kill(pids[1], signal.SIGKILL)

    finished = wait_job(job.pk, timeout=300)
    log = job_log_text(job)
    assert finished.status == "done", finished.error
    assert finished.attempt == 2 and finished.epoch == 150
    assert f"Attempt 1 ended on every device: rank 1 (cpu, pid {pids[1]}) was killed by SIGKILL" in log
    assert "Queued again by itself to resume from the snapshot at epoch" in log
    assert all(gone(pid) for pid in pids)
    steps = [s for s, _ in curve(finished, "train", "loss")]
    assert steps == sorted(set(steps)), "every step once"


def test_the_plan_reaches_each_rank_whole(tmp_path):
    from training.contract import TrainingPlan
    from training.torch.distributed import plan_from_json, plan_to_json

    plan = TrainingPlan(job_id=1, output_folder=tmp_path / "out", dataset_folder=tmp_path / "data",
                        input_shape=(3, 8, 8), classes=["a", "b"], network_spec={"layers": []}, epochs=2, batch_size=4,
                        optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.0, lr_policy="step",
                        lr_params={"step_size": 1, "gamma": 0.5, "milestones": [1.0]}, seed=7, device="auto",
                        val_interval=1.0, snapshot_interval=1.0, resume_from_epoch=1.0, devices=("cuda:0", "cuda:1"),
                        compile=True, amp="bf16", augmentation={"flip": "horizontal"},
                        pretrained={"weights": "/w.safetensors", "copy": ["a.weight"], "label": "x"})

    assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan


def test_ranks_end_with_their_worker_and_the_job_is_taken_back(celery_worker, doomed_worker, alice_api, alice):  # noqa: F811
    from jobs.tasks import train_job
    from networks.builtin import builtin_spec

    job = TrainingJob.objects.create(owner=alice, dataset=ready_colours(alice_api), name="ranks", network="mlp",
                                     epochs=100, batch_size=8, devices=["cpu", "cpu"],
                                     network_spec=builtin_spec("mlp", (3, 8, 8), 3))
    job.folder.mkdir(parents=True, exist_ok=True)
    train_job.apply_async(args=[job.pk], queue="doomed")
    pids = rank_pids(job)
    wait_for(lambda: job.snapshots.count() >= 2, 120, "a few snapshots")

    doomed_worker.send_signal(signal.SIGKILL)
    doomed_worker.wait()

    wait_for(lambda: all(gone(pid) for pid in pids), 30, "the ranks of the killed worker to end")
    finished = wait_job(job.pk, timeout=300)
    assert finished.status == "done", finished.error
    assert finished.attempt == 2


@pytest.mark.parametrize("freeze_epochs", [-1, 1])
def test_two_ranks_fine_tune_with_frozen_pretrained_layers(tmp_path, freeze_epochs):
    """Frozen layers get no gradient: DDP is told to expect that, instead of waiting for one."""
    from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, write_dataset
    from training.torch.run import train

    dataset = write_dataset(tmp_path / "dataset")
    mlp = {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 16}, {"type": "relu"},
                      {"type": "linear", "out_features": "num_classes"}]}
    assert train(make_plan(dataset, tmp_path / "source", network_spec=mlp), Recorder()) == "done"
    source = last_weights(tmp_path / "source")
    weights = next(p for p in (tmp_path / "source" / "snapshots").glob("epoch_*.safetensors") if ".optim" not in p.name)
    copy = ["1.weight", "1.bias"]

    plan = make_plan(dataset, tmp_path / "tuned", network_spec=mlp, epochs=3, devices=("cpu", "cpu"),
                     pretrained={"weights": str(weights), "copy": copy, "label": "source"}, freeze_epochs=freeze_epochs)
    assert train(plan, Recorder()) == "done"

    tuned = last_weights(tmp_path / "tuned")
    moved = {name: bool((tuned[name] != source[name]).any()) for name in copy}
    assert moved == {name: freeze_epochs != -1 for name in copy}
    assert (tuned["3.weight"] != source["3.weight"]).any()  # the head learns either way


def test_two_ranks_accumulating_batches_end_with_the_weights_of_one_process(tmp_path):
    """Within a group of accumulated batches the ranks keep their gradients (no_sync) and all-reduce
    the group's sum at its last batch: the weights are those of one process, up to float noise. A
    group's last batch left out of the all-reduce would leave each rank on its own half of the data."""
    from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, max_difference, write_dataset
    from training.torch.run import train

    dataset = write_dataset(tmp_path / "dataset", train=40)
    # 5 batches of 8 an epoch: groups of 2, 2 and a last one of 1, over 3 epochs.
    fields = {"epochs": 3, "accumulate": 2, "momentum": 0.9}
    assert train(make_plan(dataset, tmp_path / "one", **fields), Recorder()) == "done"
    assert train(make_plan(dataset, tmp_path / "two", devices=("cpu", "cpu"), **fields), Recorder()) == "done"

    one, two = last_weights(tmp_path / "one"), last_weights(tmp_path / "two")
    assert max_difference(one, two) < 1e-5


def test_gpu_ranks_hold_sync_batch_norms_with_the_same_weights_and_cpu_ranks_plain_ones():
    """The conversion itself (the 2-GPU run is in test_gpu_distributed)."""
    import torch

    from training.torch.build import build_model
    from training.torch.ranks import synced_batch_norms

    spec = {"layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "batchnorm2d"},
                       {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": "num_classes"}]}
    net = build_model(spec, (3, 6, 6), 2)
    keys = set(net.state_dict())

    on_gpus = synced_batch_norms(net, torch.device("cuda:0"))  # converting needs no GPU, training does
    on_cpus = synced_batch_norms(build_model(spec, (3, 6, 6), 2), torch.device("cpu"))

    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in on_gpus.modules())
    assert set(on_gpus.state_dict()) == keys
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in on_cpus.modules())
