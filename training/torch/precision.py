"""How a training step uses the device: mixed precision (`amp`) and, on CUDA, the fast paths.

- `bf16`: autocast to bfloat16 for the forward pass and the loss; the weights, the gradients and
  the optimizer stay float32. Runs on CPUs too, so it is tested here.
- `fp16`: autocast to float16 with a GradScaler (float16 gradients underflow without one); CUDA only.
- On CUDA, whatever `amp` says: cuDNN autotuning (the best convolution algorithm per shape), TF32
  matrix products, and channels-last memory for convolutional networks.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from training.contract import TrainingFailed

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, amp: str, device: torch.device) -> None:
        if amp == "fp16" and device.type != "cuda":
            raise TrainingFailed(f"fp16 mixed precision needs a CUDA device (this job runs on {device}); "
                                 "use bf16, which CPUs run too, or off.")
        self.device, self.dtype = device, DTYPES.get(amp)
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        self.channels_last = False
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def warning(self) -> str | None:
        """A line for the job's log when the choice will be slow here: bf16 on a CPU without bfloat16
        instructions is emulated (ResNet-18 ran 22x slower than amp off on an AVX2-only EPYC)."""
        if self.dtype is torch.bfloat16 and self.device.type == "cpu" and not cpu_has_bf16():
            return (f"This CPU has no bfloat16 instructions ({torch.backends.cpu.get_cpu_capability()}): bf16 is "
                    "emulated here and much slower than amp off.")
        return None

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Channels-last for a convolutional network on CUDA (its convolutions run on tensor cores)."""
        if self.device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
            self.channels_last = True
            return model.to(memory_format=torch.channels_last)
        return model

    def input(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        self.scaler.update()

    def load_state(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), as oneDNN sees it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
