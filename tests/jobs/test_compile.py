"""`compile`: torch.compile runs the steps, the eager module is saved; a failure falls back to eager, logged once."""
from __future__ import annotations

from typing import Any

import torch

from tests.jobs.test_training_extras import CPU, Recorder, last_weights, make_plan, max_difference, write_dataset
from training.torch.compile import CompiledModel
from training.torch.loop import _Run
from training.torch.run import train

DROPOUT = {"layers": [{"type": "flatten"}, {"type": "dropout", "p": 0.3}, {"type": "linear", "out_features": "num_classes"}]}


class Logs(Recorder):
    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__(stop_after)
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def compile_lines(reporter: Logs) -> list[str]:
    return [line for line in reporter.lines if "torch.compile" in line]


def val_accuracy(reporter: Recorder) -> list[float]:
    return [v for (split, name, _), v in sorted(reporter.points.items(), key=lambda kv: kv[0][2])
            if (split, name) == ("val", "accuracy")]


def failing_backend(graph: torch.fx.GraphModule, inputs: Any) -> Any:
    raise RuntimeError("no C compiler on this machine")


def test_an_unknown_backend_is_logged_once_and_the_job_trains_eagerly(tmp_path, settings):
    settings.WORKBENCH_COMPILE_BACKEND = "no-such-backend"
    dataset = write_dataset(tmp_path / "data")
    reporter = Logs()

    assert train(make_plan(dataset, tmp_path / "compiled", compile=True, epochs=2), reporter) == "done"
    assert train(make_plan(dataset, tmp_path / "eager", epochs=2), Recorder()) == "done"

    [line] = compile_lines(reporter)
    assert line.startswith("torch.compile failed (InvalidBackend: ") and line.endswith("training goes on without it.")
    assert max_difference(last_weights(tmp_path / "compiled"), last_weights(tmp_path / "eager")) == 0.0


def test_a_failure_at_the_first_step_redoes_that_step_eagerly_with_the_same_weights(tmp_path):
    """The failing step is redone, not skipped: with dropout drawing from the same generator, the
    run ends bit for bit where an eager run does."""
    dataset = write_dataset(tmp_path / "data")
    reporter = Logs()
    run = _Run(make_plan(dataset, tmp_path / "compiled", network_spec=DROPOUT, epochs=2), reporter, CPU)
    run.compiled = CompiledModel(run.model, reporter, enabled=True, backend=failing_backend)
    assert run.compiled.compiled

    assert run.train() == "done"
    assert train(make_plan(dataset, tmp_path / "eager", network_spec=DROPOUT, epochs=2), Recorder()) == "done"

    [line] = compile_lines(reporter)
    assert "no C compiler on this machine" in line and line.endswith("training goes on without it.")
    assert not run.compiled.compiled
    assert max_difference(last_weights(tmp_path / "compiled"), last_weights(tmp_path / "eager")) == 0.0


def test_a_compiled_job_trains_like_an_eager_one_and_saves_plain_weights(tmp_path):
    """Inductor on the CPU (it needs the C compiler this machine has); about 20 s of compilation."""
    dataset = write_dataset(tmp_path / "data", train=64, val=16)
    fields = {"epochs": 3, "snapshot_interval": 0.5}
    compiled, eager = Logs(stop_after=12), Logs()
    run = _Run(make_plan(dataset, tmp_path / "compiled", compile=True, **fields), compiled, CPU)
    assert run.train() == "aborted" and run.compiled.compiled
    resumed = Logs()
    plan = make_plan(dataset, tmp_path / "compiled", compile=True, resume_from_epoch=max(compiled.snapshots), **fields)

    assert train(plan, resumed) == "done"
    assert train(make_plan(dataset, tmp_path / "eager", **fields), eager) == "done"

    assert compile_lines(compiled) == compile_lines(resumed) == []  # it compiled, both times
    weights = last_weights(tmp_path / "compiled")
    assert not any("_orig_mod" in name for name in weights)
    assert weights.keys() == _Run(plan, Recorder(), CPU).model.state_dict().keys()
    assert val_accuracy(resumed)[-1] == val_accuracy(eager)[-1] >= 0.9
    assert max_difference(weights, last_weights(tmp_path / "eager")) < 1e-4
