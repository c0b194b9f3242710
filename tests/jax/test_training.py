"""The jax backend's training run on real files: what it reports, its snapshots, abort, resume bit for bit."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.jax.helpers import Recorder, digits_folder, plan_on
from training.contract import TrainingFailed
from training.jax.backend import JaxBackend

pytest.importorskip("jax")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_folder(tmp_path_factory.mktemp("digits"))


def train(plan, reporter=None):  # type: ignore[no-untyped-def]
    reporter = reporter or Recorder()
    return JaxBackend("jax", {}).train(plan, reporter), reporter


def weights(output: Path, epoch: int) -> dict[str, np.ndarray]:
    return load_file(str(output / f"snapshots/epoch_{epoch}.safetensors"))


def test_it_trains_lenet_and_reports_as_torch_does(digits: Path, tmp_path: Path) -> None:
    outcome, seen = train(plan_on(digits, tmp_path))
    assert outcome == "done"
    steps_per_epoch = 29  # 450 images, batch 16
    assert len(seen.values("train", "loss")) == 2 * steps_per_epoch  # every step: 29 // 20 rounds to 1
    assert seen.values("train", "lr")[0] == 0.002 and seen.values("train", "lr")[-1] == 0.001  # the step schedule
    assert seen.values("val", "accuracy")[-1] > 0.75
    assert [epoch for epoch, _ in seen.snapshots] == [1, 2]
    assert (tmp_path / "model.json").exists() and (tmp_path / "mean.safetensors").exists()
    meta = json.loads((tmp_path / "snapshots/epoch_2.json").read_text())
    assert meta["step"] == 58 and meta["rng"] == {"seed": 7, "step": 58}
    assert "0.weight" in weights(tmp_path, 2)


def test_it_stops_when_asked(digits: Path, tmp_path: Path) -> None:
    outcome, seen = train(plan_on(digits, tmp_path, network="mlp"), Recorder(stop_after=3))
    assert outcome == "aborted" and seen.steps == 3 and seen.logs[-1] == "Aborted."


def test_it_fails_a_diverged_run_with_the_torch_message(digits: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingFailed, match=r"The loss diverged \(nan\) at epoch .* The learning rate 1e\+06 is probably"):
        train(plan_on(digits, tmp_path, optimizer="sgd", learning_rate=1e6, lr_policy="fixed"))


@pytest.mark.parametrize("changes", [{}, {"network": "mlp", "optimizer": "adamw", "accumulate": 2, "grad_clip": 1.0,
                                          "label_smoothing": 0.1, "augmentation": {"flip": "both", "rot90": True,
                                                                                   "noise_std": 0.05}}])
def test_it_resumes_to_the_same_weights_as_an_uninterrupted_run(digits: Path, tmp_path: Path,
                                                                  changes: dict) -> None:  # type: ignore[type-arg]
    straight = plan_on(digits, tmp_path / "straight", **changes)
    train(straight)
    interrupted = replace(straight, output_folder=tmp_path / "resumed")
    # A first attempt killed after its epoch-1 snapshot, then a second one from it.
    train(replace(interrupted, epochs=2), Recorder(stop_after=30))
    assert not (tmp_path / "resumed/snapshots/epoch_2.safetensors").exists()
    _, seen = train(replace(interrupted, resume_from_epoch=1.0))
    assert any("Resumed from the snapshot at epoch 1" in line for line in seen.logs)
    expected, got = weights(tmp_path / "straight", 2), weights(tmp_path / "resumed", 2)
    assert set(expected) == set(got)
    for name in expected:
        assert np.array_equal(expected[name], got[name]), name
