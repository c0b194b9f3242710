"""Where a split's pixels live (on the device, in memory, on the map) never changes a batch."""
from __future__ import annotations

import threading

import pytest
import torch

from tests.jobs.test_training_extras import CPU, Recorder, last_weights, make_plan, max_difference, write_dataset
from training.torch import data
from training.torch.data import PLACEMENTS, Prefetcher, Split, placement
from training.torch.loop import _Run
from training.torch.run import train


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
    for where in PLACEMENTS:  # memory and map prefetch on a thread; device gathers in place
        run = _Run(make_plan(folder, tmp_path / where, data_placement=where, epochs=2), Recorder(), CPU)
        assert run.train() == "done" and run.train_split.where == where
        weights[where] = {k: v.clone() for k, v in run.model.state_dict().items()}

    for where in ("memory", "map"):
        assert all(torch.equal(weights["device"][k], weights[where][k]) for k in weights["device"])


# --- prefetching (memory and map) ---------------------------------------------------------------

def gathering_threads(monkeypatch: pytest.MonkeyPatch, train: int) -> list[str]:
    """The name of the thread each training batch is gathered on (the split of `train` images; not validation's)."""
    names: list[str] = []
    batch = Split.batch

    def spy(self: Split, index: torch.Tensor, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self) == train:
            names.append(threading.current_thread().name)
        return batch(self, index, pin)

    monkeypatch.setattr(Split, "batch", spy)
    return names


def prefetching() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prefetch"]


@pytest.mark.parametrize("where", ["memory", "map"])
def test_prefetched_batches_are_the_direct_batches_bit_for_bit(tmp_path, where):
    folder = write_dataset(tmp_path / "data", train=64)
    split = Split.open(folder, "train", CPU, forced=where)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    indices = [order[start:start + 12] for start in range(0, 64, 12)]  # the last batch is short

    with Prefetcher(split, CPU, depth=2, min_bytes=0) as batches:  # memory too, however small
        batches.plan(indices)
        assert prefetching()
        for index in indices:
            x, y = batches.get(index)
            direct_x, direct_y = split.batch(index)
            assert torch.equal(x, direct_x) and torch.equal(y, direct_y)
    assert not prefetching()


def test_a_batch_off_the_plan_is_gathered_directly_and_ends_the_plan(tmp_path):
    split = Split.open(write_dataset(tmp_path / "data", train=32), "train", CPU, forced="map")
    indices = [torch.arange(0, 8), torch.arange(8, 16)]

    with Prefetcher(split, CPU) as batches:
        batches.plan(indices)
        x, _ = batches.get(indices[1])  # not the next planned one
        assert torch.equal(x, split.batch(indices[1])[0]) and not prefetching()
        assert torch.equal(batches.get(indices[0])[0], split.batch(indices[0])[0])


def test_a_host_split_is_gathered_on_the_prefetch_thread_and_a_device_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "PREFETCH_MIN_BYTES", 0)  # every batch in memory is big enough
    folder = write_dataset(tmp_path / "data", train=32)
    names = gathering_threads(monkeypatch, train=32)
    for where in PLACEMENTS:
        names.clear()
        assert train(make_plan(folder, tmp_path / where, data_placement=where), Recorder()) == "done"
        assert set(names) == ({"MainThread"} if where == "device" else {"prefetch"}), where
    assert not prefetching()


def test_small_batches_in_memory_are_gathered_where_they_train_and_big_ones_ahead(tmp_path, monkeypatch):
    """8 images of 3x6x6 (864 bytes and their labels) against a limit just above and just below."""
    folder = write_dataset(tmp_path / "data", train=32)
    names = gathering_threads(monkeypatch, train=32)
    batch_bytes = 8 * (3 * 6 * 6 + 8)  # uint8 pixels and an int64 label per image
    for limit, thread in ((batch_bytes + 1, "MainThread"), (batch_bytes, "prefetch")):
        monkeypatch.setattr(data, "PREFETCH_MIN_BYTES", limit)
        names.clear()
        assert train(make_plan(folder, tmp_path / f"limit-{limit}", data_placement="memory"), Recorder()) == "done"
        assert set(names) == {thread}, limit
    # A split read from the map is always read ahead: a read may wait on the disk.
    names.clear()
    assert train(make_plan(folder, tmp_path / "map", data_placement="map"), Recorder()) == "done"
    assert set(names) == {"prefetch"}
    assert not prefetching()


@pytest.mark.parametrize("where", ["memory", "map"])
def test_a_job_resumed_mid_epoch_prefetches_from_the_right_batch(tmp_path, monkeypatch, where):
    monkeypatch.setattr(data, "PREFETCH_MIN_BYTES", 0)
    folder = write_dataset(tmp_path / "data", train=64)
    fields = {"epochs": 2, "snapshot_interval": 0.5, "data_placement": where}
    assert train(make_plan(folder, tmp_path / "reference", **fields), Recorder()) == "done"
    output = tmp_path / "resumed"
    first = Recorder(stop_after=6)  # 8 steps an epoch: the last snapshot before it stops is at step 4
    assert train(make_plan(folder, output, **fields), first) == "aborted"
    names = gathering_threads(monkeypatch, train=64)

    assert train(make_plan(folder, output, resume_from_epoch=max(first.snapshots), **fields), Recorder()) == "done"

    assert max(first.snapshots) == 0.5
    assert len(names) == 12 and set(names) == {"prefetch"}  # steps 5 to 16, none gathered twice
    assert max_difference(last_weights(tmp_path / "reference"), last_weights(output)) == 0.0


def test_the_prefetch_thread_ends_when_a_job_is_aborted(tmp_path):
    folder = write_dataset(tmp_path / "data", train=64)

    assert train(make_plan(folder, tmp_path / "job", data_placement="map", epochs=3), Recorder(stop_after=3)) == "aborted"
    assert not prefetching()


class LostJob(Recorder):
    def should_stop(self) -> bool:
        if self.step >= 2:
            raise RuntimeError("this run no longer holds its job")
        return False


def test_the_prefetch_thread_ends_when_training_raises(tmp_path):
    folder = write_dataset(tmp_path / "data", train=64)

    with pytest.raises(RuntimeError, match="no longer holds"):
        train(make_plan(folder, tmp_path / "job", data_placement="map", epochs=3), LostJob())
    assert not prefetching()


def test_a_read_that_fails_on_the_prefetch_thread_fails_the_step_and_ends_the_thread(tmp_path, monkeypatch):
    folder = write_dataset(tmp_path / "data", train=64)
    batch, reads = Split.batch, []

    def failing(self: Split, index: torch.Tensor, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if threading.current_thread().name == "prefetch":
            reads.append(index)
            if len(reads) == 3:
                raise OSError("Input/output error")
        return batch(self, index, pin)

    monkeypatch.setattr(Split, "batch", failing)
    with pytest.raises(OSError, match="Input/output error"):
        train(make_plan(folder, tmp_path / "job", data_placement="map"), Recorder())
    assert not prefetching()


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
