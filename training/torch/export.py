"""Export a torch snapshot: a self-contained archive, TorchScript or ONNX, each checked on sample inputs.

TorchScript and ONNX models take float32 pixels in 0..255, (N, C, H, W), resized as the dataset was;
the mean subtraction and the division by 255 are inside the exported graph, so the file alone
classifies. Imported by workers only: it loads torch.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from networks.shapes import PlannedLayer
from networks.spec import plan_network
from training.contract import TrainingFailed
from training.torch import archive_predict
from training.torch.models import head_outputs, load_snapshot, model_folder

TOLERANCE = 1e-3  # largest logit difference from the torch model that an export may show
SAMPLES = 8
INPUT_DOC = "float32 pixels in 0..255, shape (N, C, H, W), resized as model.json's preprocessing says"


class Preprocessed(nn.Module):
    """The network with the dataset's normalisation in front: (pixels - mean) / 255 → logits."""

    def __init__(self, model: nn.Module, mean: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.clone())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model((pixels - self.mean) / 255.0)


def export_snapshot(snapshot: Path, fmt: str, target: Path) -> dict[str, Any]:
    """Write `snapshot` as `fmt` to `target` (atomically); return its size and the checks it passed."""
    if fmt not in _WRITERS:
        raise TrainingFailed(f"Unknown export format '{fmt}'; choose one of {', '.join(_WRITERS)}.")
    meta = _metadata(snapshot)
    model, mean = load_snapshot(snapshot)
    reference = Preprocessed(model, mean).eval()
    samples = sample_inputs(tuple(meta["input_shape"]))
    with torch.inference_mode():
        expected = reference(samples).numpy()
    with _atomic(target) as partial:
        run = _WRITERS[fmt](snapshot, meta, reference, samples, partial)
        difference = float(np.abs(run(samples) - expected).max())
        if not difference <= TOLERANCE:  # NaN included
            raise TrainingFailed(f"The {fmt} export differs from the torch model by {difference:.3g} on "
                                 f"sample inputs (more than {TOLERANCE:g}); it was not kept.")
    return {"format": fmt, "file_name": target.name, "size_bytes": target.stat().st_size,
            "max_abs_diff": difference, "checked_inputs": SAMPLES, "input": INPUT_DOC,
            "input_shape": meta["input_shape"], "classes": meta["classes"]}


def sample_inputs(shape: tuple[int, ...], count: int = SAMPLES, seed: int = 0) -> torch.Tensor:
    """Random uint8 images as float pixels, the exported models' input."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)).float()


@contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """A scratch path that replaces `target` only when the body succeeds: a download never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        yield partial
        if partial.exists():
            os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# The job's `mean` setting (model.json's preprocessing.mean); mean.safetensors already holds the result.
_MEAN_DOC = {"image": "the training set's mean image (`mean`: image).",
             "pixel": "the training set's per-channel means, repeated over the image (`mean`: pixel).",
             "none": "zeros: nothing is subtracted (`mean`: none)."}
_MEAN_STEP = {"image": "Subtract the mean image (`mean.safetensors`), then divide by 255.",
              "pixel": "Subtract the per-channel means (`mean.safetensors`, as it is), then divide by 255.",
              "none": "Divide by 255 (the job subtracts no mean: `mean.safetensors` is zeros)."}


def _metadata(snapshot: Path) -> dict[str, Any]:
    meta = json.loads((model_folder(snapshot) / "model.json").read_text())
    plan = plan_network(meta["network_spec"], tuple(meta["input_shape"]), head_outputs(meta))
    return {**meta, "layers": [_planned(layer) for layer in plan], "epoch": snapshot_epoch(snapshot, meta),
            "preprocessing": {**meta["preprocessing"], "mean_file": "mean.safetensors"}}


def snapshot_epoch(snapshot: Path, meta: dict[str, Any] | None = None) -> float | None:
    """The epoch of a snapshot (from the JSON beside it), or the one a compressed model's model.json records."""
    epoch_file = snapshot.with_name(snapshot.name.removesuffix(".safetensors") + ".json")
    if epoch_file.exists():
        return json.loads(epoch_file.read_text()).get("epoch")
    return (meta or {}).get("epoch")


def _planned(layer: PlannedLayer) -> dict[str, Any]:
    """One layer of the plan as JSON, with its input shape resolved: all predict.py needs to build it."""
    return {"type": layer.type, "args": {k: v for k, v in layer.args.items() if k != "layers"},
            "input_shape": list(layer.input_shape), "output_shape": list(layer.output_shape),
            "shortcut_stride": list(layer.shortcut_stride) if layer.shortcut_stride else None,
            "body": [_planned(inner) for inner in layer.body]}


# --- writers: each writes `path` and returns a way to run what it wrote -----------------------------

Runner = Callable[[torch.Tensor], np.ndarray]


def _archive(snapshot: Path, meta: dict[str, Any], reference: nn.Module, samples: torch.Tensor,
             path: Path) -> Runner:
    # A snapshot or pruned model is a state dict (weights.safetensors); an int8 one is TorchScript (model.pt).
    weights = archive_predict.SCRIPTED if snapshot.suffix == ".pt" else archive_predict.WEIGHTS
    # Dense float32 barely deflates and deflating is slow, so it is stored; pruned weights deflate
    # well (their zeros are the saving), so they are deflated.
    squeeze = zipfile.ZIP_DEFLATED if _zero_fraction(reference) > 0.1 else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(snapshot, weights, compress_type=squeeze)
        archive.write(model_folder(snapshot) / "mean.safetensors", "mean.safetensors", compress_type=zipfile.ZIP_STORED)
        archive.writestr("model.json", json.dumps(meta, indent=2))
        archive.writestr("README.md", readme(meta, weights))
        archive.writestr("predict.py", Path(archive_predict.__file__).read_text())
    # The check loads the model with predict.py's own loader, from the files just written.
    with tempfile.TemporaryDirectory(prefix="archive-check-") as scratch:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(scratch)
        model, mean, _ = archive_predict.load(Path(scratch))
    return _torch_runner(Preprocessed(model, mean).eval())


def _zero_fraction(model: nn.Module) -> float:
    counts = [(int((p == 0).sum()), p.numel()) for p in model.parameters()]
    return sum(z for z, _ in counts) / max(sum(n for _, n in counts), 1)


def _torchscript(snapshot: Path, meta: dict[str, Any], reference: nn.Module, samples: torch.Tensor,
                 path: Path) -> Runner:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still supported
        # check_trace=False: the export is checked below against the torch model on all the samples.
        traced = torch.jit.trace(reference, samples[:1], check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"model.json": json.dumps(_facts(meta))})
        return _torch_runner(torch.jit.load(str(path)))


def _onnx(snapshot: Path, meta: dict[str, Any], reference: nn.Module, samples: torch.Tensor,
          path: Path) -> Runner:
    import onnx
    import onnxruntime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated but needs no onnxscript
        torch.onnx.export(onnx_friendly(reference, samples[:1]), (samples[:1],), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    exported = onnx.load(str(path))
    onnx.checker.check_model(exported)
    for key, value in _facts(meta).items():
        exported.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(exported, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["logits"], {"input": x.numpy()})[0]


class FixedAdaptiveAvgPool(nn.Module):
    """Adaptive average pooling for one known input size, as a matrix product: the ONNX exporter
    cannot export adaptive pooling whose output size does not divide the input size."""

    def __init__(self, input_size: tuple[int, int], output_size: tuple[int, int]) -> None:
        super().__init__()
        (h, w), (oh, ow) = input_size, output_size
        weights = torch.zeros(h, w, oh, ow)
        for i in range(oh):
            for j in range(ow):
                rows = slice(i * h // oh, -(-(i + 1) * h // oh))
                cols = slice(j * w // ow, -(-(j + 1) * w // ow))
                weights[rows, cols, i, j] = 1.0 / ((rows.stop - rows.start) * (cols.stop - cols.start))
        self.register_buffer("weights", weights.reshape(h * w, oh * ow))
        self.output_size = (oh, ow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(2) @ self.weights).unflatten(2, self.output_size)


def onnx_friendly(model: nn.Module, sample: torch.Tensor) -> nn.Module:
    """A copy of the model with every adaptive pooling that ONNX cannot express made fixed-size."""
    model = copy.deepcopy(model)
    sizes: dict[str, tuple[int, int]] = {}
    pools = {name: m for name, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=name: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
             for name, m in pools.items()]
    with torch.inference_mode():
        model(sample)
    for hook in hooks:
        hook.remove()
    for name, pool in pools.items():
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        out = tuple(size or given for size, given in zip(out, sizes[name]))
        if any(given % size for given, size in zip(sizes[name], out)):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, FixedAdaptiveAvgPool(sizes[name], out))
    return model


def _torch_runner(model: nn.Module) -> Runner:
    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(x).numpy()

    return run


def _facts(meta: dict[str, Any]) -> dict[str, Any]:
    return {"task": meta.get("task", "classification"), "classes": meta["classes"], "input_shape": meta["input_shape"], "input": INPUT_DOC,
            "preprocessing": meta["preprocessing"], "epoch": meta["epoch"]}


_WRITERS: dict[str, Callable[..., Runner]] = {"archive": _archive, "torchscript": _torchscript, "onnx": _onnx}


def readme(meta: dict[str, Any], weights: str = archive_predict.WEIGHTS) -> str:
    p = meta["preprocessing"]
    channels, height, width = meta["input_shape"]
    colour = "RGB" if channels == 3 else "grayscale (L)"
    epoch = f" at epoch {meta['epoch']:g}" if meta.get("epoch") is not None else ""
    if weights == archive_predict.SCRIPTED:
        weights_doc = ("- `model.pt`: the network, int8-quantized, as TorchScript (`torch.jit.load`); its int8 kernels "
                       "run on CPU\n  (x86/fbgemm engines on PCs, qnnpack on ARM). It takes step 4's normalised input.")
    else:
        weights_doc = "- `weights.safetensors`: the network's weights (a PyTorch state dict, safetensors: no pickle)."
    return f"""# Exported model{epoch}

{len(meta['classes'])} classes: {', '.join(meta['classes'])}.
{_compression_doc(meta.get("compression"))}
## Files
{weights_doc}
- `model.json`: the network spec (`network_spec`), its resolved layers (`layers`), the input shape
  `{meta['input_shape']}` (channels, height, width), the class names in output order, and the preprocessing.
- `mean.safetensors`: what is subtracted from every image (tensor `mean`, float32, shape {meta['input_shape']}):
  {_MEAN_DOC[p.get('mean', 'image')]}
{_predict_doc(meta)}
## Preprocessing (do exactly this, or predictions will be off)
1. Open the image and convert it to {colour}.
2. Resize it to {width}x{height} pixels with resize mode `{p.get('resize_mode', 'squash')}` (bilinear):
   `squash` stretches to the size; `crop` scales so the image covers the size, then centre-crops;
   `fill` scales so the image fits inside, then pads the rest with random noise; `half_crop` scales
   halfway between the two, then crops and pads.
3. Lay it out as (channels, height, width), as float32 pixel values in 0..255; a batch is (N, C, H, W).
4. {_MEAN_STEP[p.get('mean', 'image')]}
5. {_output_doc(meta)}

The TorchScript and ONNX exports of a snapshot include step 4's normalisation: they take
the float32 pixels of step 3 and return logits (a detection model: its head, decoded as step 5 says).
"""


def _predict_doc(meta: dict[str, Any]) -> str:
    if meta.get("task") == "detection":
        return ("- `predict.py`: loads the model from these files, detects objects in image files and prints each box\n"
                "  (label, score, [x1, y1, x2, y2] in the image's own pixels), best first. It needs only torch,\n"
                "  safetensors, Pillow and numpy: `python predict.py image.png [more.jpg ...] [--score-threshold 0.3] [--json]`.\n")
    if meta.get("task") == "segmentation":
        return ("- `predict.py`: loads the model from these files and segments image files, writing each mask as a PNG\n"
                "  of class indices at the image's own size (8-bit grey; 16-bit past 256 classes). It needs only torch,\n"
                "  safetensors, Pillow and numpy: `python predict.py image.png --out mask.png [--json]`\n"
                "  (several images: `--out` is a folder, one `<name>.png` each; `--json` adds each class's share).\n")
    return ("- `predict.py`: loads the model from these files and classifies image files. It needs only\n"
            "  torch, safetensors, Pillow and numpy: `python predict.py image.png [more.jpg ...] [--json]`.\n")


def _output_doc(meta: dict[str, Any]) -> str:
    classes = len(meta["classes"])
    if meta.get("task") == "detection":
        _, height, width = meta["input_shape"]
        cells = f"{-(-height // 4)}, {-(-width // 4)}"
        return (f"The network returns CenterNet's head (N, {classes + 4}, {cells}): one cell per 4x4 input pixels.\n"
                f"   Channels 0..{classes - 1}: a heatmap logit per class (class order above); {classes} and {classes + 1}: "
                "the box's width and\n"
                f"   height in input pixels; {classes + 2} and {classes + 3}: its centre's x and y offset inside the cell. "
                "Decoding is not in\n"
                "   the exported graph; predict.py's `detect` does it: sigmoid the heatmaps, keep the cells equal to their\n"
                "   3x3 max-pool (the peaks), take the 100 best scores over all classes and cells; a peak at row i, column j\n"
                "   is a box centred on ((j + offset_x) * 4, (i + offset_y) * 4) of that width and height, in input pixels.\n"
                "   To put boxes on the original image, undo step 2's crop or fill, then scale (predict.py does).")
    if meta.get("task") == "segmentation":
        _, height, width = meta["input_shape"]
        return (f"The network returns logits per pixel (N, {classes}, {height}, {width}); the argmax over dimension 1 is\n"
                "   the mask of class indices in the class order above. To lay it over the original image, undo step 2:\n"
                "   un-crop or un-pad it, then resize it to the image's size with nearest neighbour (predict.py does).")
    return f"The network returns logits (N, {classes}); softmax gives probabilities in the class order above."


def _compression_doc(compression: dict[str, Any] | None) -> str:
    if not compression:
        return ""
    params = ", ".join(f"{k} {v:g}" for k, v in compression.get("params", {}).items())
    facts = [f"{compression['method']}{f' ({params})' if params else ''}"]
    if compression.get("sparsity") is not None:
        facts.append(f"{compression['sparsity']:.0%} of the conv and linear weights are zero")
    if compression.get("val_accuracy_after") is not None:
        facts.append(f"validation accuracy {compression['val_accuracy_before']:.4f} before, "
                     f"{compression['val_accuracy_after']:.4f} after")
    return f"\nCompressed: {'; '.join(facts)}.\n"
