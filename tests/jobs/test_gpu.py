"""The CUDA paths: training, AMP (bf16 and fp16 with its GradScaler) and channels-last.

Marked `gpu`; each skips with the reason on a machine without CUDA (`pytest -m gpu` runs them alone).
"""
from __future__ import annotations

import pytest
import torch

from jobs.backends.pytorch import _Run, train
from tests.jobs.test_precision import CONV, forward_dtypes
from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, write_dataset

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
