"""What `infer` answers for one image: the detector's boxes with labels and scores, put back on the
uploaded image's own pixels."""
from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_SCORE_THRESHOLD = 0.3  # boxes scoring below it are left out of an answer (the API's default)


def infer_answer(outputs: np.ndarray, classes: list[str],
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> dict[str, Any]:
    """`outputs`: one image's (D, 6) rows [x1, y1, x2, y2, score, class] in the network input's
    pixels. Its boxes scoring at least `score_threshold` (and above 0: padding scores 0), best first."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] != 6:
        raise ValueError(f"A detector's outputs for one image are (D, 6) rows; got {outputs.shape}.")
    kept = outputs[(outputs[:, 4] > 0) & (outputs[:, 4] >= score_threshold) & (outputs[:, 5] >= 0)]
    kept = kept[np.argsort(-kept[:, 4], kind="stable")]
    boxes = []
    for x1, y1, x2, y2, score, cls in kept:
        if cls >= len(classes):
            raise ValueError(f"A detection has class {cls:g}, outside the {len(classes)} classes.")
        boxes.append({"label": classes[int(cls)], "class_index": int(cls), "score": float(score),
                      "box": [float(x1), float(y1), float(x2), float(y2)]})
    return {"boxes": boxes, "score_threshold": float(score_threshold)}


def answer_to_image(answer: dict[str, Any], width: int, height: int, scaled: tuple[int, int],
                    fitted: tuple[int, int]) -> dict[str, Any]:
    """An `infer_answer` on the `width` x `height` image it came from. That image was scaled to
    `scaled` (width, height), then centre-cropped or filled to the network's `fitted` (width, height)
    (datasets.ingest.images: the resize modes, per axis): each box is moved by that crop or fill's
    offset, scaled back, and clipped to the image; a box lying wholly in the fill is left out."""
    boxes = []
    for found in answer["boxes"]:
        x1, y1, x2, y2 = found["box"]
        x1, x2 = (_unfit(x, scaled[0], fitted[0], width) for x in (x1, x2))
        y1, y2 = (_unfit(y, scaled[1], fitted[1], height) for y in (y1, y2))
        if x2 > x1 and y2 > y1:
            boxes.append({**found, "box": [x1, y1, x2, y2]})
    return {**answer, "width": width, "height": height, "boxes": boxes}


def _unfit(value: float, scaled: int, fitted: int, own: int) -> float:
    """A coordinate on the network's input, on one axis of the image's own pixels."""
    # The crop's (or the fill's) offset as center_crop and place_centre take it: floor of half.
    offset = (scaled - fitted) // 2 if scaled >= fitted else -((fitted - scaled) // 2)
    return float(min(max((value + offset) * own / scaled, 0.0), float(own)))
