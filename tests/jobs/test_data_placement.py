"""Where a split's pixels live (on the device, in memory, on the map) never changes a batch."""
from __future__ import annotations

import pytest
import torch

from jobs.backends.pytorch import _Run
from jobs.backends.torch_data import PLACEMENTS, Split, placement
from tests.jobs.test_training_extras import CPU, Recorder, make_plan, write_dataset


def test_every_placement_gives_the_same_batches_for_the_same_seed(tmp_path):
    folder = write_dataset(tmp_path / "data", train=64)
    splits = {where: Split.open(folder, "train", CPU, forced=where) for where in PLACEMENTS}
    order = torch.randperm(64, generator=torch.Generator().manual_seed(7))

    for start in range(0, 64, 16):
        batches = {where: split.batch(order[start:start + 16]) for where, split in splits.items()}
        images, labels = batches["map"]
        assert all(torch.equal(x, images) and torch.equal(y, labels) for x, y in batches.values())
    assert {where: split.where for where, split in splits.items()} == {w: w for w in PLACEMENTS}
    assert not isinstance(splits["map"].images, torch.Tensor)


def test_a_job_trains_to_the_same_weights_whichever_placement_it_is_forced_to(tmp_path):
    folder = write_dataset(tmp_path / "data", train=48)
    weights = {}
    for where in ("device", "map"):
        run = _Run(make_plan(folder, tmp_path / where, data_placement=where, epochs=2), Recorder(), CPU)
        assert run.train() == "done" and run.train_split.where == where
        weights[where] = {k: v.clone() for k, v in run.model.state_dict().items()}

    assert all(torch.equal(weights["device"][k], weights["map"][k]) for k in weights["map"])


def test_on_a_cpu_a_split_goes_to_memory_up_to_two_gib_and_to_the_map_beyond():
    assert placement(10**6, CPU) == "memory"
    assert placement(3 * 1024**3, CPU) == "map"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_on_a_gpu_a_split_that_fits_goes_to_the_device(tmp_path):
    folder = write_dataset(tmp_path / "data", train=64)
    split = Split.open(folder, "train", torch.device("cuda:0"))

    assert split.where == "device" and split.images.is_cuda
    images, _ = split.batch(torch.arange(8))
    assert images.is_cuda and torch.equal(images.cpu(), Split.open(folder, "train", forced="map").batch(torch.arange(8))[0])
