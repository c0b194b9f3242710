"""Classify images, segment them, or detect objects in them, with an exported workbench model. Needs
only torch, safetensors, Pillow and numpy.

    python predict.py image.png [more.jpg ...] [--top 5] [--json]
    python predict.py image.png --out mask.png [--json]    (a segmentation model)
    python predict.py image.png [more.jpg ...] [--score-threshold 0.3] [--json]    (a detection model)

A detection model prints each image's boxes (label, score, [x1, y1, x2, y2] in the image's own
pixels), best first, those scoring under --score-threshold left out.

A segmentation model writes each image's mask: a PNG of class indices (8-bit grey; 16-bit past
256 classes) at the image's own size; with several images, --out is a folder (one <name>.png each).

This file is copied as-is into every exported archive as predict.py, beside model.json,
mean.safetensors and weights.safetensors (or model.pt, an int8 TorchScript model). It must stay
self-contained: it never imports the workbench, so the archive works on a machine that has never
seen it. The network is rebuilt from model.json's "layers": the workbench's plan of the spec, with
every layer's input size resolved.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file
from torch import nn

HERE = Path(__file__).resolve().parent
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")


# --- the network ----------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """activation(layers(x) + shortcut(x)); names match the workbench's, so the weights load."""

    def __init__(self, layers: nn.Sequential, shortcut: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        self.layers = layers
        self.shortcut = shortcut
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.layers(x) + self.shortcut(x))


class ConcatSkip(nn.Module):
    """cat([x, layers(x)], channels): a U-Net's skip connection; names match the workbench's."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


def build_network(layers: list[dict[str, Any]]) -> nn.Sequential:
    return nn.Sequential(*(_module(layer) for layer in layers))


def _size(value: int | list[int]) -> int | tuple[int, int]:
    return value if isinstance(value, int) else (value[0], value[1])


def _conv2d(a: dict[str, Any], channels: int) -> nn.Module:
    padding = a["padding"] if a["padding"] == "same" else _size(a["padding"])
    return nn.Conv2d(channels, a["out_channels"], _size(a["kernel_size"]), stride=_size(a["stride"]),
                     padding=padding, bias=a["bias"], groups=a["groups"])


def _residual(layer: dict[str, Any]) -> nn.Module:
    shortcut: nn.Module = nn.Identity()
    if layer["shortcut_stride"] is not None:
        channels_in, channels_out = layer["input_shape"][0], layer["output_shape"][0]
        shortcut = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 1, stride=tuple(layer["shortcut_stride"]), bias=False),
            nn.BatchNorm2d(channels_out),
        )
    activation = nn.ReLU() if layer["args"]["activation"] == "relu" else nn.Identity()
    return ResidualBlock(build_network(layer["body"]), shortcut, activation)


def _conv_transpose2d(a: dict[str, Any], channels: int) -> nn.Module:
    return nn.ConvTranspose2d(channels, a["out_channels"], _size(a["kernel_size"]), stride=_size(a["stride"]),
                              padding=_size(a["padding"]), output_padding=_size(a["output_padding"]), bias=a["bias"])


def _upsample(layer: dict[str, Any]) -> nn.Module:
    # To the planned output size, as the workbench builds it: the same pixels, whatever the spec said.
    mode = layer["args"]["mode"]
    return nn.Upsample(size=tuple(layer["output_shape"][1:]), mode=mode, align_corners=False if mode == "bilinear" else None)


def _module(layer: dict[str, Any]) -> nn.Module:
    t, a, c = layer["type"], layer["args"], layer["input_shape"][0]
    if t == "residual":
        return _residual(layer)
    if t == "concat_skip":
        return ConcatSkip(build_network(layer["body"]))
    makers = {
        "conv2d": lambda: _conv2d(a, c),
        "linear": lambda: nn.Linear(c, a["out_features"], bias=a["bias"]),
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(a["negative_slope"]),
        "gelu": nn.GELU,
        "elu": lambda: nn.ELU(a["alpha"]),
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "maxpool2d": lambda: nn.MaxPool2d(_size(a["kernel_size"]), _size(a["stride"]), _size(a["padding"])),
        "avgpool2d": lambda: nn.AvgPool2d(_size(a["kernel_size"]), _size(a["stride"]), _size(a["padding"])),
        "adaptive_avgpool2d": lambda: nn.AdaptiveAvgPool2d(_size(a["output_size"])),
        "batchnorm2d": lambda: nn.BatchNorm2d(c),
        "batchnorm1d": lambda: nn.BatchNorm1d(c),
        "dropout": lambda: nn.Dropout(a["p"]),
        "dropout2d": lambda: nn.Dropout2d(a["p"]),
        "flatten": nn.Flatten,
        "conv_transpose2d": lambda: _conv_transpose2d(a, c),
        "upsample": lambda: _upsample(layer),
    }
    if t not in makers:
        raise ValueError(f"unknown layer type {t!r} in model.json")
    return makers[t]()


WEIGHTS = "weights.safetensors"  # a state dict for the network model.json describes
SCRIPTED = "model.pt"  # or an int8-quantized model, as TorchScript (from the workbench's Compress)


def load(folder: Path = HERE) -> tuple[nn.Module, torch.Tensor, dict[str, Any]]:
    """The model in eval mode, its mean image and model.json, from the archive's files."""
    meta = json.loads((folder / "model.json").read_text())
    if (folder / SCRIPTED).exists():
        engines = torch.backends.quantized.supported_engines  # int8 kernels: x86 or fbgemm on PCs, qnnpack on ARM
        torch.backends.quantized.engine = next(e for e in ("x86", "fbgemm", "qnnpack", *engines) if e in engines)
        model = torch.jit.load(str(folder / SCRIPTED), map_location="cpu")
    else:
        model = build_network(meta["layers"])
        model.load_state_dict(load_file(folder / WEIGHTS))
    mean = load_file(folder / meta["preprocessing"]["mean_file"])["mean"]
    return model.eval(), mean, meta


# --- preprocessing: exactly as the workbench prepared its dataset -----------------------------

def load_image(path: Path | str, prep: dict[str, Any]) -> np.ndarray:
    """One image file to (channels, height, width) uint8, resized by the dataset's resize mode."""
    return load_image_sized(path, prep)[0]


def load_image_sized(path: Path | str, prep: dict[str, Any]) -> tuple[np.ndarray, tuple[int, int]]:
    """`load_image`, and the image's own (width, height) as a viewer shows it (EXIF orientation applied)."""
    mode = "RGB" if prep["channels"] == 3 else "L"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(path, formats=FORMATS)
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # a quarter turn swaps width and height
        own = (img.height, img.width) if turned else (img.width, img.height)
        if img.format == "JPEG":
            img.draft(mode, (prep["width"] * 2, prep["height"] * 2))
        img = (ImageOps.exif_transpose(img) or img).convert(mode)
    arr = resize(img, prep["width"], prep["height"], prep["resize_mode"],
                 np.random.default_rng(prep.get("seed", 0)))
    return (arr[np.newaxis] if arr.ndim == 2 else arr.transpose(2, 0, 1)), own


def resize(img: Image.Image, w: int, h: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """DIGITS' modes: squash (stretch), crop (fill then centre-crop), fill (fit, pad with noise),
    half_crop (halfway between the two)."""
    if mode == "squash":
        return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))
    arr = np.asarray(img.resize(scaled_size(img.width, img.height, w, h, mode), Image.Resampling.BILINEAR))
    top, left = max(0, (arr.shape[0] - h) // 2), max(0, (arr.shape[1] - w) // 2)
    arr = arr[top: top + h, left: left + w]
    if arr.shape[0] == h and arr.shape[1] == w:
        return arr
    out = rng.integers(0, 256, size=(h, w) + arr.shape[2:], dtype=np.uint8)
    top, left = (h - arr.shape[0]) // 2, (w - arr.shape[1]) // 2
    out[top: top + arr.shape[0], left: left + arr.shape[1]] = arr
    return out


def scaled_size(width: int, height: int, w: int, h: int, mode: str) -> tuple[int, int]:
    """The size a width x height image is scaled to before the centre crop or fill to w x h."""
    if mode == "squash":
        return w, h
    ratios = {"crop": min, "fill": max, "half_crop": lambda a, b: (a + b) / 2}
    ratio = ratios[mode](width / w, height / h)
    return max(1, round(width / ratio)), max(1, round(height / ratio))


def classify(model: nn.Module, mean: torch.Tensor, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) for uint8 images (N, C, H, W): (pixels - mean) / 255, softmax."""
    with torch.inference_mode():
        x = (torch.from_numpy(np.array(images)).float() - mean) / 255.0  # a writable copy: torch warns on read-only arrays
        return torch.softmax(model(x), dim=1).numpy()


# --- segmentation: a class per pixel, put back over the image ------------------------------------

def segment(model: nn.Module, mean: torch.Tensor, images: np.ndarray) -> np.ndarray:
    """Masks of class indices (N, H, W) at the network's size for uint8 images (N, C, H, W)."""
    with torch.inference_mode():
        x = (torch.from_numpy(np.array(images)).float() - mean) / 255.0
        return model(x).argmax(dim=1).numpy()


def mask_to_image(mask: np.ndarray, own: tuple[int, int], scaled: tuple[int, int]) -> np.ndarray:
    """A mask at the network's size laid over the image it came from: the centre crop or fill undone
    (the image was scaled to `scaled` first), then resized to its `own` (width, height), nearest
    neighbour. Where the crop cut the image off, the classes at the nearest edge carry on."""
    for axis, size in ((0, scaled[1]), (1, scaled[0])):
        have = mask.shape[axis]
        if size >= have:
            widths = [(0, 0), (0, 0)]
            widths[axis] = ((size - have) // 2, size - have - (size - have) // 2)
            mask = np.pad(mask, widths, mode="edge")
        else:
            mask = np.take(mask, np.arange((have - size) // 2, (have - size) // 2 + size), axis=axis)
    mask = mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)
    return np.array(Image.fromarray(mask).resize(own, Image.Resampling.NEAREST))


def segment_files(paths: list[Path], out: Path, model: nn.Module, mean: torch.Tensor,
                  meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Each image's mask written to `out` (a file for one image, else a folder), with its class areas."""
    prep, classes = meta["preprocessing"], meta["classes"]
    if len(paths) > 1:
        out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in paths:
        pixels, own = load_image_sized(path, prep)
        scaled = scaled_size(own[0], own[1], prep["width"], prep["height"], prep["resize_mode"])
        mask = mask_to_image(segment(model, mean, pixels[np.newaxis])[0], own, scaled)
        target = out / f"{path.stem}.png" if len(paths) > 1 else out
        Image.fromarray(mask).save(target, format="PNG")
        counts = np.bincount(mask.ravel().astype(np.int64), minlength=len(classes))
        results.append({"file": str(path), "mask": str(target), "width": own[0], "height": own[1],
                        "class_pixels": {name: float(counts[i] / mask.size) for i, name in enumerate(classes)}})
    return results


# --- detection: CenterNet's head decoded into boxes, put back on the image ----------------------

STRIDE = 4  # the head's cells, in input pixels
DETECTIONS = 100


def detect(model: nn.Module, mean: torch.Tensor, images: np.ndarray, classes: int,
           top: int = DETECTIONS) -> np.ndarray:
    """(N, top, 6) rows [x1, y1, x2, y2, score, class] in the network input's pixels, best first
    (padding rows: score 0, class -1), for uint8 images (N, C, H, W). The head (N, classes + 4,
    ceil(H / 4), ceil(W / 4)) holds per cell one heatmap logit per class, the box's width and height
    in input pixels, and its centre's offset in the cell: sigmoid, a 3x3 max-pool keeps each local
    peak, the best `top` peaks of all classes and cells become boxes."""
    with torch.inference_mode():
        x = (torch.from_numpy(np.array(images)).float() - mean) / 255.0
        raw = model(x).float()
    n, _, h, w = raw.shape
    heat = torch.sigmoid(raw[:, :classes])
    peaks = heat * (torch.nn.functional.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    k = min(top, classes * h * w)
    scores, index = peaks.flatten(1).topk(k, dim=1)
    cls, cell = index // (h * w), index % (h * w)
    values = raw[:, classes:classes + 4].flatten(2).gather(2, cell.unsqueeze(1).expand(-1, 4, -1))
    size, offset = values[:, :2].clamp_min(0), values[:, 2:]
    cx, cy = ((cell % w).float() + offset[:, 0]) * STRIDE, ((cell // w).float() + offset[:, 1]) * STRIDE
    height, width = x.shape[2], x.shape[3]
    rows = torch.stack([(cx - size[:, 0] / 2).clamp(0, width), (cy - size[:, 1] / 2).clamp(0, height),
                        (cx + size[:, 0] / 2).clamp(0, width), (cy + size[:, 1] / 2).clamp(0, height),
                        scores, cls.float()], -1)
    out = np.zeros((n, top, 6), np.float32)
    out[:, :, 5] = -1
    out[:, :k] = np.where((scores > 0).unsqueeze(-1).numpy(), rows.numpy(), out[:, :k])
    return out


def boxes_to_image(rows: np.ndarray, own: tuple[int, int], scaled: tuple[int, int],
                   fitted: tuple[int, int]) -> np.ndarray:
    """Boxes (x1, y1, x2, y2 columns of `rows`) in the network input's pixels (`fitted`: its width
    and height) put on the image they came from: the centre crop or fill undone (the image was scaled
    to `scaled` first), then scaled to its `own` (width, height) and clipped to it."""
    out = rows.astype(np.float64).copy()
    for axis, (own_size, scaled_size_, fitted_size) in enumerate(zip(own, scaled, fitted)):
        cut = max(0, (scaled_size_ - fitted_size) // 2)  # the crop's first row or column
        pad = (fitted_size - min(scaled_size_, fitted_size)) // 2  # the fill's
        for column in (axis, axis + 2):
            out[:, column] = np.clip((out[:, column] + cut - pad) * own_size / scaled_size_, 0, own_size)
    return out


def detect_files(paths: list[Path], model: nn.Module, mean: torch.Tensor, meta: dict[str, Any],
                 threshold: float) -> list[dict[str, Any]]:
    prep, classes = meta["preprocessing"], meta["classes"]
    results = []
    for path in paths:
        pixels, own = load_image_sized(path, prep)
        scaled = scaled_size(own[0], own[1], prep["width"], prep["height"], prep["resize_mode"])
        rows = detect(model, mean, pixels[np.newaxis], len(classes))[0]
        rows = rows[(rows[:, 4] >= threshold) & (rows[:, 5] >= 0)]
        placed = boxes_to_image(rows[:, :4], own, scaled, (prep["width"], prep["height"]))
        # A box lying wholly in the fill (nothing of it on the image) is left out.
        boxes = [{"label": classes[int(row[5])], "class_index": int(row[5]), "score": float(row[4]),
                  "box": [round(float(v), 2) for v in box]} for row, box in zip(rows, placed)
                 if box[2] > box[0] and box[3] > box[1]]
        results.append({"file": str(path), "width": own[0], "height": own[1], "boxes": boxes})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify, segment or detect objects in images with this exported model.")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=5, help="how many classes to show per image")
    parser.add_argument("--out", type=Path, help="segmentation: where the mask PNG goes (a folder for several images)")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="detection: leave out boxes scoring under this (default 0.3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    model, mean, meta = load()
    if meta.get("task") == "detection":
        results = detect_files(args.images, model, mean, meta, args.score_threshold)
        for item in results if not args.json else []:
            shown = "; ".join(f"{b['label']} {b['score']:.3f} {b['box']}" for b in item["boxes"]) or "no boxes"
            print(f"{item['file']} ({item['width']}x{item['height']}): {shown}")
        if args.json:
            print(json.dumps(results, indent=2))
        return 0
    if meta.get("task") == "segmentation":
        if args.out is None:
            parser.error("this is a segmentation model: say where its masks go with --out mask.png")
        results = segment_files(args.images, args.out, model, mean, meta)
        for item in results if not args.json else []:
            shares = ", ".join(f"{name} {share:.1%}" for name, share in item["class_pixels"].items())
            print(f"{item['file']}: {item['mask']} ({item['width']}x{item['height']}; {shares})")
        if args.json:
            print(json.dumps(results, indent=2))
        return 0
    classes = meta["classes"]
    results = []
    for path in args.images:
        probabilities = classify(model, mean, load_image(path, meta["preprocessing"])[np.newaxis])[0]
        order = np.argsort(-probabilities, kind="stable")[: args.top]
        results.append({"file": str(path), "predictions": [
            {"label": classes[i], "probability": float(probabilities[i])} for i in order]})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for item in results:
            shown = ", ".join(f"{p['label']} {p['probability']:.4f}" for p in item["predictions"])
            print(f"{item['file']}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
