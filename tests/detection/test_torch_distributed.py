"""A detection job on two processes (DDP, gloo on CPU) trains the network one process trains with the
same global batch, as segmentation's does (tests/segmentation/test_distributed.py): boxes are sharded
with their images, the real network builder runs in each rank's own process, and the loss parts are
reported as curves from the ranks' mean."""
from __future__ import annotations

import torch

from tests.detection.generated import class_names, write_detection_dataset
from tests.detection.test_torch_training import CONVS, SIZE
from tests.jobs.test_training_extras import Recorder, last_weights, make_plan, max_difference
from training.torch.run import train


def test_two_ranks_train_a_detector_to_the_weights_of_one_process(tmp_path):
    # One box an image: each rank's loss, divided by its own number of centres, is then the mean over
    # its images, and DDP's mean of the ranks' gradients is the one process's gradient.
    dataset = write_detection_dataset(tmp_path / "shapes", train=32, val=8, max_boxes=1)
    fields = {"task": "detection", "input_shape": (3, SIZE, SIZE), "classes": class_names(2), "network_spec": CONVS,
              "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "batch_size": 8, "epochs": 2}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one, two = Recorder(), Recorder()
        assert train(make_plan(dataset, tmp_path / "one", **fields), one) == "done"
        assert train(make_plan(dataset, tmp_path / "two", devices=("cpu", "cpu"), **fields), two) == "done"
    finally:
        torch.set_num_threads(threads)

    assert max_difference(last_weights(tmp_path / "one"), last_weights(tmp_path / "two")) < 1e-4
    assert {name for split, name, _ in two.points if split == "val"} == {"loss", "map_50", "map"}
    last = max(step for _, name, step in one.points if name == "loss_size")
    for name in ("loss", "loss_heatmap", "loss_size", "loss_offset"):
        assert abs(two.points[("train", name, last)] - one.points[("train", name, last)]) < 1e-3 * max(
            1.0, one.points[("train", name, last)]), name
