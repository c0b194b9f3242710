"""The optimizer a run steps with: its kind, its parameter groups (pretrained layers apart), and the
pretrained weights copied in before it starts."""
from __future__ import annotations

from typing import Any

import torch
from safetensors.torch import load_file

from training.contract import TrainingFailed, TrainingPlan


def param_groups(model: torch.nn.Module, plan: TrainingPlan) -> list[dict[str, Any]]:
    """One group, or with pretrained weights two: the copied parameters (their own rate multiplier,
    frozen for plan.freeze_epochs) and the rest. Made from the plan alone, so a resumed run has the
    same layout as the run whose optimizer state it loads."""
    copied = set(plan.pretrained.get("copy", ())) if plan.pretrained else set()
    if not copied:
        return [{"params": list(model.parameters())}]
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if n in copied], "pretrained": True, "lr_mult": plan.pretrained_lr_mult},
              {"params": [p for n, p in named if n not in copied], "pretrained": False, "lr_mult": 1.0}]
    return [group for group in groups if group["params"]]


def copy_pretrained(model: torch.nn.Module, pretrained: dict[str, Any]) -> str:
    """Copy the tensors the web found to match (name and shape) from safetensors; the line to log."""
    try:
        source = load_file(pretrained["weights"])
    except FileNotFoundError:
        raise TrainingFailed(f"The weights of {pretrained.get('label') or 'the pretrained model'} are gone "
                             "(deleted since the job was queued).") from None
    state = model.state_dict()
    copy = set(pretrained["copy"])
    for name in copy:
        if name not in source or name not in state or source[name].shape != state[name].shape:
            raise TrainingFailed(f"The pretrained weights changed since the job was queued: {name!r} no longer fits.")
    model.load_state_dict({**state, **{name: source[name] for name in copy}})
    remade = [n for n in state if n not in copy and n in source]
    new = [n for n in state if n not in copy and n not in source]
    return (f"Copied {len(copy)} tensors from {pretrained.get('label') or 'the pretrained weights'}; "
            f"re-made {len(remade)}{' (' + ', '.join(remade) + ')' if remade else ''}; {len(new)} left new.")


def make_optimizer(plan: TrainingPlan, params: Any) -> torch.optim.Optimizer:
    lr, wd = plan.learning_rate, plan.weight_decay
    if plan.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=plan.momentum, weight_decay=wd,
                               nesterov=plan.optimizer == "nesterov" and plan.momentum > 0)
    if plan.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if plan.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if plan.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=plan.momentum, weight_decay=wd)
    raise TrainingFailed(f"Unknown optimizer '{plan.optimizer}'.")
