"""The settings of a training job, defined once: each one's name, type and default (JobSettings) and
its bounds or choices, the wording of its refusal, its label and help (SETTINGS).

The service checks a job's settings by this table (jobs.services.job_options_check), the HTML form
and the API build their fields from it (jobs.forms.setting_field, jobs.api.setting_field), and a
sweep checks every value a trial may take by the service's check: none of them writes a limit of
its own, so they cannot drift apart.
"""
from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from networks.builtin import DEFAULT_SETTINGS
from training.schedules import LR_POLICIES, OPTIMIZERS

AMP_MODES = ("off", "bf16", "fp16")  # mixed precision: bf16 runs on CPUs too, fp16 needs CUDA
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda:\d{1,2})$")
# One job on several devices (DDP), one process per entry: "cuda:N", "cuda" (the next free GPU) or
# "cpu" (gloo, one process per entry; for tests and CPU hosts).
RANK_DEVICE_PATTERN = re.compile(r"^(cpu|cuda|cuda:\d{1,2})$")
MAX_DEVICES = 16
MAX_ACCUMULATE = 1024
FREEZE_WHOLE_RUN = -1
NAME_MAX_LENGTH = 200
GROUP_MAX_LENGTH = 100
NOTES_MAX_LENGTH = 10_000


@dataclass(frozen=True)
class JobSettings:
    """The knobs of a training job; defaults train LeNet well on the example digits."""

    name: str = ""
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_policy: str = "fixed"
    lr_step_size: float = 5.0
    lr_gamma: float = 0.1
    lr_milestones: list[float] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    val_interval: float = 1.0
    snapshot_interval: float = 1.0
    backend: str = ""
    group: str = ""
    notes: str = ""
    augmentation: dict[str, Any] = field(default_factory=dict)
    accumulate: int = 1
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    amp: str = "off"
    # Fine-tuning: {"job": id, "epoch": e} or {"model": id} ({} a fresh start); see pretrained.services.
    pretrained: dict[str, Any] = field(default_factory=dict)
    freeze_epochs: int = 0  # epochs the copied weights stay fixed: 0 none, -1 (FREEZE_WHOLE_RUN) the whole run
    pretrained_lr_mult: float = 1.0
    devices: list[str] = field(default_factory=list)  # several: one job on several devices (DDP); [] uses `device`
    compile: bool = False  # torch.compile, falling back to eager with a log line when it fails


DEFAULTS = JobSettings()


# The settings some built-in brings a default of its own for: left blank on the job form, the network's.
NETWORK_DEFAULT_FIELDS: tuple[str, ...] = tuple(sorted({name for values in DEFAULT_SETTINGS.values() for name in values}))


def network_defaults(network: str) -> dict[str, Any]:
    """The settings a built-in network brings (networks.builtin.DEFAULT_SETTINGS); {} for the rest,
    which take DEFAULTS."""
    return dict(DEFAULT_SETTINGS.get(network, {}))


def with_network_defaults(options: JobSettings, network: str, given: Collection[str] | None) -> JobSettings:
    """`options` with `network`'s own defaults in the fields the user left out (not in `given`;
    None: every field was given, as a clone's are). Given fields always win."""
    if given is None:
        return options
    return replace(options, **{name: value for name, value in network_defaults(network).items() if name not in given})


def network_default_table(networks: Collection[str]) -> dict[str, dict[str, Any]]:
    """For the job form's page: each network's value of every NETWORK_DEFAULT_FIELDS setting, and
    under "" the job defaults (what a custom network takes)."""
    return {network: {name: network_defaults(network).get(name, getattr(DEFAULTS, name))
                      for name in NETWORK_DEFAULT_FIELDS} for network in ("", *networks)}


@dataclass(frozen=True)
class Setting:
    """The rule of one job setting: a number within [low, high] (high None: no upper bound), one
    of `choices`, or text matching `pattern`; `message` words its refusal where the plain one
    ("Must be between 1 and 10000.", "Choose one of: ...") would not say enough."""

    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    message: str = ""
    label: str = ""
    help: str = ""

    def holds(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if self.pattern is not None:
            return isinstance(value, str) and bool(self.pattern.match(value))
        return math.isfinite(value) and (self.low is None or value >= self.low) and (
            self.high is None or value <= self.high)

    def refusal(self) -> str:
        if self.message:
            return self.message
        if self.choices:
            return f"Choose one of: {', '.join(self.choices)}."
        if self.high is None:
            return f"Must be at least {self.low:g}."
        return f"Must be between {self.low:g} and {self.high:g}."


SETTINGS: dict[str, Setting] = {
    "epochs": Setting(1, 10_000),
    "batch_size": Setting(1, 65_536, help="For the whole job: with several devices it is split across them."),
    "optimizer": Setting(choices=OPTIMIZERS),
    "learning_rate": Setting(1e-8, 10),
    "momentum": Setting(0, 0.999),
    "weight_decay": Setting(0, 1),
    "lr_policy": Setting(choices=LR_POLICIES, label="Learning-rate policy"),
    "lr_step_size": Setting(0.01, label="Step size (epochs)"),
    "lr_gamma": Setting(1e-6, 10, label="Gamma"),
    "seed": Setting(0, 2**32 - 1),
    "device": Setting(pattern=DEVICE_PATTERN, message="Use auto, cpu or cuda:N."),
    "val_interval": Setting(0.01, 1000, label="Validate every (epochs)"),
    "snapshot_interval": Setting(0.01, 1000, label="Snapshot every (epochs)"),
    "accumulate": Setting(1, MAX_ACCUMULATE, message=f"Accumulate 1 to {MAX_ACCUMULATE} batches per optimizer step.",
                          label="Accumulate", help="Batches per optimizer step."),
    "grad_clip": Setting(0, None, message="The gradient norm limit is 0 (off) or above.", label="Clip gradient norm",
                         help="The largest gradient norm; 0: off."),
    "label_smoothing": Setting(0, 0.5, message="Label smoothing is from 0 to 0.5.", help="0 to 0.5."),
    "amp": Setting(choices=AMP_MODES, label="Mixed precision",
                   help="off, bf16 (GPU, or a CPU with bfloat16 instructions) or fp16 (CUDA)."),
    "freeze_epochs": Setting(FREEZE_WHOLE_RUN, 10_000, label="Freeze copied layers (epochs)",
                             help="Epochs the copied weights stay fixed: 0 never, -1 the whole run."),
    "pretrained_lr_mult": Setting(0, 10, label="LR multiplier, copied layers",
                                  help="Learning-rate multiplier of the copied weights, 0 to 10."),
}


def setting_type(name: str) -> str:
    """A JobSettings field's declared type as written: "int", "float", "str", "bool", "list[str]", ..."""
    return str(JobSettings.__dataclass_fields__[name].type)
