"""Quantized models as TorchScript: the engine their int8 kernels need, and loading one."""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def load_quantized(file: Path) -> Any:
    """A quantized model saved as TorchScript, on the engine its int8 kernels need."""
    use_quantized_engine()
    with quiet():
        return torch.jit.load(str(file), map_location="cpu").eval()


@contextmanager
def quiet() -> Iterator[None]:
    # Eager-mode quantization and TorchScript warn that they are deprecated in favour of torchao,
    # which this project does not install; they still work in this torch, so keep worker logs readable.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*")
        warnings.filterwarnings("ignore", message=".*reduce_range.*")
        yield


def use_quantized_engine() -> None:
    engines = torch.backends.quantized.supported_engines
    engine = "x86" if "x86" in engines else "fbgemm" if "fbgemm" in engines else "qnnpack"
    if torch.backends.quantized.engine != engine:
        torch.backends.quantized.engine = engine
