"""The jax backend's one export format: a zip archive with the snapshot's safetensors weights, its
mean, model.json (with the resolved layers) and a predict.py that needs only jax, safetensors,
Pillow and numpy (training/jax/archive_predict.py). The archive is checked before it is kept: its
own predict.py, loaded from the written files, must agree with the backend's model on sample inputs."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from networks.spec import PlannedLayer, plan_network
from training.contract import TrainingFailed
from training.jax import archive_predict
from training.jax.models import Loaded

SAMPLES = 8
TOLERANCE = 1e-4
INPUT_DOC = "uint8 pixels (N, C, H, W), preprocessed as README.md says"


def export_snapshot(snapshot: Path, fmt: str, target: Path) -> dict[str, Any]:
    if fmt != "archive":
        raise TrainingFailed(f"The jax backend cannot export {fmt}; it exports an archive.")
    folder = snapshot.parent.parent
    meta = json.loads((folder / "model.json").read_text())
    plan = plan_network(meta["network_spec"], tuple(meta["input_shape"]), len(meta["classes"]))
    epoch_file = snapshot.with_name(snapshot.name.removesuffix(".safetensors") + ".json")
    epoch = json.loads(epoch_file.read_text()).get("epoch") if epoch_file.exists() else None
    meta = {**meta, "layers": [_planned(layer) for layer in plan], "epoch": epoch}
    samples = np.random.default_rng(0).integers(0, 256, size=(SAMPLES, *meta["input_shape"]), dtype=np.uint8)
    expected = Loaded(snapshot)(samples)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(snapshot, archive_predict.WEIGHTS, compress_type=zipfile.ZIP_STORED)
            archive.write(folder / "mean.safetensors", "mean.safetensors", compress_type=zipfile.ZIP_STORED)
            archive.writestr("model.json", json.dumps(meta, indent=2))
            archive.writestr("README.md", _readme(meta))
            archive.writestr("predict.py", Path(archive_predict.__file__).read_text())
        difference = _check(partial, samples, expected)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return {"format": fmt, "file_name": target.name, "size_bytes": target.stat().st_size, "max_abs_diff": difference,
            "checked_inputs": SAMPLES, "input": INPUT_DOC, "input_shape": meta["input_shape"], "classes": meta["classes"]}


def _check(archive_path: Path, samples: np.ndarray, expected: np.ndarray) -> float:
    with tempfile.TemporaryDirectory(prefix="jax-archive-check-") as scratch:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(scratch)
        classify, _ = archive_predict.load(Path(scratch))
        difference = float(np.abs(classify(samples) - expected).max())
    if not difference <= TOLERANCE:  # NaN included
        raise TrainingFailed(f"The archive's predict.py differs from the model by {difference:.3g} on sample inputs "
                             f"(more than {TOLERANCE:g}); it was not kept.")
    return difference


def _planned(layer: PlannedLayer) -> dict[str, Any]:
    return {"type": layer.type, "args": {k: v for k, v in layer.args.items() if k != "layers"},
            "input_shape": list(layer.input_shape), "output_shape": list(layer.output_shape),
            "shortcut_stride": list(layer.shortcut_stride) if layer.shortcut_stride else None,
            "body": [_planned(inner) for inner in layer.body]}


def _readme(meta: dict[str, Any]) -> str:
    channels, height, width = meta["input_shape"]
    p = meta["preprocessing"]
    epoch = f" at epoch {meta['epoch']:g}" if meta.get("epoch") is not None else ""
    return f"""# Exported model{epoch} (trained with the workbench's JAX backend)

{len(meta['classes'])} classes: {', '.join(meta['classes'])}.

## Files
- `weights.safetensors`: the network's weights, named and laid out as PyTorch would (NCHW, OIHW kernels).
- `model.json`: the network spec, its resolved `layers`, the input shape {meta['input_shape']}, the classes, the preprocessing.
- `mean.safetensors`: what is subtracted from every image (tensor `mean`, float32, shape {meta['input_shape']}).
- `predict.py`: classifies image files; needs only jax, safetensors, Pillow and numpy:
  `python predict.py image.png [more.jpg ...] [--json]`.

## Preprocessing
1. Open the image and convert it to {"RGB" if channels == 3 else "grayscale (L)"}.
2. Resize it to {width}x{height} with resize mode `{p.get('resize_mode', 'squash')}` (bilinear).
3. Lay it out as (channels, height, width) uint8; a batch is (N, C, H, W).
4. Subtract `mean.safetensors`, divide by 255; the network returns logits, softmax gives probabilities.
"""
