"""Semantic segmentation: a class per pixel, from images and masks of class indices
(datasets.ingest.segmentation). Pixels with the dataset's ignore_index count in neither loss nor metrics."""
from __future__ import annotations

from typing import Any

import numpy as np

from training.vision_tasks.base import Metric, SplitEvaluation, VisionTask
from training.vision_tasks.segmentation import metrics


class Segmentation(VisionTask):
    name = "segmentation"
    title = "Semantic segmentation"
    dataset_files = ("{split}_images.npy", "{split}_masks.npy", "mean.npy")
    networks = ("unet", "fcn_resnet18")
    metrics = (Metric("mean_iou", "Mean IoU", "max"), Metric("pixel_accuracy", "Pixel accuracy", "max"))
    pages = {"dataset": "datasets/segmentation_detail.html", "infer": "jobs/segment.html",
             "evaluation": "results/segmentation_evaluation.html"}
    truth_file = "{split}_masks.npy"

    def head(self, classes: list[str]) -> dict[str, Any]:
        return {"outputs": len(classes), "kind": "pixel_logits"}  # one score per class at every pixel

    def infer_answer(self, outputs: np.ndarray, classes: list[str]) -> dict[str, Any]:
        """`outputs`: one image's (classes, H, W) probabilities. Its mask as a base64 PNG and class areas."""
        return metrics.infer_answer(outputs, classes)

    def answer_to_image(self, answer: dict[str, Any], width: int, height: int,
                        scaled: tuple[int, int], fitted: tuple[int, int] | None = None) -> dict[str, Any]:
        # The mask is the network's input size: `fitted` is its shape.
        return metrics.answer_to_image(answer, width, height, scaled)

    def evaluation_report(self, outputs: np.ndarray, labels: np.ndarray, classes: list[str],
                          ignore_index: int = 255) -> dict[str, Any]:
        return metrics.evaluation_report(outputs, labels, classes, ignore_index)

    def evaluation(self, classes: list[str], ignore_index: int = 255) -> SplitEvaluation:
        return metrics.SegmentationEvaluation(classes, ignore_index)
