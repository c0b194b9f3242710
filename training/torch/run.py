"""Where a torch training run starts: in this process, or one process per device (DDP), each
running the same loop (training.torch.loop) as one rank of several (training.torch.distributed)."""
from __future__ import annotations

import torch

from training.contract import Reporter, TrainingPlan
from training.torch.distributed import launch
from training.torch.loop import _Run


def train(plan: TrainingPlan, reporter: Reporter, threads: int = 0) -> str:
    """Train one job; "done" or "aborted". `threads` > 0 sets torch's intra-op threads."""
    if threads:
        torch.set_num_threads(threads)
    if len(plan.devices) > 1:  # one process per device (DDP)
        return launch(plan, reporter)
    # A job's run holds its devices (workers.leases); tests and benches name one in `device`.
    device = plan.devices[0] if plan.devices else plan.device
    return _Run(plan, reporter, torch.device("cpu" if device == "auto" else device)).train()
