"""Snapshots are written by our own safetensors writer; safetensors' own loaders must read them back exactly."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from training.torch.tensorfile import write_safetensors


def test_safetensors_reads_back_every_tensor_exactly(tmp_path):
    tensors = {
        "weight": torch.randn(5, 3),
        "bias": torch.randn(5, dtype=torch.float64),
        "half": torch.randn(2, 2).half(),
        "brain": torch.randn(3).bfloat16(),
        "step": torch.tensor(7.0),  # 0-d, as Adam keeps its step
        "counts": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "small": torch.tensor([-3, 4], dtype=torch.int8),
        "pixels": torch.tensor([0, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "strided": torch.randn(4, 6)[:, ::2],  # not contiguous
    }
    path = tmp_path / "w.safetensors"
    write_safetensors(path, tensors, metadata={"epoch": "3"})

    loaded = load_file(path)
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name
    with safe_open(path, framework="pt") as handle:
        assert handle.metadata() == {"epoch": "3"}


def test_it_refuses_a_dtype_safetensors_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="'z' has dtype torch.complex64"):
        write_safetensors(tmp_path / "z.safetensors", {"z": torch.zeros(2, dtype=torch.complex64)})
