"""Object detection on the torch side (training.vision_tasks.detection is the framework-free side):
CenterNet's targets, loss and decoding for the `centernet` head (networks.builtin), and the task
the training loop runs.

The head, per cell of a stride-4 map of the input ((N, C + 4, ceil(H / 4), ceil(W / 4))):
- channels [0:C]: one heatmap logit per class; sigmoid gives the chance an object of that class is
  centred in the cell;
- [C:C+2]: the box's width and height in input pixels (plain, not log-space: CenterNet's L1 on
  pixels with weight 0.1);
- [C+2:C+4]: the box centre's offset inside its cell (x, y), in cells (0..1 when learnt).

Targets are rendered on the device from each batch's (N, K, 6) boxes ([class, x1, y1, x2, y2, flag]
in input pixels, the dataset's `{split}_boxes.npy` rows): a Gaussian per box on its class's heatmap,
centred on the integer cell holding the box's centre so that the peak there is exactly 1 (the focal
loss's positives are the cells equal to 1: a Gaussian centred between cells would leave none, and
nothing would be learnt), its radius from the box's size as CenterNet's `gaussian_radius` (IoU 0.7).
Size and offset are regressed at the centre cells only. Class -1 rows are padding; class -2
(KITTI's DontCare) and flag-1 boxes (difficult, crowd) are never targets, and the heatmap loss
ignores the cells their area covers, so they are not pushed to the background either.

Decoding (outside the exported graph: TorchScript and ONNX return the head's map): sigmoid, a 3x3
max-pool keeps each local peak, the top 100 scores over all classes and cells become boxes
[x1, y1, x2, y2, score, class] in input pixels, best first, clipped to the input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from training.contract import TrainingPlan
from training.torch.augment import Augmenter
from training.torch.data import Split

STRIDE = 4  # networks.builtin.CENTERNET_STRIDE: the head's cells
DETECTIONS = 100  # D, the rows per image the backend answers with (the task contract)
MIN_OVERLAP = 0.7  # CenterNet's Gaussian radius: a centre this far off still gives a box of IoU 0.7
WEIGHTS = {"heatmap": 1.0, "size": 0.1, "offset": 1.0}  # CenterNet's loss weights
LOSS_PARTS = ("loss_heatmap", "loss_size", "loss_offset")  # each a train curve beside `loss`


@dataclass
class Targets:
    heatmap: torch.Tensor  # (N, C, h, w) in 0..1, exactly 1 at each target's centre cell
    ignored: torch.Tensor  # (N, 1, h, w) bool: cells a DontCare or flagged box covers
    cell: torch.Tensor  # (N, K) long: each box's centre cell, row * w + column
    size: torch.Tensor  # (N, K, 2) the box's width and height in input pixels
    offset: torch.Tensor  # (N, K, 2) the centre's offset in its cell, in cells
    target: torch.Tensor  # (N, K) bool: the rows that are training targets


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = MIN_OVERLAP) -> torch.Tensor:
    """CenterNet's radius (in cells) for boxes of this size (in cells): the smallest of its three
    cases' roots, kept exactly as CenterNet computes them (the halved first root included), since its
    loss was tuned with them."""
    hw, s = height * width, height + width
    r1 = (s + torch.sqrt(s**2 - 4 * hw * (1 - min_overlap) / (1 + min_overlap))) / 2
    r2 = (2 * s + torch.sqrt(4 * s**2 - 16 * (1 - min_overlap) * hw)) / 2
    b3 = -2 * min_overlap * s
    r3 = (b3 + torch.sqrt(b3**2 - 16 * min_overlap * (min_overlap - 1) * hw)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def render_targets(boxes: torch.Tensor, classes: int, cells: tuple[int, int], stride: int = STRIDE) -> Targets:
    """The training targets of a batch's (N, K, 6) boxes on an (h, w) map of `stride`-pixel cells."""
    h, w = cells
    n, k = boxes.shape[:2]
    boxes = boxes.float()
    cls, x1, y1, x2, y2, flag = boxes.unbind(-1)
    target = (cls >= 0) & (flag == 0) & (x2 > x1) & (y2 > y1)
    cx, cy = (x1 + x2) / (2 * stride), (y1 + y2) / (2 * stride)
    ix, iy = cx.floor().clamp(0, w - 1), cy.floor().clamp(0, h - 1)
    radius = gaussian_radius((y2 - y1) / stride, (x2 - x1) / stride).clamp_min(0).nan_to_num(0).floor()
    sigma = (2 * radius + 1) / 6
    dx = torch.arange(w, device=boxes.device, dtype=boxes.dtype).view(1, 1, 1, w) - ix.view(n, k, 1, 1)
    dy = torch.arange(h, device=boxes.device, dtype=boxes.dtype).view(1, 1, h, 1) - iy.view(n, k, 1, 1)
    r, s = radius.view(n, k, 1, 1), sigma.view(n, k, 1, 1)
    # Integer offsets from the centre cell: exp(0) = 1 exactly there, whatever the true centre.
    peak = torch.exp(-(dx**2 + dy**2) / (2 * s**2)) * ((dx.abs() <= r) & (dy.abs() <= r))
    peak = peak * target.view(n, k, 1, 1)
    heatmap = torch.zeros(n, classes, h * w, device=boxes.device, dtype=boxes.dtype)
    index = cls.clamp_min(0).long().clamp_max(classes - 1).view(n, k, 1).expand(n, k, h * w)
    heatmap.scatter_reduce_(1, index, peak.view(n, k, h * w), reduce="amax")
    return Targets(heatmap.view(n, classes, h, w), _ignored(boxes, cls, flag, cells, stride),
                   (iy * w + ix).long(), torch.stack([x2 - x1, y2 - y1], -1), torch.stack([cx - ix, cy - iy], -1),
                   target)


def _ignored(boxes: torch.Tensor, cls: torch.Tensor, flag: torch.Tensor, cells: tuple[int, int],
             stride: int) -> torch.Tensor:
    """(N, 1, h, w): the cells whose centre lies in a DontCare region or a flagged box."""
    h, w = cells
    n, k = cls.shape
    regions = (cls == -2) | ((cls >= 0) & (flag != 0))
    if not bool(regions.any()):
        return torch.zeros(n, 1, h, w, dtype=torch.bool, device=boxes.device)
    xs = (torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
    ys = (torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
    x1, y1, x2, y2 = (boxes[..., i].view(n, k, 1, 1) for i in range(1, 5))
    inside = ((xs.view(1, 1, 1, w) >= x1) & (xs.view(1, 1, 1, w) <= x2)
              & (ys.view(1, 1, h, 1) >= y1) & (ys.view(1, 1, h, 1) <= y2))
    return (inside & regions.view(n, k, 1, 1)).any(1, keepdim=True)


def focal_loss(logits: torch.Tensor, heatmap: torch.Tensor, ignored: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by the number of
    centre cells (at least 1); cells in `ignored` regions count only where they are centres."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = heatmap == 1
    pos = F.logsigmoid(logits).clamp_min(np.log(1e-4)) * (1 - p) ** 2
    neg = F.logsigmoid(-logits).clamp_min(np.log(1e-4)) * p**2 * (1 - heatmap) ** 4 * ~ignored
    total = torch.where(positive, pos, neg).sum()
    return -total / positive.sum().clamp_min(1)


class DetectionLoss(nn.Module):
    """heatmap focal loss + 0.1 x L1 size + L1 offset on the raw head (N, C + 4, h, w) against the
    batch's boxes (N, K, 6). After each call `parts` holds the three parts (detached), which the
    training loop reports as their own curves (LOSS_PARTS)."""

    part_names = LOSS_PARTS

    def __init__(self, classes: int, stride: int = STRIDE) -> None:
        super().__init__()
        self.classes, self.stride = classes, stride
        self.parts: dict[str, torch.Tensor] = {}

    def forward(self, raw: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        raw = raw.float()  # the loss in float32 under autocast too
        c = self.classes
        t = render_targets(boxes, c, (raw.shape[2], raw.shape[3]), self.stride)
        heatmap = focal_loss(raw[:, :c], t.heatmap, t.ignored)
        at_centres = raw[:, c:c + 4].flatten(2).gather(2, t.cell.unsqueeze(1).expand(-1, 4, -1)).transpose(1, 2)
        mask = t.target.unsqueeze(-1).float()
        coordinates = (mask.sum() * 2).clamp_min(1)  # each of x and y, as CenterNet's RegL1Loss divides
        size = ((at_centres[..., :2] - t.size).abs() * mask).sum() / coordinates
        offset = ((at_centres[..., 2:] - t.offset).abs() * mask).sum() / coordinates
        self.parts = {"loss_heatmap": heatmap.detach(), "loss_size": size.detach(), "loss_offset": offset.detach()}
        return WEIGHTS["heatmap"] * heatmap + WEIGHTS["size"] * size + WEIGHTS["offset"] * offset


def decode(raw: torch.Tensor, classes: int, input_size: tuple[int, int] | None = None, top: int = DETECTIONS,
           stride: int = STRIDE) -> torch.Tensor:
    """(N, top, 6) rows [x1, y1, x2, y2, score, class] in input pixels, best score first, from the raw
    head; rows past the map's peaks are padding (score 0, class -1). `input_size` (height, width)
    clips the boxes (default: the map's cells times the stride)."""
    raw = raw.float()
    n, _, h, w = raw.shape
    height, width = input_size or (h * stride, w * stride)
    heat = torch.sigmoid(raw[:, :classes])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    k = min(top, classes * h * w)
    scores, index = peaks.flatten(1).topk(k, dim=1)
    cls, cell = index // (h * w), index % (h * w)
    values = raw[:, classes:classes + 4].flatten(2).gather(2, cell.unsqueeze(1).expand(-1, 4, -1))
    size, offset = values[:, :2].clamp_min(0), values[:, 2:]
    cx = ((cell % w).float() + offset[:, 0]) * stride
    cy = ((cell // w).float() + offset[:, 1]) * stride
    x1, x2 = (cx - size[:, 0] / 2).clamp(0, width), (cx + size[:, 0] / 2).clamp(0, width)
    y1, y2 = (cy - size[:, 1] / 2).clamp(0, height), (cy + size[:, 1] / 2).clamp(0, height)
    rows = torch.stack([x1, y1, x2, y2, scores, cls.float()], -1)
    rows = torch.where((scores > 0).unsqueeze(-1), rows, _padding(raw))
    if k < top:
        rows = torch.cat([rows, _padding(raw).expand(n, top - k, 6)], 1)
    return rows


def _padding(raw: torch.Tensor) -> torch.Tensor:
    return torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, -1.0], device=raw.device)


def init_head(model: nn.Module, classes: int, prior: float = 0.1) -> None:
    """The last conv's heatmap biases at -log((1 - prior) / prior) (-2.19 for 0.1), so every cell
    starts out saying "probably nothing" and the focal loss starts sane (CenterNet, RetinaNet)."""
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    if last.bias is not None:
        with torch.no_grad():
            last.bias[:classes].fill_(-float(np.log((1 - prior) / prior)))


class TorchDetection:
    """CenterNet-style detection: the loss against each batch's boxes, boxes moved with the pixels by
    augmentation, validation as COCO mAP of the decoded val split (training.vision_tasks.detection)."""

    per_pixel = False
    label_array = "boxes"  # Split.open(labels="boxes"): {split}_boxes.npy, (N, K, 6) float32

    def loss(self, plan: TrainingPlan) -> nn.Module:
        return DetectionLoss(len(plan.classes))

    def prepare(self, model: nn.Module, plan: TrainingPlan) -> None:
        """The freshly built network's head set up for training (before any weights are loaded)."""
        init_head(model, len(plan.classes))

    def augment(self, augmenter: Augmenter, pixels: torch.Tensor, boxes: torch.Tensor,
                plan: TrainingPlan) -> tuple[torch.Tensor, torch.Tensor]:
        return augmenter.with_boxes(pixels, boxes.float())

    def targets(self, boxes: torch.Tensor) -> torch.Tensor:
        return boxes.float()  # rendered into heatmaps by the loss, at the network's output size

    def validate(self, model: nn.Module, split: Split, mean: torch.Tensor, device: torch.device,
                 batch_size: int, plan: TrainingPlan) -> dict[str, float]:
        """The val loss (each batch's, as training computes it, weighted by its images) and COCO
        mAP@0.5 and mAP@0.5:0.95 of the whole decoded split, by the kept COCO evaluator
        (training.vision_tasks.detection.metrics)."""
        from training.vision_tasks.detection.metrics import coco_evaluation, map_figures

        model.eval()
        loss_fn, total = DetectionLoss(len(plan.classes)), 0.0
        detections, truth = [], []
        with torch.inference_mode():
            for start in range(0, len(split), batch_size):
                x, boxes = split.batch(torch.arange(start, min(start + batch_size, len(split))))
                x = x.to(device)
                raw = model((x.float() - mean) / 255.0)
                total += float(loss_fn(raw, boxes.to(device).float())) * len(x)
                detections.append(decode(raw, len(plan.classes), (x.shape[2], x.shape[3])).cpu().numpy())
                truth.append(boxes.cpu().numpy())
        figures = map_figures(coco_evaluation(np.concatenate(detections), np.concatenate(truth), len(plan.classes)))
        return {"loss": total / max(len(split), 1), "map_50": float(figures["map_50"]), "map": float(figures["map"])}

    def outputs(self, raw: torch.Tensor, input_size: tuple[int, int] | None = None, classes: int | None = None) -> torch.Tensor:
        """The contract's (N, 100, 6) detections, from the raw head (N, C + 4, h, w)."""
        return decode(raw, raw.shape[1] - 4 if classes is None else classes, input_size)


def detections_for(model: nn.Module, mean: torch.Tensor, images: Any, classes: int) -> np.ndarray:
    """(N, 100, 6) detections for uint8 images (N, C, H, W), in their pixels."""
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(images)).float()
        raw = model((x - mean) / 255.0)
        return decode(raw, classes, (x.shape[2], x.shape[3])).numpy()
