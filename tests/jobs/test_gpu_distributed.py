"""One job on two GPUs over NCCL. Marked `gpu`; skips with the reason without two CUDA devices."""
from __future__ import annotations

import pytest
import torch

from jobs.backends.pytorch import train
from tests.jobs.test_precision import CONV
from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, write_dataset

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="fewer than two CUDA devices on this machine")]


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_two_gpus_train_like_one_with_the_same_global_batch(tmp_path, amp):
    dataset = write_dataset(tmp_path / "data", train=256, val=64)
    fields = {"network_spec": CONV, "amp": amp, "epochs": 3, "batch_size": 32}
    one, two = Recorder(), Recorder()

    assert train(make_plan(dataset, tmp_path / "one", device="cuda:0", **fields), one) == "done"
    assert train(make_plan(dataset, tmp_path / "two", devices=("cuda:0", "cuda:1"), **fields), two) == "done"

    accuracy = [v for (split, name, _), v in two.points.items() if (split, name) == ("val", "accuracy")]
    assert accuracy[-1] >= 0.9
    losses = {k: v for k, v in one.points.items() if k[:2] == ("train", "loss")}
    assert {k: two.points[k] for k in losses} == pytest.approx(losses, rel=0.05 if amp == "bf16" else 1e-3)
    assert all(t.dtype == torch.float32 for t in last_weights(tmp_path / "two").values())
