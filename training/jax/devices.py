"""The devices jax finds, named as the product names devices ("cpu", "cuda:0")."""
from __future__ import annotations

import jax


def device_names() -> list[str]:
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU backend in this jaxlib, or no GPU
        gpus = []
    return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]


def jax_device(name: str) -> jax.Device:
    """The jax device for a plan's device ("auto" and "cpu": the CPU; "cuda" or "cuda:N": that GPU)."""
    if name in ("auto", "cpu", ""):
        return jax.devices("cpu")[0]
    index = int(name.partition(":")[2] or 0)
    return jax.devices("gpu")[index]
