"""Augmentation of training batches as batched tensor operations on the training device.

Each operation works on a whole batch (N, C, H, W) at once, drawing its
per-image choices from one `torch.Generator` on the training device: no per-image Python loop,
no host round trip. The generator is seeded from the job's seed and its state travels in every
snapshot, so a resumed run draws exactly what the uninterrupted one would have.

Order: flips, 90-degree rotation, one affine resampling (rotation, translation, scale), pad and
crop, HSV shifts, noise; then the pixels are clamped back to 0..1. Empty areas are black (0).
A segmentation batch's masks (`Augmenter.with_masks`) take the same geometric moves from the same
draws, nearest neighbour, their empty areas unlabelled (ignore_index); colour and noise are the image's.
The exact moves (flips, quarter turns, a crop with no resampling) run on the uint8 batch, before
it becomes float: a quarter of the bytes to move. When the affine resampling runs anyway, the crop
is folded into it as a whole-pixel translation (the same pixels, one pass fewer over the batch).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from training.augmentation import Augmentation


class Augmenter:
    """Changes training batches as `spec` says, reproducibly from `seed`."""

    def __init__(self, spec: Augmentation, seed: int, device: torch.device) -> None:
        self.spec, self.device = spec, device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The augmented batch as float in 0..1, from uint8 pixels (or float ones in 0..1, which
        may be changed in place)."""
        return self._augment(x, None, 0)[0]

    def with_masks(self, x: torch.Tensor, masks: torch.Tensor, ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
        """A segmentation batch: the images as `__call__` changes them (the same draws), and their
        (N, H, W) masks moved with them, nearest neighbour, uncovered pixels `ignore_index`
        (unlabelled). Colour shifts and noise leave the masks alone."""
        images, moved, _ = self._augment(x, masks, ignore_index)
        assert moved is not None
        return images, moved

    def with_boxes(self, x: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A detection batch: the images as `__call__` changes them (the same draws), and their
        (N, K, 6) boxes ([class, x1, y1, x2, y2, flag] in pixels) moved with them: each box's corners
        go where its pixels went and the box becomes their enclosing box, clipped to the image; a box
        left with less than MIN_BOX_SHARE of its moved area inside (or under a pixel a side) becomes a
        padding row (class -1). Colour shifts and noise leave the boxes alone."""
        images, _, moved = self._augment(x, None, 0, boxes)
        assert moved is not None
        return images, moved

    def _augment(self, x: torch.Tensor, masks: torch.Tensor | None, ignore_index: int,
                 boxes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        s = self.spec
        moves: dict[str, Any] = {}
        if s.flip in ("horizontal", "both"):
            moves["mirror"] = self._coin(x)
        if s.flip in ("vertical", "both"):
            moves["upside_down"] = self._coin(x)
        if s.rot90:
            quarter = 4 if x.shape[2] == x.shape[3] else 2  # a non-square image keeps its shape: 0 or 180
            moves["turns"] = torch.randint(0, quarter, (len(x),), generator=self.generator,
                                           device=x.device) * (4 // quarter)
        crop = (self._offsets(x, s.crop_padding), self._offsets(x, s.crop_padding)) if s.crop_padding else None
        if crop is not None and not s.affine:
            moves.update(padding=s.crop_padding, top=crop[0], left=crop[1])
        if moves:
            x = move(x, **moves)
            if masks is not None:
                masks = move(masks.unsqueeze(1), **moves, fill=ignore_index).squeeze(1)
            if boxes is not None:
                boxes = move_boxes(boxes, x.shape[3], x.shape[2], **moves)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x
        if s.affine:
            moved = None if crop is None else (crop[1] - s.crop_padding, crop[0] - s.crop_padding)
            theta = affine_theta(x, self._uniform(x, s.rotate_degrees), self._between(x, *s.scale),
                                 self._uniform(x, s.translate), self._uniform(x, s.translate), moved)
            grid = theta_grid(x, theta)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if masks is not None:
                masks = resample_masks(masks, grid, ignore_index)
            if boxes is not None:
                boxes = affine_boxes(boxes, theta, x.shape[3], x.shape[2])
        if any(s.hsv):
            x = hsv_shift(x, *(self._uniform(x, amount) for amount in s.hsv))
        if s.noise_std:
            x = x.add_(torch.randn(x.shape, generator=self.generator, device=x.device).mul_(s.noise_std))
        return x.clamp_(0.0, 1.0), masks, (None if boxes is None else clip_boxes(boxes, x.shape[3], x.shape[2]))

    def state(self) -> list[int]:
        return self.generator.get_state().tolist()

    def load_state(self, state: list[int]) -> None:
        self.generator.set_state(torch.tensor(state, dtype=torch.uint8))

    def _coin(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(len(x), generator=self.generator, device=x.device) < 0.5

    def _between(self, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(len(x), generator=self.generator, device=x.device)

    def _uniform(self, x: torch.Tensor, amount: float) -> torch.Tensor:
        return self._between(x, -amount, amount)

    def _offsets(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        return torch.randint(0, 2 * padding + 1, (len(x),), generator=self.generator, device=x.device)


def move(x: torch.Tensor, *, mirror: torch.Tensor | None = None, upside_down: torch.Tensor | None = None,
         turns: torch.Tensor | None = None, padding: int = 0, top: torch.Tensor | None = None,
         left: torch.Tensor | None = None, fill: int = 0) -> torch.Tensor:
    """The exact moves, per image, in one gather over the batch: image i mirrored left-right where
    mirror[i], top-bottom where upside_down[i], turned by turns[i] quarter turns as torch.rot90(.., (1, 2))
    turns (square images; others 0 or 2), then, with `padding`, padded with `fill` (black) and an H x W window
    taken back from (top[i], left[i]) of the padded image. Pixels of any dtype are read once.

    Each of these moves an output pixel (r, c) to a source pixel whose row and column are integer
    linear forms a r + b c + d of it, per image: the forms are composed on (N, 2, 3) tensors, and
    only the final flat index is computed per pixel position."""
    n, c, h, w = x.shape
    p = padding
    source = F.pad(x, (p, p, p, p), value=fill) if p else x
    hp, wp = h + 2 * p, w + 2 * p
    # form[:, 0] gives the source row and form[:, 1] its column, as (a, b, d) of a r + b c + d.
    form = torch.tensor([[1, 0, p], [0, 1, p]], device=x.device).repeat(n, 1, 1)
    if top is not None:
        form[:, 0, 2], form[:, 1, 2] = top, left  # type: ignore[assignment]
    if turns is not None:  # where the turned image's (row, col) is in the unturned one
        row, col = form[:, 0], form[:, 1]
        k = turns.view(n, 1) % 4
        form = torch.stack([_pick(k, row, col, _reverse(row, hp), _reverse(col, hp)),
                            _pick(k, col, _reverse(row, wp), _reverse(col, wp), row)], 1)
    if mirror is not None:
        form[:, 1] = torch.where(mirror.view(n, 1), _reverse(form[:, 1], wp), form[:, 1])
    if upside_down is not None:
        form[:, 0] = torch.where(upside_down.view(n, 1), _reverse(form[:, 0], hp), form[:, 0])
    flat = form[:, 0] * wp + form[:, 1]  # (N, 3): the flat index's own form
    index = (flat[:, 0].view(n, 1, 1) * torch.arange(h, device=x.device).view(1, h, 1)
             + flat[:, 1].view(n, 1, 1) * torch.arange(w, device=x.device).view(1, 1, w) + flat[:, 2].view(n, 1, 1))
    return source.reshape(n, c, hp * wp).gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


def _reverse(form: torch.Tensor, size: int) -> torch.Tensor:
    """The form of size - 1 - (the position `form` gives)."""
    return torch.tensor([0, 0, size - 1], device=form.device) - form


def _pick(k: torch.Tensor, *by_k: torch.Tensor) -> torch.Tensor:
    """by_k[k] per image (k of shape (N, 1), 0..3)."""
    return torch.where(k == 1, by_k[1], torch.where(k == 2, by_k[2], torch.where(k == 3, by_k[3], by_k[0])))


def flip(x: torch.Tensor, which: torch.Tensor, dim: int) -> torch.Tensor:
    """Images where `which` (N,) is true mirrored along `dim` (3: left-right, 2: top-bottom)."""
    return move(x, mirror=which) if dim == 3 else move(x, upside_down=which)


def rot90(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Image i turned by k[i] quarter turns exactly as torch.rot90(x[i], k[i], (1, 2)) would
    (a non-square batch may only take k 0 or 2)."""
    return move(x, turns=k)


def pad_crop(x: torch.Tensor, padding: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Every image padded with `padding` black pixels, then an H x W window taken back from
    (top[i], left[i]) of the padded image i."""
    return move(x, padding=padding, top=top, left=left)


def affine(x: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor, shift_x: torch.Tensor,
           shift_y: torch.Tensor, read_at: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Each image rotated by degrees[i], scaled by scale[i] (above 1 zooms in) and moved by
    shift_x[i], shift_y[i] (fractions of its width and height), in one bilinear resampling.
    `read_at` (dx, dy) then has output pixel (r, c) read what would have been at (r + dy, c + dx):
    pad_crop's window, folded in."""
    grid = affine_grid(x, degrees, scale, shift_x, shift_y, read_at)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(x: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor, shift_x: torch.Tensor,
                shift_y: torch.Tensor, read_at: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Where `affine` reads each output pixel of the batch `x`: grid_sample's (N, H, W, 2) grid."""
    return theta_grid(x, affine_theta(x, degrees, scale, shift_x, shift_y, read_at))


def affine_theta(x: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor, shift_x: torch.Tensor,
                 shift_y: torch.Tensor, read_at: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """`affine`'s map per image as (N, 6) [a, b, c, d, tx, ty]: output point (u, v) reads the input at
    (a u + b v + tx, c u + d v + ty), both in grid_sample's -1..1 coordinates."""
    _, _, h, w = x.shape
    angle = degrees * (math.pi / 180)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid's coordinates run -1..1 on both axes: a rotation of the picture (not of that
    # square) is stretched by the aspect ratio on the off-diagonal.
    a, b, c, d = cos, -sin * (h / w), sin * (w / h), cos
    tx, ty = -2 * shift_x, -2 * shift_y
    if read_at is not None:
        dx, dy = read_at[0] * (2 / w), read_at[1] * (2 / h)
        tx, ty = tx + a * dx + b * dy, ty + c * dx + d * dy
    return torch.stack([a, b, c, d, tx, ty], 1)


def theta_grid(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """grid_sample's (N, H, W, 2) grid for the maps `theta` (affine_theta) over the batch `x`."""
    n, _, h, w = x.shape
    # affine_grid(theta, align_corners=False) by broadcasting: its batched matmul is several
    # times slower on a CPU than these few whole-batch operations.
    us = ((torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    vs = ((torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    a, b, c, d, tx, ty = (t.view(n, 1, 1).to(x.dtype) for t in theta.unbind(1))
    return torch.stack([a * us + b * vs + tx, c * us + d * vs + ty], -1)


# --- boxes: (N, K, 6) rows [class, x1, y1, x2, y2, flag] in pixels, moved as the pixels are -------

MIN_BOX_SHARE = 0.25  # a moved box keeps a row while at least this share of it stays in the image


def move_boxes(boxes: torch.Tensor, width: int, height: int, *, mirror: torch.Tensor | None = None,
               upside_down: torch.Tensor | None = None, turns: torch.Tensor | None = None, padding: int = 0,
               top: torch.Tensor | None = None, left: torch.Tensor | None = None) -> torch.Tensor:
    """The boxes of the images `move` changes with the same arguments: flipped top-bottom, then
    left-right, turned, then shifted by the crop window (move's pipeline, read from its source side)."""
    x1, y1, x2, y2 = boxes[..., 1], boxes[..., 2], boxes[..., 3], boxes[..., 4]
    if upside_down is not None:
        y1, y2 = _where(upside_down, height - y2, y1), _where(upside_down, height - y1, y2)
    if mirror is not None:
        x1, x2 = _where(mirror, width - x2, x1), _where(mirror, width - x1, x2)
    if turns is not None:
        x1, y1, x2, y2 = _turned(x1, y1, x2, y2, turns % 4, width, height)
    if top is not None and left is not None:
        dx, dy = (padding - left).view(-1, 1).to(boxes.dtype), (padding - top).view(-1, 1).to(boxes.dtype)
        x1, x2, y1, y2 = x1 + dx, x2 + dx, y1 + dy, y2 + dy
    return torch.stack([boxes[..., 0], x1, y1, x2, y2, boxes[..., 5]], -1)


def _where(which: torch.Tensor, moved: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    return torch.where(which.view(-1, 1), moved, kept)


def _turned(x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor, k: torch.Tensor,
            width: int, height: int) -> tuple[torch.Tensor, ...]:
    """Boxes of images turned k quarter turns as torch.rot90(.., (1, 2)) turns them: one turn takes the
    point (x, y) to (y, W - x) (square images; others only take 0 or 2 turns)."""
    k = k.view(-1, 1)
    by_k = [(x1, y1, x2, y2), (y1, width - x2, y2, width - x1), (width - x2, height - y2, width - x1, height - y1),
            (height - y2, x1, height - y1, x2)]
    return tuple(torch.where(k == 1, by_k[1][i], torch.where(k == 2, by_k[2][i], torch.where(k == 3, by_k[3][i],
                                                                                              by_k[0][i])))
                 for i in range(4))


def affine_boxes(boxes: torch.Tensor, theta: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Each box's four corners taken where the affine resampling `theta` (affine_theta) puts their
    pixels, and the box that encloses them."""
    a, b, c, d, tx, ty = (t.view(-1, 1, 1).to(boxes.dtype) for t in theta.unbind(1))
    xs = boxes[..., [1, 3, 3, 1]] * (2 / width) - 1  # (N, K, 4) corners in -1..1
    ys = boxes[..., [2, 2, 4, 4]] * (2 / height) - 1
    # The output point (u, v) reads the input at A (u, v) + t: a corner goes to A^-1 (corner - t).
    det = a * d - b * c
    us = (d * (xs - tx) - b * (ys - ty)) / det
    vs = (-c * (xs - tx) + a * (ys - ty)) / det
    px, py = (us + 1) * (width / 2), (vs + 1) * (height / 2)
    return torch.stack([boxes[..., 0], px.amin(-1), py.amin(-1), px.amax(-1), py.amax(-1), boxes[..., 5]], -1)


def clip_boxes(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Boxes clipped to the image; those left with under MIN_BOX_SHARE of their area inside, or under
    a pixel a side, become padding rows (class -1, all else 0). Padding rows stay padding."""
    x1, y1, x2, y2 = boxes[..., 1], boxes[..., 2], boxes[..., 3], boxes[..., 4]
    area = (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0)
    cx1, cy1, cx2, cy2 = x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)
    inside = (cx2 - cx1) * (cy2 - cy1)
    keep = (boxes[..., 0] != -1) & (cx2 - cx1 >= 1) & (cy2 - cy1 >= 1) & (inside >= MIN_BOX_SHARE * area)
    clipped = torch.stack([boxes[..., 0], cx1, cy1, cx2, cy2, boxes[..., 5]], -1)
    padding = torch.tensor([-1.0, 0, 0, 0, 0, 0], dtype=boxes.dtype, device=boxes.device)
    return torch.where(keep.unsqueeze(-1), clipped, padding)


def resample_masks(masks: torch.Tensor, grid: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """(N, H, W) masks read at `grid` by nearest neighbour; pixels read from outside are `ignore_index`.
    Sampled as mask + 1 so that grid_sample's zero fill marks them (class indices are exact in float)."""
    shifted = masks.unsqueeze(1).to(grid.dtype) + 1
    read = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False).squeeze(1)
    return torch.where(read > 0, read - 1, float(ignore_index)).to(masks.dtype)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in 0..1 to HSV in 0..1 (hue as a fraction of the circle). A grey pixel's
    hue is whatever its sector gives (colorsys says 0): with no saturation, no hue shows."""
    r, g, b = x.unbind(1)
    high, low = x.amax(1), x.amin(1)
    delta = high - low
    red, green = high == r, high == g
    part = torch.where(red, g - b, torch.where(green, b - r, r - g)) / delta.clamp_min(1e-12)
    sector = torch.where(red, 0.0, torch.where(green, 2.0, 4.0))
    hue = ((part + sector) / 6).remainder_(1.0)
    return torch.stack([hue, delta / high.clamp_min(1e-12), high], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # The closed form: channel n (red 5, green 3, blue 1) is v - v s clamp(min(k, 4 - k), 0, 1)
    # with k = (n + 6 h) mod 6; a handful of whole-batch operations, no per-sector selection.
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1) + hue * 6).remainder_(6)
    return value - value * saturation * torch.minimum(k, 4 - k).clamp_(0, 1)


def hsv_shift(x: torch.Tensor, hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Image i's hue turned by hue[i] (a fraction of the circle), its saturation and value moved by
    saturation[i] and value[i] (fractions of their range, clamped to it)."""
    hsv = rgb_to_hsv(x)
    h = (hsv[:, 0] + hue.view(-1, 1, 1)) % 1.0
    s = (hsv[:, 1] + saturation.view(-1, 1, 1)).clamp(0, 1)
    v = (hsv[:, 2] + value.view(-1, 1, 1)).clamp(0, 1)
    return hsv_to_rgb(torch.stack([h, s, v], 1))


def mean_to_subtract(mode: str, mean_image: torch.Tensor) -> torch.Tensor:
    """What the job subtracts from every (C, H, W) image, by its `mean` setting, as a full (C, H, W)
    tensor, so whoever reads mean.safetensors (inference, export, predict.py) subtracts the same."""
    if mode == "pixel":
        return mean_image.mean(dim=(1, 2), keepdim=True).expand_as(mean_image).contiguous()
    if mode == "none":
        return torch.zeros_like(mean_image)
    return mean_image
