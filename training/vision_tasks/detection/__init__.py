"""Object detection: boxes with a class each, from images and box lists (datasets.ingest.detection).

A dataset stores, per split, `{split}_boxes.npy` float32 (N, K, 6) rows [class, x1, y1, x2, y2, flag]
in the stored image's pixels (padding rows class -1; class -2 a KITTI `DontCare` region; flag 1 a
difficult/crowd box, ignored in evaluation). The backend answers each image with (D, 6) rows
[x1, y1, x2, y2, score, class] in the network input's pixels, best first (padding: score 0, class -1);
mAP comes from pycocotools (`metrics`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from training.vision_tasks.base import Metric, VisionTask
from training.vision_tasks.detection import answers, report
from training.vision_tasks.detection.answers import DEFAULT_SCORE_THRESHOLD

__all__ = ["DEFAULT_SCORE_THRESHOLD", "Detection"]


class Detection(VisionTask):
    name = "detection"
    title = "Object detection"
    dataset_files = ("{split}_images.npy", "{split}_boxes.npy", "mean.npy")
    networks = ("centernet",)
    metrics = (Metric("map_50", "mAP@0.5", "max"), Metric("map", "mAP@0.5:0.95", "max"))
    pages = {"dataset": "datasets/detection_detail.html", "infer": "jobs/detect.html",
             "evaluation": "results/detection_evaluation.html"}
    truth_file = "{split}_boxes.npy"
    loss_parts = ("loss_heatmap", "loss_size", "loss_offset")
    infer_options = ("score_threshold",)  # what the infer page and API may pass to `infer_answer`

    def head(self, classes: list[str]) -> dict[str, Any]:
        # A CenterNet map at stride 4: [0:C] class heatmap logits, [C:C+2] box width and height,
        # [C+2:C+4] the centre's offset within its cell (training.torch decodes it into boxes).
        return {"outputs": len(classes) + 4, "kind": "centernet", "stride": 4}

    def infer_answer(self, outputs: np.ndarray, classes: list[str],
                     score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> dict[str, Any]:
        """`outputs`: one image's (D, 6) detections. Its boxes above the threshold, best first, in
        the network input's pixels (`answer_to_image` puts them on the image's own)."""
        return answers.infer_answer(outputs, classes, score_threshold)

    def answer_to_image(self, answer: dict[str, Any], width: int, height: int,
                        scaled: tuple[int, int], fitted: tuple[int, int] | None = None) -> dict[str, Any]:
        if fitted is None:
            raise ValueError("Detection needs the network input's size (fitted) to place its boxes.")
        return answers.answer_to_image(answer, width, height, scaled, fitted)

    def evaluation_report(self, outputs: np.ndarray, labels: np.ndarray, classes: list[str],
                          score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> dict[str, Any]:
        """`outputs` (N, D, 6) detections, `labels` the (N, K, 6) true boxes."""
        return report.evaluation_report(outputs, labels, classes, score_threshold)
