"""Image classification: one label per image, from a folder per class."""
from __future__ import annotations

from typing import Any

import numpy as np

from training.vision_tasks.base import Metric, VisionTask
from training.vision_tasks.classification.metrics import evaluation_report

TOP_K = 5


class Classification(VisionTask):
    name = "classification"
    title = "Image classification"
    # What training reads (the class names come with the plan; classes.json is a copy for people).
    dataset_files = ("{split}_images.npy", "{split}_labels.npy", "mean.npy")
    networks = ("lenet", "mlp", "alexnet", "resnet18")
    metrics = (Metric("accuracy", "Accuracy", "max"),)
    pages = {"dataset": "datasets/detail.html", "infer": "jobs/classify.html",
             "evaluation": "results/evaluation.html"}

    def head(self, classes: list[str]) -> dict[str, Any]:
        return {"outputs": len(classes), "kind": "logits"}  # one score per class; softmax gives probabilities

    def infer_answer(self, outputs: np.ndarray, classes: list[str]) -> dict[str, Any]:
        """`outputs`: one image's class probabilities. The top 5, best first."""
        order = np.argsort(-outputs, kind="stable")[:TOP_K]
        return {"predictions": [{"label": classes[i], "probability": float(outputs[i])} for i in order]}

    def evaluation_report(self, outputs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
        return evaluation_report(outputs, labels, classes)
