"""The CUDA paths: training, AMP (bf16 and fp16 with its GradScaler), channels-last, torch.compile
and host batches prefetched into pinned memory.

Marked `gpu`; each skips with the reason on a machine without CUDA (`pytest -m gpu` runs them alone).
"""
from __future__ import annotations

import pytest
import torch

from tests.jobs.test_compile import Logs, compile_lines, val_accuracy
from tests.jobs.test_data_placement import prefetching
from tests.jobs.test_precision import CONV, forward_dtypes
from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, write_dataset
from training.torch.data import Prefetcher, Split
from training.torch.loop import _Run
from training.torch.run import train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]
CUDA = torch.device("cuda:0")


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_it_trains_on_cuda_with_each_precision(tmp_path, amp):
    dataset = write_dataset(tmp_path / "data", train=256, val=64)
    plan = make_plan(dataset, tmp_path / "job", network_spec=CONV, amp=amp, device="cuda:0", epochs=3)

    assert train(plan, (recorder := Recorder())) == "done"
    accuracy = [v for (split, name, _), v in recorder.points.items() if (split, name) == ("val", "accuracy")]
    assert accuracy[-1] >= 0.9
    assert all(t.dtype == torch.float32 for t in last_weights(tmp_path / "job").values())


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_the_forward_pass_runs_in_the_chosen_precision_on_cuda(tmp_path, amp, dtype):
    dataset = write_dataset(tmp_path / "data")
    run = _Run(make_plan(dataset, tmp_path / "job", network_spec=CONV, amp=amp, device="cuda:0"), Recorder(), CUDA)

    assert forward_dtypes(run) == {dtype}
    assert (run.precision.scaler is not None) == (amp == "fp16")


def test_a_convolutional_network_runs_channels_last_with_cudnn_autotuning(tmp_path):
    dataset = write_dataset(tmp_path / "data")
    run = _Run(make_plan(dataset, tmp_path / "job", network_spec=CONV, device="cuda:0"), Recorder(), CUDA)

    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32


def test_a_compiled_job_trains_on_cuda_and_saves_plain_weights(tmp_path):
    dataset = write_dataset(tmp_path / "data", train=256, val=64)
    reporter = Logs()
    run = _Run(make_plan(dataset, tmp_path / "job", network_spec=CONV, amp="bf16", device="cuda:0", epochs=3,
                         compile=True), reporter, CUDA)

    assert run.train() == "done"
    assert run.compiled.compiled and compile_lines(reporter) == []
    assert val_accuracy(reporter)[-1] >= 0.9
    weights = last_weights(tmp_path / "job")
    assert weights.keys() == run.model.state_dict().keys() and not any("_orig_mod" in k for k in weights)


@pytest.mark.parametrize("where", ["memory", "map"])
def test_host_batches_are_prefetched_into_pinned_memory_unchanged(tmp_path, where):
    dataset = write_dataset(tmp_path / "data", train=64)
    split = Split.open(dataset, "train", CUDA, forced=where)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    indices = [order[start:start + 16] for start in range(0, 64, 16)]

    with Prefetcher(split, CUDA) as batches:
        batches.plan(indices)
        for index in indices:
            x, y = batches.get(index)
            assert x.is_pinned() and y.is_pinned()
            assert torch.equal(x, split.batch(index)[0]) and torch.equal(y, split.batch(index)[1])
    assert not prefetching()


def test_a_job_with_its_data_on_the_map_trains_on_cuda_through_the_prefetcher(tmp_path):
    dataset = write_dataset(tmp_path / "data", train=256, val=64)
    plan = make_plan(dataset, tmp_path / "job", network_spec=CONV, device="cuda:0", epochs=3, data_placement="map")

    assert train(plan, (recorder := Recorder())) == "done"
    accuracy = [v for (split, name, _), v in recorder.points.items() if (split, name) == ("val", "accuracy")]
    assert accuracy[-1] >= 0.9 and not prefetching()
