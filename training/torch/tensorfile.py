"""Write safetensors files without holding the GIL through the copies.

safetensors' own `save()` copies every tensor into Python bytes and then into one buffer while
holding the GIL: about 2.5 ms per 2 MB. A snapshot written in the background that way stalls the
training thread on every epoch (~6% of a fast MLP run). This writes the same format (8-byte
little-endian header length, a JSON header padded with spaces to 8 bytes, then the raw tensor
bytes in header order) straight from the tensors' memory; file writes release the GIL.
Files are read back with safetensors' own loaders.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch

_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    chunks, offset = [], 0
    for name, tensor in tensors.items():
        if tensor.dtype not in _DTYPES:
            raise TypeError(f"Tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store.")
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + data.nbytes]}
        chunks.append(data)
        offset += data.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)))
        file.write(encoded)
        for data in chunks:
            file.write(memoryview(data))
