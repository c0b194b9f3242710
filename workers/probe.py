"""What a worker can tell of its devices: GPUs through NVML (the nvidia-ml-py package) when the
driver is there, else through torch when it is already loaded; and the host's CPU and memory.

Runs on the worker only. Every reading is best effort: a device or a value the worker cannot read
is left out or None, never an error, since this runs on a timer beside training.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

Device = dict[str, Any]


def devices() -> list[Device]:
    return _gpus() + [_host()]


def _gpus() -> list[Device]:
    found = _nvml_gpus()
    if found is None:
        found = _torch_gpus()
    return found


def _nvml_gpus() -> list[Device] | None:
    """None when NVML cannot be used here (no package, no driver): the caller tries torch."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        return [_nvml_gpu(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount())]
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: S110  (nothing to do if the driver went away meanwhile)
            pass


def _nvml_gpu(pynvml: Any, index: int) -> Device:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    name = pynvml.nvmlDeviceGetName(handle)
    return {"id": f"cuda:{index}", "name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_total": int(memory.total), "memory_used": int(memory.used),
            "utilization": _maybe(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100),
            "temperature": _maybe(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
            "source": "nvml"}


def _torch_gpus() -> list[Device]:
    """Only if torch is loaded already (a worker that trained): importing it here would cost a second."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        found.append({"id": f"cuda:{index}", "name": torch.cuda.get_device_name(index), "memory_total": int(total),
                      "memory_used": int(total - free), "utilization": None, "temperature": None, "source": "torch"})
    return found


def _host() -> Device:
    total, available = _meminfo()
    cores = os.cpu_count() or 1
    load = _maybe(lambda: min(os.getloadavg()[0] / cores, 1.0))
    return {"id": "cpu", "name": f"{cores} CPU cores", "memory_total": total,
            "memory_used": total - available if total is not None and available is not None else None,
            "utilization": load, "temperature": None, "source": "host"}


def _meminfo() -> tuple[int | None, int | None]:
    try:
        with open("/proc/meminfo") as handle:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in handle}
    except (OSError, ValueError, IndexError):
        return None, None
    return fields.get("MemTotal"), fields.get("MemAvailable")


def _maybe(read: Any) -> Any:
    try:
        return read()
    except Exception:
        return None


class ProcessSampler:
    """A training job's `system` points: its worker process's CPU (percent of one core, over the
    interval since the last sample) and resident memory, with those of the processes it trains
    through (a several-device run's ranks), and, on GPUs, their mean utilisation and the memory in
    use on them. The worker process is shared: jobs it runs at the same time share its figures."""

    def __init__(self) -> None:
        self._last_time = time.monotonic()
        self._last_cpu: dict[int, float] = {os.getpid(): _cpu_seconds(os.getpid())}

    def sample(self, device: str | None, processes: tuple[int, ...] = ()) -> dict[str, float]:
        now, then = time.monotonic(), self._last_time
        cpu = {pid: seconds for pid in (os.getpid(), *processes) if (seconds := _cpu_seconds(pid)) is not None}
        # A process first seen counts from now; one that ended drops out.
        spent = sum(seconds - self._last_cpu.get(pid, seconds) for pid, seconds in cpu.items())
        self._last_time, self._last_cpu = now, cpu
        values = {"cpu_percent": 100 * spent / max(now - then, 1e-6)}
        memory = [rss for pid in cpu if (rss := _resident_bytes(pid)) is not None]
        if memory:
            values["memory_mb"] = sum(memory) / 1024**2
        gpus = _gpu_readings(device)
        if gpus:
            busy = [gpu["utilization"] for gpu in gpus if gpu.get("utilization") is not None]
            if busy:
                values["gpu_utilization"] = 100 * sum(busy) / len(busy)
            values["gpu_memory_mb"] = sum(gpu["memory_used"] for gpu in gpus) / 1024**2
        return values


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a live process, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


def _resident_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _gpu_readings(device: str | None) -> list[Device]:
    """The readings of the GPUs a job trains on: `device` is one ("cuda:0") or several ("cuda:0, cuda:1")."""
    wanted = [d.strip() for d in (device or "").split(",") if d.strip().startswith("cuda")]
    if not wanted:
        return []
    return [gpu for gpu in _gpus() if gpu["id"] in wanted]
