"""The jax CUDA path: a LeNet run on the first GPU jax finds, and inference there. Marked `gpu` (`make
gpu-check` runs it); skipped with the reason where jax finds no GPU (the CPU jaxlib wheel finds none:
a CUDA host installs jax[cuda12])."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from tests.jax.helpers import Recorder, digits_folder, plan_on  # noqa: E402
from training.jax.backend import JaxBackend  # noqa: E402
from training.jax.devices import device_names  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif("cuda:0" not in device_names(),
                                                  reason="jax finds no GPU on this machine (CPU-only jaxlib or no CUDA)")]


def test_it_trains_and_infers_on_the_gpu(tmp_path: Path) -> None:
    data = digits_folder(tmp_path / "data")
    backend, seen = JaxBackend("jax", {}), Recorder()
    assert backend.train(plan_on(data, tmp_path / "job", device="cuda:0"), seen) == "done"
    assert seen.values("val", "accuracy")[-1] > 0.75
    probabilities = backend.infer(tmp_path / "job/snapshots/epoch_2.safetensors", np.load(data / "val_images.npy")[:4])
    assert probabilities.shape == (4, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
