"""torch tensors written as safetensors without holding the GIL through copies (training.tensorfile)."""
from __future__ import annotations

from pathlib import Path

import torch

from training.tensorfile import RawTensor, write_raw_safetensors

_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    raw = {}
    for name, tensor in tensors.items():
        if tensor.dtype not in _DTYPES:
            raise TypeError(f"Tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store.")
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        raw[name] = RawTensor(_DTYPES[tensor.dtype], tuple(tensor.shape), data)
    write_raw_safetensors(path, raw, metadata)
