"""The torch side of each vision task (training.vision_tasks): its loss, its validation on a split,
and what its network's raw output becomes for inference."""
from __future__ import annotations

from typing import Any

import torch

from training.contract import TrainingPlan
from training.torch.data import Split
from training.torch.models import evaluate


class TorchClassification:
    def loss(self, plan: TrainingPlan) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss(label_smoothing=plan.label_smoothing)

    def validate(self, model: torch.nn.Module, split: Split, mean: torch.Tensor, device: torch.device,
                 batch_size: int) -> dict[str, float]:
        """The val loss and every live metric of the task (training.vision_tasks.classification)."""
        loss, accuracy = evaluate(model, split, mean, device, batch_size)
        return {"loss": loss, "accuracy": accuracy}

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities, what Classification.infer_answer and evaluation_report read."""
        return torch.softmax(logits, dim=1)


TORCH_TASKS: dict[str, Any] = {"classification": TorchClassification()}


def torch_task(name: str) -> Any:
    try:
        return TORCH_TASKS[name]
    except KeyError:
        raise KeyError(f"The torch backend does not train the task '{name}'.") from None
