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
    interval since the last sample) and resident memory, and, on a GPU, that GPU's utilisation and
    memory in use. The process is the worker's: jobs it runs at the same time share the figures."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), _cpu_seconds())

    def sample(self, device: str | None) -> dict[str, float]:
        now, cpu = time.monotonic(), _cpu_seconds()
        then, before = self._last
        self._last = (now, cpu)
        values = {"cpu_percent": 100 * (cpu - before) / max(now - then, 1e-6)}
        rss = _resident_bytes()
        if rss is not None:
            values["memory_mb"] = rss / 1024**2
        gpu = _gpu_reading(device)
        if gpu is not None:
            if gpu.get("utilization") is not None:
                values["gpu_utilization"] = 100 * gpu["utilization"]
            values["gpu_memory_mb"] = gpu["memory_used"] / 1024**2
        return values


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _gpu_reading(device: str | None) -> Device | None:
    if not device or not device.startswith("cuda"):
        return None
    return next((gpu for gpu in _gpus() if gpu["id"] == device), None)
