"""A segmentation job on two processes (DDP, gloo on CPU) trains the model one process trains with the
same global batch, as classification's does (tests/jobs/test_distributed.py): masks are sharded with
their images, and the real network builder runs in each rank's own process."""
from __future__ import annotations

import torch

from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, max_difference
from tests.segmentation.test_training import SIZE, SOLVER, write_squares
from training.torch.run import train

# Built by networks' own builder in every rank: per-pixel logits, "num_classes" channels at the end.
CONVS = {"layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                    {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]}


def test_two_ranks_train_a_segmentation_network_to_the_weights_of_one_process(tmp_path):
    dataset = write_squares(tmp_path / "squares", train=32, val=8)
    fields = {"task": "segmentation", "input_shape": (3, SIZE, SIZE), "classes": ["background", "square"],
              "network_spec": CONVS, **SOLVER, "optimizer": "sgd", "learning_rate": 0.1, "epochs": 2}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one, two = Recorder(), Recorder()
        assert train(make_plan(dataset, tmp_path / "one", **fields), one) == "done"
        assert train(make_plan(dataset, tmp_path / "two", devices=("cpu", "cpu"), **fields), two) == "done"
    finally:
        torch.set_num_threads(threads)

    # Not 1e-5 as for classification: each rank's loss is the mean over its own labelled pixels (the
    # ignored ones differ between shards), and DDP averages the ranks' gradients, so the two weigh a
    # labelled pixel very slightly differently (1.2e-5 here on weights of ~0.1-0.4).
    assert max_difference(last_weights(tmp_path / "one"), last_weights(tmp_path / "two")) < 1e-4
    assert {name for split, name, _ in two.points if split == "val"} == {"loss", "pixel_accuracy", "mean_iou"}
