"""torch.compile for a training run (the job's `compile`), eager with one log line when it fails.

The compiled module shares its parameters with the eager one: the optimizer, snapshots, resume and
export all use the eager module, so saved weights never carry torch.compile's `_orig_mod.` prefix.

Compilation is lazy (dynamo traces at the first forward, the backward compiles at the first
backward), so a missing C compiler or an unsupported layer fails inside the first training step.
`first_step` runs that step; if it raises, the gradients and the random generators are put back as
they were, the run falls back to eager and the step is done again: the same batch, the same weights,
the same optimizer, only slower.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from django.conf import settings

from training.contract import Reporter

T = TypeVar("T")


class CompiledModel:
    """Calls the compiled module while it works, the eager one otherwise; `eager` is what is saved."""

    def __init__(self, model: torch.nn.Module, reporter: Reporter, enabled: bool,
                 backend: str | Callable[..., Any] | None = None) -> None:
        self.eager, self.reporter = model, reporter
        self.module: Callable[..., torch.Tensor] = model
        self._untried = False  # compiled, and no step has run through it yet
        if enabled:
            try:  # an unknown backend fails here, at the call
                self.module = torch.compile(model, backend=backend or settings.WORKBENCH_COMPILE_BACKEND)
                self._untried = True
            except Exception as exc:
                self._fall_back(exc)

    @property
    def compiled(self) -> bool:
        return self.module is not self.eager

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def first_step(self, step: Callable[[], T]) -> T:
        """Run `step` (forward and backward); the first time through a compiled module, redo it eagerly if it fails."""
        if not self._untried:
            return step()
        self._untried = False
        saved = _StepState(self.eager)
        try:
            return step()
        except Exception as exc:
            saved.restore()
            self._fall_back(exc)
            return step()

    def _fall_back(self, exc: Exception) -> None:
        self.module = self.eager
        message = " ".join(str(exc).split())[:300]  # dynamo's messages run to many lines
        self.reporter.log(f"torch.compile failed ({type(exc).__name__}: {message}); training goes on without it.")


class _StepState:
    """What a failed first step may have touched: the gradients (mid-group when resumed) and the generators."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.grads = {p: None if p.grad is None else p.grad.clone() for p in model.parameters()}
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        for p, grad in self.grads.items():
            p.grad = grad
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
