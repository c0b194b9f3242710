"""Which devices a training job gets on this host. Free of any framework and of the database, so it
is tested without a GPU; workers.services holds the choice in the database (DeviceLease).

A job holds its GPUs exclusively: two jobs never train on one GPU, wherever their workers run on
the host. What a job asks for is a list, one entry per process (DDP):

- "cuda:N": that GPU; "cuda" (or "auto" on a host with GPUs): the next free one;
- "cpu" (or "auto" on a host without): a CPU process. CPU processes share the host, unless
  WORKBENCH_CPU_SLOTS caps how many train at once (then each holds a slot, "cpu#K").

`choose` answers the devices to train on with the lease each one takes, None when what is asked
for is busy (the job waits in the queue), or raises DeviceMissing when this host can never give it.
"""
from __future__ import annotations

from dataclasses import dataclass


class DeviceMissing(Exception):
    """The job asks for more than this host has: waiting would never end."""


@dataclass(frozen=True)
class Pick:
    device: str  # what the process trains on: "cpu" or "cuda:N"
    lease: str | None  # the key it holds on this host ("cuda:N", "cpu#K"), None when shared


def asked(device: str, devices: list[str]) -> list[str]:
    """The job's request as one entry per process: `devices` when given, else its one `device`."""
    return list(devices) or [device]


def kind(request: str, gpus: list[str]) -> str:
    """"cuda" or "cpu": what one entry asks for on a host with `gpus` ("auto" takes a GPU where there is one)."""
    return "cuda" if request.startswith("cuda") or (request == "auto" and gpus) else "cpu"


def choose(requested: list[str], gpus: list[str], taken: set[str], cpu_slots: int = 0) -> list[Pick] | None:
    """`gpus`: this host's GPUs ("cuda:N"); `taken`: the lease keys other jobs hold on it."""
    kinds = [kind(r, gpus) for r in requested]
    named = [r for r in requested if r.startswith("cuda:")]
    missing = [r for r in named if r not in gpus]
    if missing:
        raise DeviceMissing(f"Device {missing[0]} was asked for, but this worker has {len(gpus)} CUDA device(s). "
                            "Choose auto, cpu, or a GPU it has.")
    wanted_gpus = kinds.count("cuda")
    if wanted_gpus > len(gpus):
        raise DeviceMissing(f"The job asks for {wanted_gpus} GPU(s); this worker has {len(gpus)}.")
    wanted_cpus = kinds.count("cpu")
    if cpu_slots and wanted_cpus > cpu_slots:
        raise DeviceMissing(f"The job asks for {wanted_cpus} CPU processes; this host trains at most {cpu_slots} "
                            "at once (WORKBENCH_CPU_SLOTS).")
    if any(r in taken for r in named):
        return None
    free = [g for g in gpus if g not in taken and g not in named]
    free_slots = [f"cpu#{k}" for k in range(cpu_slots) if f"cpu#{k}" not in taken]
    picks = []
    for request, wanted in zip(requested, kinds):
        if wanted == "cpu":
            if not cpu_slots:
                picks.append(Pick("cpu", None))
            elif free_slots:
                picks.append(Pick("cpu", free_slots.pop(0)))
            else:
                return None
        elif request.startswith("cuda:"):
            picks.append(Pick(request, request))
        elif free:
            gpu = free.pop(0)
            picks.append(Pick(gpu, gpu))
        else:
            return None
    return picks


def describe(requested: list[str], gpus: list[str]) -> str:
    """What a job waits for, in words: "cuda:0", "2 free GPUs", "a CPU slot"."""
    named = [r for r in requested if r.startswith("cuda:")]
    cpus = sum(kind(r, gpus) == "cpu" for r in requested)
    free = len(requested) - len(named) - cpus
    parts = named + ([f"{free} free GPU{'s' if free > 1 else ''}" if free > 1 else "a free GPU"] if free else [])
    parts += [f"{cpus} CPU slots" if cpus > 1 else "a CPU slot"] if cpus else []
    return " and ".join(parts)
