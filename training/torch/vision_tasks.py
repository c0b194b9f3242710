"""The torch side of each vision task (training.vision_tasks): its loss, how a training batch is
augmented and fed to it, its validation on a split, and what its network's raw output becomes for
inference. Detection's is in training.torch.detection."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from training.contract import TrainingPlan
from training.torch.augment import Augmenter
from training.torch.data import Split
from training.torch.detection import TorchDetection
from training.torch.models import evaluate
from training.vision_tasks.segmentation.metrics import mean_iou, pixel_accuracy


class TorchClassification:
    per_pixel = False  # one label per image (Split.open's labels)
    label_array = "labels"

    def loss(self, plan: TrainingPlan) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss(label_smoothing=plan.label_smoothing)

    def prepare(self, model: torch.nn.Module, plan: TrainingPlan) -> None:
        """The freshly built network set up for the task before training (detection: its head's biases)."""

    def augment(self, augmenter: Augmenter, pixels: torch.Tensor, labels: torch.Tensor,
                plan: TrainingPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch augmented (pixels in 0..1): the labels stay as they are."""
        return augmenter(pixels), labels

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """A batch's labels on the device as the loss takes them."""
        return labels

    def validate(self, model: torch.nn.Module, split: Split, mean: torch.Tensor, device: torch.device,
                 batch_size: int, plan: TrainingPlan) -> dict[str, float]:
        """The val loss and every live metric of the task (training.vision_tasks.classification)."""
        loss, accuracy = evaluate(model, split, mean, device, batch_size)
        return {"loss": loss, "accuracy": accuracy}

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities, what Classification.infer_answer and evaluation_report read."""
        return torch.softmax(logits, dim=1)


class TorchSegmentation:
    """Per-pixel classification: (N, classes, H, W) logits against (N, H, W) masks of class indices,
    pixels of the plan's ignore_index in neither the loss nor the metrics."""

    per_pixel = True  # the labels are masks (Split.open(masks=True))
    label_array = "masks"

    def loss(self, plan: TrainingPlan) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss(ignore_index=plan.ignore_index, label_smoothing=plan.label_smoothing)

    def prepare(self, model: torch.nn.Module, plan: TrainingPlan) -> None:
        pass

    def augment(self, augmenter: Augmenter, pixels: torch.Tensor, masks: torch.Tensor,
                plan: TrainingPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """The geometric moves take the masks along (training.torch.augment.Augmenter.with_masks)."""
        return augmenter.with_masks(pixels, masks, plan.ignore_index)

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        return masks.long()  # stored and moved as uint8; cross-entropy takes int64

    def validate(self, model: torch.nn.Module, split: Split, mean: torch.Tensor, device: torch.device,
                 batch_size: int, plan: TrainingPlan) -> dict[str, float]:
        """The val loss (per labelled pixel), pixel accuracy and mean IoU, both from one confusion
        matrix over the whole split (training.vision_tasks.segmentation.metrics)."""
        model.eval()
        classes = len(plan.classes)
        matrix = torch.zeros(classes * classes, dtype=torch.int64, device=device)
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        with torch.inference_mode():
            for start in range(0, len(split), batch_size):
                x, masks = split.batch(torch.arange(start, min(start + batch_size, len(split))))
                logits = model((x.to(device).float() - mean) / 255.0)
                y = masks.to(device).long()
                total_loss += torch.nn.functional.cross_entropy(logits.float(), y, ignore_index=plan.ignore_index,
                                                                reduction="sum")
                labelled = y != plan.ignore_index
                matrix += torch.bincount(y[labelled] * classes + logits.argmax(1)[labelled],
                                         minlength=classes * classes)
        counts = matrix.view(classes, classes).cpu().numpy().astype(np.int64)
        pixels = int(counts.sum())
        return {"loss": float(total_loss) / pixels if pixels else 0.0, "pixel_accuracy": pixel_accuracy(counts),
                "mean_iou": mean_iou(counts)}

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pixel class probabilities (N, classes, H, W): what Segmentation.infer_answer and
        evaluation_report read."""
        return torch.softmax(logits, dim=1)


TORCH_TASKS: dict[str, Any] = {"classification": TorchClassification(), "segmentation": TorchSegmentation(),
                               "detection": TorchDetection()}


def torch_task(name: str) -> Any:
    try:
        return TORCH_TASKS[name]
    except KeyError:
        raise KeyError(f"The torch backend does not train the task '{name}'.") from None
