"""Classify images with an exported workbench model trained by its JAX backend. Needs only jax,
safetensors, Pillow and numpy (no torch, no flax, no workbench).

    python predict.py image.png [more.jpg ...] [--top 5] [--json]

This file is copied as-is into every jax archive as predict.py, beside model.json, mean.safetensors
and weights.safetensors. It must stay self-contained. The network is rebuilt from model.json's
"layers" (the workbench's plan of the spec, every layer's input size resolved) as a function of the
weights, which are laid out and named as PyTorch names them ("0.weight", "5.layers.1.running_var").
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps
from safetensors.numpy import load_file

HERE = Path(__file__).resolve().parent
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
WEIGHTS = "weights.safetensors"
BN_EPS = 1e-5


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv(x: jax.Array, w: dict[str, Any], name: str, stride: Any, padding: Any, groups: int = 1) -> jax.Array:
    pad = "SAME" if padding == "same" else tuple((p, p) for p in _pair(padding))
    y = jax.lax.conv_general_dilated(x, w[f"{name}.weight"], _pair(stride), pad,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=groups)
    return y + w[f"{name}.bias"][None, :, None, None] if f"{name}.bias" in w else y


def _batchnorm(x: jax.Array, w: dict[str, Any], name: str) -> jax.Array:
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    scale = w[f"{name}.weight"] / jnp.sqrt(w[f"{name}.running_var"] + BN_EPS)
    return x * scale.reshape(shape) + (w[f"{name}.bias"] - w[f"{name}.running_mean"] * scale).reshape(shape)


def _pool(x: jax.Array, a: dict[str, Any], kind: str) -> jax.Array:
    (kh, kw), (sh, sw), (ph, pw) = _pair(a["kernel_size"]), _pair(a["stride"]), _pair(a["padding"])
    pads = ((0, 0), (0, 0), (ph, ph), (pw, pw))
    if kind == "maxpool2d":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, kh, kw), (1, 1, sh, sw), pads)
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 1, kh, kw), (1, 1, sh, sw), pads) / (kh * kw)


def _adaptive(x: jax.Array, layer: dict[str, Any]) -> jax.Array:
    (_, h, w), (_, oh, ow) = layer["input_shape"], layer["output_shape"]
    rows = [x[:, :, i * h // oh: -(-(i + 1) * h // oh)] for i in range(oh)]
    return jnp.stack([jnp.stack([r[..., j * w // ow: -(-(j + 1) * w // ow)].mean(axis=(2, 3)) for j in range(ow)], -1)
                      for r in rows], -2)


def forward(layers: list[dict[str, Any]], w: dict[str, Any], x: jax.Array, prefix: str = "") -> jax.Array:
    for index, layer in enumerate(layers):
        name, kind, a = f"{prefix}{index}", layer["type"], layer["args"]
        if kind == "conv2d":
            x = _conv(x, w, name, a["stride"], a["padding"], a.get("groups", 1))
        elif kind == "linear":
            x = x @ w[f"{name}.weight"].T + (w[f"{name}.bias"] if f"{name}.bias" in w else 0.0)
        elif kind in ("batchnorm2d", "batchnorm1d"):
            x = _batchnorm(x, w, name)
        elif kind in ("maxpool2d", "avgpool2d"):
            x = _pool(x, a, kind)
        elif kind == "adaptive_avgpool2d":
            x = _adaptive(x, layer)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "residual":
            skip = x
            if layer["shortcut_stride"] is not None:
                skip = _batchnorm(_conv(x, w, f"{name}.shortcut.0", layer["shortcut_stride"], 0), w, f"{name}.shortcut.1")
            x = forward(layer["body"], w, x, f"{name}.layers.") + skip
            x = jax.nn.relu(x) if a["activation"] == "relu" else x
        elif kind not in ("dropout", "dropout2d"):  # dropout: nothing at inference
            x = _ACTIVATIONS[kind](x, a)
    return x


_ACTIVATIONS = {
    "relu": lambda x, a: jax.nn.relu(x), "leaky_relu": lambda x, a: jax.nn.leaky_relu(x, a["negative_slope"]),
    "gelu": lambda x, a: jax.nn.gelu(x, approximate=False), "elu": lambda x, a: jax.nn.elu(x, a["alpha"]),
    "sigmoid": lambda x, a: jax.nn.sigmoid(x), "tanh": lambda x, a: jnp.tanh(x),
}


def load(folder: Path = HERE) -> tuple[Any, dict[str, Any]]:
    """A function from uint8 images (N, C, H, W) to class probabilities, and model.json."""
    meta = json.loads((folder / "model.json").read_text())
    weights = {name: jnp.asarray(value) for name, value in load_file(str(folder / WEIGHTS)).items()}
    mean = jnp.asarray(load_file(str(folder / meta["preprocessing"]["mean_file"]))["mean"])

    @jax.jit
    def probabilities(images: jax.Array) -> jax.Array:
        return jax.nn.softmax(forward(meta["layers"], weights, (images.astype(jnp.float32) - mean) / 255.0), axis=1)

    return (lambda images: np.asarray(probabilities(jnp.asarray(images)))), meta


# --- preprocessing: exactly as the workbench prepared its dataset -----------------------------

def load_image(path: Path | str, prep: dict[str, Any]) -> np.ndarray:
    """One image file to (channels, height, width) uint8, resized by the dataset's resize mode."""
    mode = "RGB" if prep["channels"] == 3 else "L"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(path, formats=FORMATS)
        img = (ImageOps.exif_transpose(img) or img).convert(mode)
    arr = resize(img, prep["width"], prep["height"], prep["resize_mode"], np.random.default_rng(prep.get("seed", 0)))
    return arr[np.newaxis] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def resize(img: Image.Image, w: int, h: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """DIGITS' modes: squash (stretch), crop (fill then centre-crop), fill (fit, pad with noise), half_crop."""
    if mode == "squash":
        return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))
    ratio = {"crop": min, "fill": max, "half_crop": lambda a, b: (a + b) / 2}[mode](img.width / w, img.height / h)
    size = (max(1, round(img.width / ratio)), max(1, round(img.height / ratio)))
    arr = np.asarray(img.resize(size, Image.Resampling.BILINEAR))
    top, left = max(0, (arr.shape[0] - h) // 2), max(0, (arr.shape[1] - w) // 2)
    arr = arr[top: top + h, left: left + w]
    if arr.shape[0] == h and arr.shape[1] == w:
        return arr
    out = rng.integers(0, 256, size=(h, w) + arr.shape[2:], dtype=np.uint8)
    top, left = (h - arr.shape[0]) // 2, (w - arr.shape[1]) // 2
    out[top: top + arr.shape[0], left: left + arr.shape[1]] = arr
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify images with this exported model.")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=5, help="how many classes to show per image")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    classify, meta = load()
    results = []
    for path in args.images:
        probabilities = classify(load_image(path, meta["preprocessing"])[np.newaxis])[0]
        order = np.argsort(-probabilities, kind="stable")[: args.top]
        results.append({"file": str(path), "predictions": [
            {"label": meta["classes"][i], "probability": float(probabilities[i])} for i in order]})
    if args.json:
        print(json.dumps(results, indent=2))
    for item in [] if args.json else results:
        print(f"{item['file']}: " + ", ".join(f"{p['label']} {p['probability']:.4f}" for p in item["predictions"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
