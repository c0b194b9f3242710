"""Look inside a snapshot: every layer's activations for one image, and its weight statistics.

Imported by workers only (it loads torch). The payload stays bounded whatever the network:
at most 32 channel maps per layer, each at most 64 px a side, and 64 values of a 1-D output.
"""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from networks.spec import summarize
from training.torch.detection import decode
from training.torch.models import head_outputs, load_snapshot, model_folder

MAX_MAPS = 32
MAX_MAP_SIDE = 64
MAX_VALUES = 64
HISTOGRAM_BINS = 30
TOP_K = 5


def inspect_snapshot(snapshot: Path, image: np.ndarray) -> dict[str, Any]:
    """Per-layer activations for one preprocessed uint8 (C, H, W) image, weight statistics, top-5."""
    model, mean = load_snapshot(snapshot)
    meta = json.loads((model_folder(snapshot) / "model.json").read_text())
    paths = layer_paths(meta)
    outputs = _run_with_hooks(model, paths, (torch.from_numpy(np.ascontiguousarray(image)).float() - mean) / 255.0)
    layers = [_layer(path, model.get_submodule(path), outputs[path]) for path in paths]
    if meta.get("task") == "detection":
        return {"layers": layers, "predictions": _top_boxes(outputs[paths[-1]], meta["classes"], image.shape[1:])}
    return {"layers": layers, "predictions": _top(outputs[paths[-1]], meta["classes"])}


def layer_paths(meta: dict[str, Any]) -> list[str]:
    """The summary table's rows, which are also the model's submodule names (nested bodies included)."""
    summary = summarize(meta["network_spec"], tuple(meta["input_shape"]), head_outputs(meta))
    return [row.path for row in summary.rows]


def _run_with_hooks(model: nn.Module, paths: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}

    def keep(path: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            outputs[path] = output.detach()[0].clone()
        return hook

    handles = [model.get_submodule(path).register_forward_hook(keep(path)) for path in paths]
    try:
        with torch.inference_mode():
            model(x.unsqueeze(0))
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _top(logits: torch.Tensor, classes: list[str]) -> list[dict[str, Any]]:
    probabilities = torch.softmax(logits.float(), dim=0)
    values, index = probabilities.topk(min(TOP_K, len(classes)))
    return [{"label": classes[i], "probability": float(p)} for p, i in zip(values.tolist(), index.tolist())]


def _top_boxes(head: torch.Tensor, classes: list[str], size: tuple[int, ...]) -> list[dict[str, Any]]:
    """A detector's best TOP_K boxes: label, score (as `probability`) and [x1, y1, x2, y2] in input pixels."""
    rows = decode(head.unsqueeze(0), len(classes), (int(size[0]), int(size[1])), top=TOP_K)[0]
    return [{"label": classes[int(r[5])], "probability": float(r[4]), "box": [float(v) for v in r[:4]]}
            for r in rows.tolist() if r[5] >= 0]


# --- one layer ----------------------------------------------------------------------------------

def _layer(path: str, module: nn.Module, output: torch.Tensor) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "type": type(module).__name__, "output_shape": list(output.shape),
                             "activation": tensor_stats(output), "params": {}}
    if output.dim() == 3 and output.shape[1] * output.shape[2] > 1:
        entry["maps_png"], entry["maps_shown"] = channel_grid(output)
    else:
        entry["values"] = [round(v, 6) for v in output.flatten()[:MAX_VALUES].tolist()]
    for name, parameter in module.named_parameters(recurse=False):
        entry["params"][name] = {**tensor_stats(parameter.detach()), "shape": list(parameter.shape),
                                 "histogram": histogram(parameter.detach())}
    return entry


def tensor_stats(tensor: torch.Tensor) -> dict[str, float]:
    """Mean, population std (ddof 0), min, max, element count and the fraction of exact zeros."""
    t = tensor.detach().double().flatten()
    return {"mean": float(t.mean()), "std": float(t.std(unbiased=False)) if t.numel() > 1 else 0.0,
            "min": float(t.min()), "max": float(t.max()), "count": t.numel(),
            "zeros": float((t == 0).double().mean())}


def histogram(tensor: torch.Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    values = tensor.detach().double().flatten().numpy()
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def channel_grid(output: torch.Tensor) -> tuple[str, int]:
    """Up to 32 channel maps, each stretched to its own 0..255 range, laid out in a grid; a PNG data URL."""
    maps = output[:MAX_MAPS].float()
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = (maps.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
    tiles = [_tile(m) for m in ((maps - low) / span * 255).round().byte().numpy()]
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape
    grid = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), 64, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * (height + 1), (i % columns) * (width + 1)
        grid[top:top + height, left:left + width] = tile
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), len(tiles)


def _tile(channel: np.ndarray) -> np.ndarray:
    height, width = channel.shape
    scale = MAX_MAP_SIDE / max(height, width)
    if scale >= 1:
        return channel
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(channel).resize(size, Image.Resampling.BILINEAR))
