"""Deep compression of a snapshot: magnitude pruning with a short fine-tune, int8 quantization.

Imported by workers only. `target` is a folder that ends up self-contained: the compressed
model (model.safetensors for a pruned one, TorchScript model.pt for a quantized one) beside a
copy of model.json and mean.safetensors, so `load_snapshot()` needs nothing else. Nothing is
pickled: safetensors holds plain tensors, TorchScript holds code and tensors.

Sizes: `size_*` are the bytes of the model file deflated (as in a zip: what a download costs,
and the only way a dense file with pruned zeros gets smaller); `file_size_*` are the raw bytes.
"""
from __future__ import annotations

import json
import shutil
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import prune

from training.contract import Reporter, TrainingFailed, TrainingPlan
from training.torch.build import ResidualBlock
from training.torch.data import Split
from training.torch.models import evaluate, load_snapshot, model_folder
from training.torch.optim import make_optimizer
from training.torch.quantized import quiet, use_quantized_engine

CALIBRATION_IMAGES = 256
LATENCY_BATCH = 64
PACKAGE = "download.zip"


def compress_snapshot(snapshot: Path, method: str, params: dict[str, Any], target: Path,
                      plan: TrainingPlan, reporter: Reporter) -> dict[str, Any]:
    """Write the compressed model into the folder `target`; sizes and val accuracy before and after."""
    model, mean = load_snapshot(snapshot)
    val = Split.open(plan.dataset_folder, "val")
    before = _measure(model, val, mean, plan.batch_size)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("model.json", "mean.safetensors"):
        shutil.copyfile(model_folder(snapshot) / name, target / name)
    with quiet():
        facts, file = _METHODS[method](model, mean, params, target, plan, reporter)
        after = _measure(load_snapshot(target / file)[0], val, mean, plan.batch_size)
    size_before, size_after = deflated_size(snapshot), deflated_size(target / file)
    result = {"method": method, "params": params, "file": file,
              "size_before": size_before, "size_after": size_after, "ratio": size_before / max(size_after, 1),
              "file_size_before": snapshot.stat().st_size, "file_size_after": (target / file).stat().st_size,
              "val_accuracy_before": before["accuracy"], "val_accuracy_after": after["accuracy"],
              "latency_ms_before": before["latency_ms"], "latency_ms_after": after["latency_ms"],
              "latency_batch": before["batch"], "val_count": len(val), **facts}
    return {**result, **_package(snapshot, target, file, result)}


def _package(snapshot: Path, target: Path, file: str, result: dict[str, Any]) -> dict[str, Any]:
    """The download: an export archive of the compressed model (predict.py included), checked like any export."""
    from training.torch.export import export_snapshot, snapshot_epoch

    meta = json.loads((target / "model.json").read_text())
    meta["epoch"] = snapshot_epoch(snapshot)
    meta["compression"] = {key: result.get(key) for key in
                           ("method", "params", "sparsity", "val_accuracy_before", "val_accuracy_after")}
    (target / "model.json").write_text(json.dumps(meta, indent=2))
    checked = export_snapshot(target / file, "archive", target / PACKAGE)
    return {"package": PACKAGE, "package_size": checked["size_bytes"], "package_max_abs_diff": checked["max_abs_diff"]}


def deflated_size(file: Path) -> int:
    """The file's bytes after deflate at level 9, as in a zip download."""
    squeeze, total = zlib.compressobj(9), 0
    with file.open("rb") as source:
        while chunk := source.read(1 << 20):
            total += len(squeeze.compress(chunk))
    return total + len(squeeze.flush())


def _measure(model: Any, val: Split, mean: torch.Tensor, batch_size: int) -> dict[str, Any]:
    if len(val) == 0:
        return {"accuracy": None, "latency_ms": None, "batch": 0}
    _, accuracy = evaluate(model, val, mean, torch.device("cpu"), max(batch_size * 2, 64))
    x, _ = val.batch(torch.arange(min(LATENCY_BATCH, len(val))))
    x = (x.float() - mean) / 255.0
    timings = []
    with torch.inference_mode():
        model(x)  # warm-up: the first call allocates and, for TorchScript, optimises
        for _ in range(5):
            started = time.perf_counter()
            model(x)
            timings.append(time.perf_counter() - started)
    return {"accuracy": accuracy, "latency_ms": min(timings) * 1000, "batch": len(x)}


# --- pruning ------------------------------------------------------------------------------------

def _prune(model: nn.Module, mean: torch.Tensor, params: dict[str, Any], target: Path, plan: TrainingPlan,
           reporter: Reporter) -> tuple[dict[str, Any], str]:
    named = {path: m for path, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    weights = [(m, "weight") for m in named.values()]
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=float(params["amount"]))
    _fine_tune(model, mean, int(params["epochs"]), plan, reporter)
    for module, name in weights:
        prune.remove(module, name)  # the mask becomes the weights' zeros: a plain state dict again
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, target / "model.safetensors")
    pruned = sum(m.weight.numel() for m, _ in weights)
    nonzero = sum(int(m.weight.count_nonzero()) for m, _ in weights)
    layers = {path: 1 - int(m.weight.count_nonzero()) / m.weight.numel() for path, m in named.items()}
    return {"pruned_weights": pruned, "nonzero_weights": nonzero, "sparsity": 1 - nonzero / pruned,
            "layer_sparsity": layers,
            "fine_tune_epochs": int(params["epochs"])}, "model.safetensors"


def _fine_tune(model: nn.Module, mean: torch.Tensor, epochs: int, plan: TrainingPlan, reporter: Reporter) -> None:
    """A few epochs at a tenth of the job's learning rate; the pruning hooks keep pruned weights at zero."""
    train = Split.open(plan.dataset_folder, "train")
    optimizer = make_optimizer(replace(plan, learning_rate=plan.learning_rate / 10), model.parameters())
    steps = max(1, -(-len(train) // plan.batch_size))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(plan.seed + epoch))
        for i in range(steps):
            x, y = train.batch(order[i * plan.batch_size:(i + 1) * plan.batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model((x.float() - mean) / 255.0), y).backward()
            optimizer.step()
            reporter.progress(epoch=epoch + (i + 1) / steps, step=epoch * steps + i + 1, total_steps=epochs * steps)
    model.eval()


# --- quantization -------------------------------------------------------------------------------

def _quantize_dynamic(model: nn.Module, mean: torch.Tensor, params: dict[str, Any], target: Path,
                      plan: TrainingPlan, reporter: Reporter) -> tuple[dict[str, Any], str]:
    from torch.ao.quantization import quantize_dynamic

    use_quantized_engine()
    quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    _save_script(quantized, plan, target / "model.pt")
    count = sum(isinstance(m, nn.Linear) for m in model.modules())
    return {"quantized_layers": count, "engine": torch.backends.quantized.engine}, "model.pt"


def _quantize_static(model: nn.Module, mean: torch.Tensor, params: dict[str, Any], target: Path,
                     plan: TrainingPlan, reporter: Reporter) -> tuple[dict[str, Any], str]:
    from torch.ao import quantization as tq

    use_quantized_engine()
    body, fused = _prepare_body(model)
    wrapped = nn.Sequential(tq.QuantStub(), body, tq.DeQuantStub()).eval()
    wrapped.qconfig = tq.get_default_qconfig(torch.backends.quantized.engine)
    tq.prepare(wrapped, inplace=True)
    _calibrate(wrapped, mean, plan, reporter)
    tq.convert(wrapped, inplace=True)
    _save_script(wrapped, plan, target / "model.pt")
    return {"fused_groups": fused, "calibration_images": min(CALIBRATION_IMAGES, _train_count(plan)),
            "engine": torch.backends.quantized.engine}, "model.pt"


# Layers with an int8 kernel (or that work on quantized tensors as they are). Anything else runs
# in float between a DeQuantStub and a QuantStub, so every allowed network can be quantized.
_INT8 = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
         nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.Identity, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh)
_FUSIONS = ((nn.Conv2d, nn.BatchNorm2d, nn.ReLU), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv2d, nn.ReLU),
            (nn.Linear, nn.ReLU))


def _prepare_body(sequence: nn.Sequential) -> tuple[nn.Sequential, int]:
    """The Sequential with conv+bn+relu / linear+relu fused, residual adds made quantizable and
    float-only layers fenced off; returns it and the number of fused groups."""
    from torch.ao.quantization import fuse_modules

    layers = [_prepare_layer(m) for m in sequence]
    body = nn.Sequential(*(layer for layer, _ in layers))
    fused = sum(count for _, count in layers)
    groups = _fusable(list(body))
    if groups:
        fuse_modules(body, groups, inplace=True)
    return body, fused + len(groups)


def _prepare_layer(module: nn.Module) -> tuple[nn.Module, int]:
    if isinstance(module, ResidualBlock):
        layers, fused = _prepare_body(module.layers)
        shortcut, more = _prepare_body(module.shortcut) if isinstance(module.shortcut, nn.Sequential) \
            else (module.shortcut, 0)
        return _QuantizableResidual(layers, shortcut, module.activation), fused + more
    if isinstance(module, nn.Conv2d) and module.padding == "same":
        _explicit_padding(module)
    if isinstance(module, _INT8):
        return module, 0
    from torch.ao.quantization import DeQuantStub, QuantStub

    return nn.Sequential(DeQuantStub(), module, QuantStub()), 0


def _fusable(layers: list[nn.Module]) -> list[list[str]]:
    groups, i = [], 0
    while i < len(layers):
        for pattern in _FUSIONS:
            window = layers[i:i + len(pattern)]
            if len(window) == len(pattern) and all(type(m) is t for m, t in zip(window, pattern)):
                groups.append([str(i + k) for k in range(len(pattern))])
                i += len(pattern) - 1
                break
        i += 1
    return groups


def _explicit_padding(conv: nn.Conv2d) -> None:
    # The int8 convolution takes numbers only; with stride 1 (which "same" requires) and odd kernels,
    # "same" is half the kernel on each side. Even kernels pad unevenly, which int8 cannot express.
    if any(k % 2 == 0 for k in conv.kernel_size) or conv.dilation != (1, 1):
        raise TrainingFailed("Static quantization cannot express 'same' padding for an even or dilated "
                             f"Conv2d kernel {conv.kernel_size}; use quantize_dynamic or explicit padding.")
    conv.padding = tuple(k // 2 for k in conv.kernel_size)
    conv._reversed_padding_repeated_twice = [p for p in reversed(conv.padding) for _ in range(2)]


class _QuantizableResidual(nn.Module):
    """ResidualBlock with its add through FloatFunctional, which convert() turns into an int8 add."""

    def __init__(self, layers: nn.Module, shortcut: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        from torch.ao.nn.quantized import FloatFunctional

        self.layers, self.shortcut, self.activation = layers, shortcut, activation
        self.add = FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.add.add(self.layers(x), self.shortcut(x)))


def _calibrate(model: nn.Module, mean: torch.Tensor, plan: TrainingPlan, reporter: Reporter) -> None:
    train = Split.open(plan.dataset_folder, "train")
    count = min(CALIBRATION_IMAGES, len(train))
    if count == 0:
        raise TrainingFailed("Static quantization calibrates on training images, and the train split is empty.")
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(plan.seed))[:count]
    with torch.inference_mode():
        for start in range(0, count, 64):
            x, _ = train.batch(index[start:start + 64])
            model((x.float() - mean) / 255.0)
            reporter.progress(epoch=0, step=min(start + 64, count), total_steps=count)


def _train_count(plan: TrainingPlan) -> int:
    return len(Split.open(plan.dataset_folder, "train"))


def _save_script(model: nn.Module, plan: TrainingPlan, file: Path) -> None:
    example = torch.zeros((2, *plan.input_shape))
    try:
        with torch.no_grad():
            scripted = torch.jit.trace(model.eval(), example)
    except Exception as exc:  # an op without an int8 kernel shows up only when it first runs
        raise TrainingFailed(f"The quantized model cannot run: {exc}".splitlines()[0]) from exc
    torch.jit.save(scripted, str(file))


_METHODS = {"prune": _prune, "quantize_dynamic": _quantize_dynamic, "quantize_static": _quantize_static}
