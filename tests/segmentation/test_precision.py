"""Mixed precision trains segmentation as it trains classification: bf16 autocast on the CPU (fp16
needs CUDA: tests/segmentation/test_training.py's gpu test covers it there)."""
from __future__ import annotations

import math

import torch

from tests.jobs.test_training_extras import Recorder, make_plan
from tests.segmentation.test_distributed import CONVS
from tests.segmentation.test_training import SIZE, SOLVER, write_squares
from training.torch.run import train


def test_a_bf16_segmentation_job_trains_and_reports_finite_metrics(tmp_path):
    dataset = write_squares(tmp_path / "squares")
    fields = {"task": "segmentation", "input_shape": (3, SIZE, SIZE), "classes": ["background", "square"],
              "network_spec": CONVS, **SOLVER, "epochs": 8, "amp": "bf16"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recorder = Recorder()
        assert train(make_plan(dataset, tmp_path / "job", **fields), recorder) == "done"
    finally:
        torch.set_num_threads(threads)

    last = max(step for split, _, step in recorder.points if split == "val")
    val = {name: value for (split, name, step), value in recorder.points.items() if split == "val" and step == last}
    assert all(math.isfinite(value) for value in val.values())
    assert val["mean_iou"] > 0.6, val  # all background would score ~0.43: it found the squares
